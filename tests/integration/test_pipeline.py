"""The RAG pipeline end to end: real PostgreSQL store, real local embedder, real dspy.LM/LiteLLM path to our
fake OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cairo_coder.agents import AgentFactory, UnknownAgentError
from cairo_coder.config import Settings
from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.events import Sources, StreamEvent, wire_data
from cairo_coder.llm import LLMRouter
from cairo_coder.llm_errors import LLMNotConfiguredError, LLMRateLimitError
from cairo_coder.store import DocumentStore
from cairo_coder.store.search import reciprocal_rank_fusion
from cairo_coder.types import DocumentSource, Message, Role
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings


@pytest.fixture
async def factory_for(kb_url: str, local_embedder: LocalEmbedder) -> AsyncIterator[Any]:
    stores: list[DocumentStore] = []

    async def build(settings: Settings) -> AgentFactory:
        store = await DocumentStore.open(settings.database, local_embedder, settings.search)
        stores.append(store)
        return AgentFactory(settings, store, local_embedder, LLMRouter(settings.llm, environ={}))

    yield build
    for store in stores:
        await store.close()


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


QUESTION = "How do I declare storage variables in a contract?"


async def test_events_come_in_order_with_sources_and_a_streamed_cited_answer(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    events = await collect(factory.create_agent().stream(QUESTION))
    types = [e.type for e in events]
    assert types[:2] == ["processing", "processing"]
    assert types[2] == "sources"
    responses = [e for e in events if e.type == "response"]
    assert len(responses) > 1, "the answer is streamed in several chunks"
    assert types[-2:] == ["final_response", "end"]
    assert types[3:-2] == ["response"] * len(responses)
    assert isinstance(events[2], Sources)
    sources = wire_data(events[2])
    assert sources and sources[0]["title"] == "Contract Storage"
    assert set(sources[0]) >= {"title", "url", "source", "version", "number", "path"}
    assert sources[0]["url"].startswith("https://book.cairo-lang.org/")
    final = wire_data(events[-2])
    assert final["answer"] == "".join(wire_data(e) for e in responses).strip()
    assert final["answer"].startswith(f"ANSWER<{QUESTION}>") and "[1]" in final["answer"]
    assert final["citations"] == [1] and final["unknown_citations"] == []
    # Two LLM calls (query processing, generation), the second streamed; context numbered for citations.
    chats = fake.chat_requests()
    assert [bool(r["body"].get("stream")) for r in chats] == [False, True]
    generation_prompt = chats[1]["body"]["messages"][-1]["content"]
    assert "[1] Contract Storage" in generation_prompt
    # A contract question gets the contract template, not the test template.
    assert "#[starknet::contract]" in generation_prompt and "snforge_std" not in generation_prompt


async def test_streaming_and_non_streaming_give_the_same_answer_sources_and_usage(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    pipeline = factory.create_agent()
    events = await collect(pipeline.stream(QUESTION))
    result = await pipeline.run(QUESTION)
    final = wire_data(next(e for e in events if e.type == "final_response"))
    assert result.answer == final["answer"]
    assert result.citations == final["citations"] == [1]
    assert [s.model_dump(mode="json") for s in result.sources] == wire_data(
        next(e for e in events if e.type == "sources")
    )
    # Usage: counted per stage and in total, equal to what the fake server reported.
    assert set(result.usage.stages) == {"query_processing", "generation"}
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens > 0
    assert final["usage"]["total_tokens"] == result.usage.total_tokens
    chats = fake.chat_requests()
    assert len(chats) == 4
    expected = [fake.usage_for(r["body"]) for r in chats[2:]]  # what the server reported for run()'s two calls
    assert result.usage.stages["query_processing"].model_dump() == expected[0]
    assert result.usage.stages["generation"].model_dump() == expected[1]


async def test_history_is_given_to_both_programs_and_test_questions_get_the_test_template(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    history = [
        Message(role=Role.USER, content="I wrote a counter contract."),
        Message(role=Role.ASSISTANT, content="Nice, it stores a u128."),
    ]
    await factory.create_agent().run("How do I test it with snforge?", history)
    chats = fake.chat_requests()
    for request in chats:
        assert "user: I wrote a counter contract." in request["body"]["messages"][-1]["content"]
    assert "snforge_std" in chats[1]["body"]["messages"][-1]["content"]


async def test_query_processing_output_steers_retrieval_and_unknown_resources_are_dropped(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    fake.fields["search_queries"] = ["Scarb.toml edition key", "manifest package section"]
    fake.fields["resources"] = ["scarb_docs", "no_such_source"]
    result = await factory.create_agent().run("Which edition does my package use?")
    assert result.processed_query is not None
    assert result.processed_query.resources == [DocumentSource.SCARB_DOCS]
    assert result.sources and {s.source for s in result.sources} == {"scarb_docs"}
    assert result.sources[0].title == "Manifest Format"


@pytest.mark.parametrize(
    ("agent_id", "allowed"),
    [
        ("cairo-coder", {"cairo_book", "scarb_docs", "starknet_foundry", "starknet_js"}),
        ("starknet-agent", {"starknet_foundry", "starknet_js"}),
        ("scarb-assistant", {"scarb_docs"}),
    ],
)
async def test_each_agent_only_retrieves_from_its_own_sources(
    kb_url: str, fake: FakeOpenAI, factory_for: Any, agent_id: str, allowed: set[str]
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    # The query processor asks for every source: the agent's restriction must still hold.
    fake.fields["resources"] = [s.value for s in DocumentSource]
    fake.fields["search_queries"] = [
        "storage",
        "cheatcodes caller address",
        "Scarb.toml manifest",
        "Contract object ABI",
        "arrays append",
    ]
    result = await factory.create_agent_by_id(agent_id).run("storage cheatcodes manifest contract arrays")
    seen = {s.source for s in result.sources}
    assert seen and seen <= allowed
    if agent_id == "scarb-assistant":
        prompt = fake.chat_requests()[0]["body"]["messages"][0]["content"]
        assert "Scarb" in prompt and "scarb_docs" in prompt and "cairo_book" not in prompt


async def test_unknown_agent_is_a_precise_error_listing_the_known_ids(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    with pytest.raises(UnknownAgentError) as caught:
        factory.create_agent_by_id("nope")
    assert "cairo-coder, scarb-assistant, starknet-agent" in str(caught.value)


async def test_mcp_mode_works_without_any_llm(kb_url: str, factory_for: Any) -> None:
    factory = await factory_for(make_settings(kb_url, CAIRO_CODER_PIPELINE__MCP_MAX_TOKENS="200"))
    events = await collect(factory.create_agent().stream("storage mappings", mcp_mode=True))
    assert [e.type for e in events] == ["processing", "processing", "sources", "response", "final_response", "end"]
    text = wire_data(events[3])
    assert text.startswith("## [1] ") and "Source: cairo_book — https://book.cairo-lang.org/" in text
    assert len(text) <= 200 * 4 + 50, "the documentation fits the token budget"
    result = await factory.create_agent().run("storage mappings", mcp_mode=True)
    assert result.answer == text and result.usage.total_tokens == 0
    # Without MCP mode the same request needs a model, and says which settings to provide.
    events = await collect(factory.create_agent().stream("storage mappings"))
    assert [e.type for e in events] == ["error"]
    assert wire_data(events[0])["type"] == "llm_not_configured"
    assert "CAIRO_CODER_MODEL" in wire_data(events[0])["message"]
    with pytest.raises(LLMNotConfiguredError):
        await factory.create_agent().run("storage mappings")


async def test_mcp_mode_with_an_llm_uses_query_processing_but_never_generates(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    fake.fields["search_queries"] = ["Scarb.toml edition"]
    result = await factory.create_agent().run("what edition?", mcp_mode=True)
    assert len(fake.chat_requests()) == 1 and "Manifest Format" in result.answer


async def test_rate_limits_and_server_errors_are_retried_then_succeed(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="3"))
    fake.chat_failures.extend([429, 500, 503])
    events = await collect(factory.create_agent().stream(QUESTION))
    assert events[-1].type == "end" and not any(e.type == "error" for e in events)
    assert len(fake.chat_requests()) == 3 + 2, "three failed attempts, then both calls succeed"


async def test_failure_after_the_last_retry_is_one_error_event_and_nothing_after(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="2"))
    fake.chat_failures.extend([429] * 10)
    events = await collect(factory.create_agent().stream(QUESTION))
    assert [e.type for e in events] == ["processing", "error"]
    assert wire_data(events[-1])["type"] == "llm_rate_limited"
    assert "rate" in wire_data(events[-1])["message"].lower() and "Traceback" not in wire_data(events[-1])["message"]
    assert len(fake.chat_requests()) == 3
    fake.chat_failures.clear()
    fake.chat_failures.extend([500] * 10)
    with pytest.raises(Exception) as caught:
        await factory.create_agent().run(QUESTION)
    assert caught.value.__class__.__name__ == "LLMUnavailableError"
    fake.chat_failures.clear()
    # The next request is not affected by the previous failure.
    assert (await factory.create_agent().run(QUESTION)).answer.startswith("ANSWER<")


async def test_failure_during_generation_comes_after_sources(kb_url: str, fake: FakeOpenAI, factory_for: Any) -> None:
    factory = await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="0"))
    seen = []
    async for event in factory.create_agent().stream(QUESTION):
        seen.append(event)
        if event.type == "sources":
            fake.chat_failures.append(500)  # query processing succeeded; generation fails
    assert [e.type for e in seen] == ["processing", "processing", "sources", "error"]
    assert wire_data(seen[-1])["type"] == "llm_unavailable"


async def test_rate_limit_error_type_after_retries(kb_url: str, fake: FakeOpenAI, factory_for: Any) -> None:
    factory = await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="0"))
    fake.chat_failures.append(429)
    with pytest.raises(LLMRateLimitError):
        await factory.create_agent().run(QUESTION)


async def test_retrieval_judge_scores_every_candidate_in_one_call(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    settings = llm_settings(kb_url, fake, CAIRO_CODER_AGENTS__CAIRO_CODER__RETRIEVAL_JUDGE="true")
    factory = await factory_for(settings)
    plain = await (await factory_for(llm_settings(kb_url, fake))).create_agent().run(QUESTION)
    fake.requests.clear()

    def scores(body: dict[str, Any], query: str) -> list[float]:
        from tests.fake_openai import input_field

        documents = input_field(body["messages"], "documents")
        return [1.0 if "Storage" in block.split("\n", 1)[0] else 0.0 for block in documents.split("\n\n[")]

    fake.fields["scores"] = scores
    judged = await factory.create_agent().run(QUESTION)
    judge_calls = [r for r in fake.chat_requests() if "scores" in r["body"]["messages"][0]["content"]]
    assert len(judge_calls) == 1
    assert judged.sources and all("Storage" in s.title for s in judged.sources)
    assert len(judged.sources) < len(plain.sources)
    assert "retrieval_judge" in judged.usage.stages


async def test_optimized_programs_are_loaded_from_the_configured_directory(
    kb_url: str, fake: FakeOpenAI, factory_for: Any, tmp_path: Path
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    program = factory.programs("cairo-coder").generation
    optimized = program.deepcopy()
    optimized.generate.predict.signature = optimized.generate.predict.signature.with_instructions(
        "OPTIMIZED INSTRUCTIONS for Cairo answers."
    )
    optimized.save(str(tmp_path / "generation.json"))
    json.loads((tmp_path / "generation.json").read_text())
    factory2 = await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_PIPELINE__OPTIMIZED_DIR=str(tmp_path)))
    assert factory2.programs("cairo-coder").optimized == {"generation": tmp_path / "generation.json"}
    fake.requests.clear()
    await factory2.create_agent().run(QUESTION)
    assert "OPTIMIZED INSTRUCTIONS" in fake.chat_requests()[1]["body"]["messages"][0]["content"]
    # Other agents fall back to their built-in programs (scarb has its own program names).
    assert factory2.programs("scarb-assistant").optimized == {}


async def test_backoff_waits_between_attempts_without_a_retry_after_hint(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="1"))
    fake.retry_after = None
    fake.chat_failures.append(503)
    await factory.create_agent().run(QUESTION, mcp_mode=True)
    first, second = fake.chat_requests()[:2]
    assert second["time"] - first["time"] >= 0.7, "exponential backoff starts at one second (jittered ±25%)"


class CountingEmbedder:
    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.id = inner.id
        self.dimensions = inner.dimensions

    async def embed(self, texts: Any) -> list[list[float]]:
        self.calls.append(len(texts))
        return await self.inner.embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        self.calls.append(1)
        return await self.inner.embed_query(text)


async def test_all_search_queries_are_embedded_in_one_call_and_results_are_deterministic(
    kb_url: str, fake: FakeOpenAI, local_embedder: LocalEmbedder
) -> None:
    settings = llm_settings(kb_url, fake)
    embedder = CountingEmbedder(local_embedder)
    async with await DocumentStore.open(settings.database, embedder, settings.search) as store:  # type: ignore[arg-type]
        factory = AgentFactory(settings, store, embedder, LLMRouter(settings.llm, environ={}))  # type: ignore[arg-type]
        fake.fields["search_queries"] = ["storage variables", "Map read write", "arrays append", "storage Map"]
        first = await factory.create_agent().run(QUESTION, mcp_mode=True)
        assert embedder.calls == [5], "the question and four search queries, in one batch"
        runs = [await factory.create_agent().run(QUESTION, mcp_mode=True) for _ in range(3)]
        orders = {tuple(s.url for s in r.sources) for r in [first, *runs]}
        assert len(orders) == 1
        scores = [s.score for s in first.sources]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
        # The merged order is the rank fusion of each query's own store ranking, the question counting double.
        queries = [QUESTION, "storage variables", "Map read write", "arrays append", "storage Map"]
        assert first.processed_query is not None
        sources = list(first.processed_query.resources)  # the sources query processing chose
        # Embedded in one batch, as the retriever does: an int8 model's vectors depend a little on their batch.
        vectors = await local_embedder.embed(queries)
        rankings = [
            await store.search(q, k=settings.pipeline.candidates_per_query, sources=sources, query_vector=v)
            for q, v in zip(queries, vectors, strict=True)
        ]
        fused = reciprocal_rank_fusion(
            [([(r.chunk_id, r.score) for r in ranking], 2.0 if i == 0 else 1.0) for i, ranking in enumerate(rankings)],
            60,
        )
        chunk_url = {r.chunk_id: r.document.metadata.url for ranking in rankings for r in ranking}
        assert [s.url for s in first.sources] == [chunk_url[cid] for cid, _ in fused][: len(first.sources)]
        assert [s.score for s in first.sources] == [pytest.approx(score, abs=1e-6) for _, score in fused][
            : len(first.sources)
        ]


async def test_similarity_threshold_and_max_source_count_apply(kb_url: str, fake: FakeOpenAI, factory_for: Any) -> None:
    loose = (
        await (await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_AGENTS__CAIRO_CODER__MAX_SOURCE_COUNT="2")))
        .create_agent()
        .run(QUESTION)
    )
    assert len(loose.sources) == 2
    strict = (
        await (
            await factory_for(llm_settings(kb_url, fake, CAIRO_CODER_AGENTS__CAIRO_CODER__SIMILARITY_THRESHOLD="0.99"))
        )
        .create_agent()
        .run(QUESTION)
    )
    assert strict.sources == []
    assert "no documentation was found" in fake.chat_requests()[-1]["body"]["messages"][-1]["content"]


async def test_the_configured_search_mode_is_the_one_retrieval_uses(
    kb_url: str, fake: FakeOpenAI, local_embedder: LocalEmbedder
) -> None:
    settings = llm_settings(kb_url, fake, CAIRO_CODER_SEARCH__MODE="lexical")
    embedder = CountingEmbedder(local_embedder)
    async with await DocumentStore.open(settings.database, embedder, settings.search) as store:  # type: ignore[arg-type]
        factory = AgentFactory(settings, store, embedder, LLMRouter(settings.llm, environ={}))  # type: ignore[arg-type]
        result = await factory.create_agent().run(QUESTION, mcp_mode=True)
        assert result.sources and result.sources[0].title == "Contract Storage"
        assert embedder.calls == [], "lexical mode embeds nothing"


async def test_timeouts_are_retried_then_a_timeout_after_the_last_retry_is_a_clean_error(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(
        llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="1", CAIRO_CODER_LLM__TIMEOUT="0.5")
    )
    fake.chat_stalls.extend([1.5])  # the first attempt outlives the timeout; the retry is answered at once
    result = await factory.create_agent().run(QUESTION, mcp_mode=True)
    first, second = fake.chat_requests()
    assert second["time"] - first["time"] >= 0.5, "the retry came after the timeout"
    assert result.sources
    fake.requests.clear()
    fake.chat_stalls.extend([1.5, 1.5])  # every attempt times out
    events = await collect(factory.create_agent().stream(QUESTION))
    assert [e.type for e in events] == ["processing", "error"]
    assert wire_data(events[-1])["type"] == "llm_unavailable"
    assert (
        "timed out" in wire_data(events[-1])["message"].lower() and "Traceback" not in wire_data(events[-1])["message"]
    )
    assert len(fake.chat_requests()) == 2
    # MCP mode (search) does not depend on the model: it searches with the question as asked instead.
    fake.requests.clear()
    fake.chat_stalls.extend([1.5, 1.5])
    searched = await collect(factory.create_agent().stream(QUESTION, mcp_mode=True))
    assert [e.type for e in searched][-1] == "end" and any(e.type == "sources" for e in searched)


async def test_citations_of_sources_that_do_not_exist_are_reported(
    kb_url: str, fake: FakeOpenAI, factory_for: Any
) -> None:
    factory = await factory_for(llm_settings(kb_url, fake))
    fake.fields["answer"] = "Declare it in the storage struct [2][1]; see also [42].\n\n```cairo\nlet x = a[3];\n```"
    result = await factory.create_agent().run(QUESTION)
    assert len(result.sources) < 42
    assert result.citations == [2, 1] and result.unknown_citations == [42]
    mcp = await factory.create_agent().run(QUESTION, mcp_mode=True)
    assert mcp.citations == [] and mcp.unknown_citations == [], "documentation is not an answer"
