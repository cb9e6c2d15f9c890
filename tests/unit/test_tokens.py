"""Token budgets of MCP-mode documentation: counted in real cl100k tokens, never exceeded."""

from __future__ import annotations

import random

import pytest

from cairo_coder import tokens
from cairo_coder.rendering import TRUNCATION_NOTE, format_for_agent
from cairo_coder.tokens import count_tokens, truncate_to_tokens
from cairo_coder.types import Document, DocumentMetadata, SearchResult
from tests.conftest import corpus_dir


def result(content: str, number: int) -> SearchResult:
    meta = DocumentMetadata(
        source="cairo_book",
        path=f"page{number}.md",
        title=f"Page {number}",
        url=f"https://book.cairo-lang.org/page{number}.html",
        source_commit="f535de7c7f09",
    )
    return SearchResult(document=Document(content=content, metadata=meta), score=1.0, chunk_id=f"c{number}")


def corpus_chunks() -> list[str]:
    """Real documentation text, code-heavy pages included, in ~1,800-character pieces."""
    pieces: list[str] = []
    for path in sorted(corpus_dir().glob("*/**/*.md"))[:200]:
        text = path.read_text(errors="replace")
        pieces.extend(text[i : i + 1800] for i in range(0, min(len(text), 9000), 1800))
    return [p for p in pieces if p.strip()]


def test_the_tokenizer_is_the_real_one_and_offline() -> None:
    assert tokens.encoding() is not None, "cl100k_base from LiteLLM's bundled files"
    assert count_tokens("hello world") == 2
    assert count_tokens("fn main() -> felt252 { 42 }") > len("fn main() -> felt252 { 42 }") / 4


@pytest.mark.parametrize("budget", [100, 150, 400, 1000, 2000, 4000])
def test_documentation_never_exceeds_its_token_budget(budget: int) -> None:
    chunks = corpus_chunks()
    rng = random.Random(budget)
    over_by_chars = 0
    for _ in range(40):
        documents = [result(text, n) for n, text in enumerate(rng.sample(chunks, 12), start=1)]
        text = format_for_agent(documents, budget)
        assert count_tokens(text) <= budget
        assert text.startswith("## [1] Page 1\nSource: cairo_book @ f535de7c7f09 — https://book.cairo-lang.org/")
        whole = sum(1 for line in text.splitlines() if line.startswith("## ["))
        # Whole chunks first, in ranking order; at most the last one is cut, and nothing follows the cut.
        assert all(f"## [{n}] Page {n}\n" in text for n in range(1, whole + 1))
        if TRUNCATION_NOTE in text:
            assert text.endswith(TRUNCATION_NOTE)
            # The budget is used: what was left out would not have fit.
            assert count_tokens(text) > budget * 0.7
        over_by_chars += count_tokens(format_for_agent(documents, 10**6)[: budget * 4]) > budget
    if budget >= 400:
        # The rule this replaces (4 characters per token) would have gone over the budget on real pages.
        assert over_by_chars > 0


def test_a_stored_token_count_is_the_one_the_budget_uses() -> None:
    """Chunks from the store carry their count (written at ingestion): it is used, not counted again."""
    short = [result("fn main() {}\n", n) for n in (1, 2)]
    assert TRUNCATION_NOTE not in format_for_agent(short, 200)
    short[1].document.metadata.prompt_tokens = 500  # a chunk the store says is long: it goes to the cut
    assert format_for_agent(short, 200).endswith(TRUNCATION_NOTE)


def test_a_cut_ends_at_a_line_break_and_the_whole_text_fits_unchanged() -> None:
    text = "".join(f"line {i}: let x_{i}: u256 = {i * 7919};\n" for i in range(200))
    cut = truncate_to_tokens(text, 60)
    assert text.startswith(cut) and cut.endswith("\n") and 0 < count_tokens(cut) <= 60
    assert truncate_to_tokens(text, 100_000) == text
    assert truncate_to_tokens("no line break here at all, just one long line", 3) == ""


def test_no_documents_and_a_budget_too_small_say_so() -> None:
    assert format_for_agent([], 1000) == "No documentation matching this query was found."
    one = [result("x" * 50, 1)]
    assert "does not fit in 5 tokens" in format_for_agent(one, 5)
    assert format_for_agent(one, 1000).count("## [1]") == 1


def test_a_block_counted_in_parts_is_never_undercounted() -> None:
    """format_for_agent counts header and chunk apart (the chunk's count is cached): the parts meet at line breaks,
    so their sum plus one bounds the whole block's count."""
    header = "## [3] Contract Storage › Accessing and Writing\nSource: cairo_book @ f535de7c7f09 — https://x.org/a\n\n"
    for chunk in corpus_chunks():
        content = chunk.strip()
        assert count_tokens(f"{header}{content}\n") <= count_tokens(header) + count_tokens(content) + 1


def test_without_the_tokenizer_file_budgets_hold_by_a_conservative_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tokens.encoding()
    assert real is not None
    monkeypatch.setattr(tokens, "bundled_tokenizer_dir", lambda: None)
    tokens.encoding.cache_clear()
    tokens.count_tokens_cached.cache_clear()
    try:
        assert tokens.encoding() is None
        assert count_tokens("x" * 25) == 10
        rng = random.Random(7)
        chunks = corpus_chunks()
        for _ in range(20):
            documents = [result(text, n) for n, text in enumerate(rng.sample(chunks, 12), start=1)]
            text = format_for_agent(documents, 1000)
            assert text.startswith("## [1]") and len(real.encode_ordinary(text)) <= 1000
    finally:
        monkeypatch.undo()
        tokens.encoding.cache_clear()
        tokens.count_tokens_cached.cache_clear()
    assert tokens.encoding() is not None


def test_token_offsets_cover_the_text_token_by_token() -> None:
    text = "fn main() {\n    let x: u256 = 0x1234; // déjà vu\n}\n" * 3
    spans = tokens.token_offsets(text)
    assert len(spans) == count_tokens(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a < b for a, b in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
