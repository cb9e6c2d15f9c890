"""Program-level tests with dspy.utils.DummyLM: signatures, validation, templates, save/load."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from cairo_coder.programs import (
    CAIRO_DEMOS,
    GenerationProgram,
    QueryProcessorProgram,
    RetrievalJudge,
    ScarbGenerationSignature,
    ScarbQuerySignature,
    format_context,
    load_optimized,
)
from cairo_coder.programs.loading import OptimizedProgramError
from cairo_coder.programs.query_processor import is_contract_related, is_test_related
from cairo_coder.programs.templates import TemplateError, resolve_template
from cairo_coder.types import Document, DocumentMetadata, DocumentSource, SearchResult

BOOK, FOUNDRY, SCARB = DocumentSource.CAIRO_BOOK, DocumentSource.STARKNET_FOUNDRY, DocumentSource.SCARB_DOCS


def result(title: str, content: str, source: str = "cairo_book", chunk: str = "c1") -> SearchResult:
    meta = DocumentMetadata(
        source=source, path=f"{title}.md", title=title, section=[title], url=f"https://example.org/{title}"
    )
    return SearchResult(document=Document(content=content, metadata=meta), score=1.0, chunk_id=chunk)


def test_query_processor_validates_resources_against_the_enum_and_the_agent() -> None:
    lm = DummyLM(
        [
            {
                "search_queries": ["storage Map", "storage Map", " "],
                "resources": ["cairo_book", "bogus", "scarb_docs", "CAIRO_BOOK"],
            }
        ]
    )
    with dspy.context(lm=lm):
        out = QueryProcessorProgram()(query="How do I use a storage Map in my contract?", allowed=[BOOK, FOUNDRY])
    processed = out.processed_query
    assert processed.search_queries == ["storage Map"]
    assert processed.resources == [BOOK], "unknown and disallowed sources are dropped"
    assert processed.is_contract_related and not processed.is_test_related


def test_no_valid_resource_means_all_of_the_agents_sources() -> None:
    lm = DummyLM([{"search_queries": ["x"], "resources": ["nothing_real"]}])
    with dspy.context(lm=lm):
        out = QueryProcessorProgram()(query="How do I write a test with snforge?", allowed=[FOUNDRY, BOOK])
    assert out.processed_query.resources == [FOUNDRY, BOOK]
    assert out.processed_query.is_test_related


def test_a_deployments_own_sources_are_described_to_the_query_processor_and_can_be_chosen() -> None:
    lm = DummyLM([{"search_queries": ["Zorbex widget"], "resources": ["team_docs", "cairo_book"]}])
    program = QueryProcessorProgram(extra_sources={"team_docs": "Our team's conventions: Zorbex widgets."})
    with dspy.context(lm=lm):
        out = program(query="How do we build a Zorbex widget?", allowed=["team_docs", BOOK])
    assert out.processed_query.resources == ["team_docs", BOOK]
    instructions = lm.history[-1]["messages"][0]["content"]
    assert "- team_docs: Our team's conventions: Zorbex widgets." in instructions
    assert "team_docs" not in str(QueryProcessorProgram().predict.signature.instructions), "built-ins unchanged"


async def test_query_processor_async_and_history_reach_the_prompt() -> None:
    lm = DummyLM([{"search_queries": ["Felt252Dict remove"], "resources": ["corelib_docs"]}])
    with dspy.context(lm=lm):
        out = await QueryProcessorProgram().acall(query="And remove?", chat_history="user: dictionaries?")
    assert out.resources == ["corelib_docs"]
    prompt = lm.history[-1]["messages"]
    assert "user: dictionaries?" in prompt[-1]["content"]
    # The instructions describe every source and the demos are in the prompt.
    assert all(source.value in prompt[0]["content"] for source in DocumentSource)
    assert len(CAIRO_DEMOS) >= 4 and "mapping from addresses" in str(prompt)


def test_scarb_query_signature_is_scarb_specific() -> None:
    instructions = ScarbQuerySignature.instructions
    assert "Scarb.toml" in instructions and "scarb build" in instructions and "cairo_book" not in instructions
    assert "troubleshoot" in instructions
    assert "Scarb.toml" in ScarbGenerationSignature.instructions


@pytest.mark.parametrize(
    ("text", "contract", "test"),
    [
        ("How do I emit an event from my contract?", True, False),
        ("write a unit test for my ERC20 with cheatcodes", True, True),
        ("How do I reverse an array?", False, False),
        ("How to use assert_eq in tests", False, True),
    ],
)
def test_contract_and_test_detection(text: str, contract: bool, test: bool) -> None:
    assert is_contract_related([text]) is contract
    assert is_test_related([text]) is test


def test_generation_uses_chain_of_thought_and_numbered_context() -> None:
    lm = DummyLM([{"reasoning": "Storage is declared in a struct.", "answer": "Declare a #[storage] struct [1]."}])
    context = format_context(
        [result("Storage", "Use #[storage]."), result("Maps", "Map<K, V>", chunk="c2")],
        [resolve_template("builtin", "contract")],
    )
    with dspy.context(lm=lm):
        out = GenerationProgram()(query="storage?", context=context)
    assert out.answer == "Declare a #[storage] struct [1]."
    assert out.reasoning
    sent = lm.history[-1]["messages"]
    assert "[1] Storage" in sent[-1]["content"] and "[2] Maps" in sent[-1]["content"]
    assert "#[starknet::contract]" in sent[-1]["content"]
    system = sent[0]["content"]
    assert "[1]" in system and "Cairo 2.x" in system and "nothing to do with Cairo" in system


def test_empty_context_says_so() -> None:
    assert "no documentation was found" in format_context([])


async def test_judge_scores_all_documents_in_one_call_and_keeps_the_relevant() -> None:
    lm = DummyLM([{"scores": [0.9, 0.1, 0.6]}])
    docs = [result("A", "a", chunk="a"), result("B", "b", chunk="b"), result("C", "c", chunk="c")]
    with dspy.context(lm=lm):
        out = await RetrievalJudge().aforward("q", docs, threshold=0.5)
    assert [d.chunk_id for d in out.documents] == ["a", "c"]
    assert len(lm.history) == 1
    assert "[1] A" in lm.history[0]["messages"][-1]["content"] and "[3] C" in lm.history[0]["messages"][-1]["content"]


async def test_a_malformed_judge_verdict_keeps_every_document() -> None:
    lm = DummyLM([{"scores": [0.9]}])
    docs = [result("A", "a", chunk="a"), result("B", "b", chunk="b")]
    with dspy.context(lm=lm):
        out = await RetrievalJudge().aforward("q", docs, threshold=0.5)
    assert len(out.documents) == 2


def test_programs_save_and_load_their_optimized_state(tmp_path: Path) -> None:
    program = QueryProcessorProgram()
    program.predict.demos = program.predict.demos[:1]
    program.predict.signature = program.predict.signature.with_instructions("Tuned instructions.")
    program.save(str(tmp_path / "query_processor.json"))
    fresh = QueryProcessorProgram()
    assert load_optimized(fresh, tmp_path, "query_processor", "cairo-coder") == tmp_path / "query_processor.json"
    assert fresh.predict.signature.instructions == "Tuned instructions."
    assert len(fresh.predict.demos) == 1
    # Per-agent files win over shared ones; nothing configured means built-in programs.
    (tmp_path / "cairo-coder").mkdir()
    program.save(str(tmp_path / "cairo-coder" / "query_processor.json"))
    assert load_optimized(QueryProcessorProgram(), tmp_path, "query_processor", "cairo-coder") == (
        tmp_path / "cairo-coder" / "query_processor.json"
    )
    assert load_optimized(QueryProcessorProgram(), "", "query_processor") is None
    # A file for another program is a clear error, not a silently half-loaded program.
    GenerationProgram().save(str(tmp_path / "generation.json"))
    (tmp_path / "query_processor.json").write_text((tmp_path / "generation.json").read_text())
    with pytest.raises(OptimizedProgramError, match="query_processor"):
        load_optimized(QueryProcessorProgram(), tmp_path, "query_processor")


def test_templates_builtin_none_or_file(tmp_path: Path) -> None:
    assert "snforge_std" in resolve_template("builtin", "test")
    assert resolve_template("", "test") == ""
    (tmp_path / "t.md").write_text("my template")
    assert resolve_template(str(tmp_path / "t.md"), "contract") == "my template"
    with pytest.raises(TemplateError, match="contract_template"):
        resolve_template(str(tmp_path / "missing.md"), "contract")


def test_cached_adapter_formats_like_dspy_and_reformats_only_new_demos() -> None:
    from cairo_coder.programs.adapter import CachedChatAdapter
    from cairo_coder.programs.query_processor import CairoQuerySignature as QuerySignature

    class Counting(CachedChatAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.formatted = 0

        def format_user_message_content(self, *args: object, **kwargs: object) -> str:
            self.formatted += 1
            return str(super().format_user_message_content(*args, **kwargs))  # type: ignore[arg-type]

    adapter, plain = Counting(), dspy.ChatAdapter()
    demos = list(CAIRO_DEMOS)
    inputs = {"chat_history": "", "query": "How do I use a storage Map?"}
    first = adapter.format(QuerySignature, demos, inputs)
    assert first == plain.format(QuerySignature, demos, inputs)
    calls = adapter.formatted
    first[1]["content"] = "changed by a caller"  # what a caller does to its messages never reaches the cache
    again = adapter.format(QuerySignature, list(demos), inputs)
    assert again == plain.format(QuerySignature, demos, inputs)
    assert adapter.formatted == calls + 1, "only the question was formatted: system message and demos cached"
    other = [dspy.Example(**{**demos[0].toDict(), "query": "a different demo question"})]
    assert adapter.format(QuerySignature, other, inputs) == plain.format(QuerySignature, other, inputs)
    assert adapter.formatted == calls + 3, "new demo objects are formatted, then the question"


def test_an_optimized_query_processor_still_knows_the_deployments_own_sources(tmp_path: Path) -> None:
    from cairo_coder.agents import build_programs
    from cairo_coder.config import load_settings

    optimized = tmp_path / "optimized"
    optimized.mkdir()
    saved = QueryProcessorProgram()
    saved.predict.signature = saved.predict.signature.with_instructions("Optimized instructions.")
    saved.save(str(optimized / "query_processor.json"))
    config = tmp_path / "c.toml"
    config.write_text(
        f'[pipeline]\noptimized_dir = "{optimized}"\n'
        '[sources.team_docs]\nname = "Team"\npath = "."\nbase_url = "https://docs.example.com"\n'
        'description = "Zorbex widgets"\n[agents.cairo-coder]\nname = "All"\nsources = ["team_docs", "cairo_book"]\n'
    )
    settings = load_settings(config, environ={})
    programs = build_programs(settings.agents["cairo-coder"], settings, None, None)  # type: ignore[arg-type]
    instructions = programs.query_processor.predict.signature.instructions
    assert "query_processor" in programs.optimized, "the optimized program was loaded"
    assert instructions.startswith("Optimized instructions.") and "- team_docs: Zorbex widgets" in instructions
