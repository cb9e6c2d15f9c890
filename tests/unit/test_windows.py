"""Chunk windows: an embedder sees the head of a chunk; further windows cover the rest, each after a short
form of the heading trail."""

from __future__ import annotations

import re

from cairo_coder.embeddings import MAX_WINDOWS, WINDOW_CONTEXT_TOKENS, NoEmbedder, chunk_windows, split_windows


def words(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer: one token per word."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_a_chunk_that_fits_is_one_window_equal_to_the_head() -> None:
    assert split_windows("Title > Section", "short body", 50, words) == ["Title > Section\nshort body"]


def test_windows_cover_the_rest_of_the_body_after_the_head_with_the_short_context() -> None:
    context = "Page > Section"
    body = " ".join(f"w{i}" for i in range(100))
    windows = split_windows(context, body, 20, words)
    assert windows[0] == f"{context}\n{body}"  # the head: what was embedded before, cut by the embedder
    # The head reaches 20 tokens: 3 of context, 17 of body. The rest (83 words) in windows of 20 - 3 = 17.
    assert windows[1] == context + "\n" + " ".join(f"w{i}" for i in range(17, 34))
    covered = [w for window in windows[1:] for w in window.split("\n", 1)[1].split()]
    assert covered == [f"w{i}" for i in range(17, 100)]
    assert all(len(words(window)) <= 20 for window in windows[1:])


def test_long_context_is_shortened_and_windows_are_capped() -> None:
    context = " ".join(f"h{i}" for i in range(40))
    body = " ".join(f"w{i}" for i in range(5000))
    windows = split_windows(context, body, 60, words)
    assert len(windows) == MAX_WINDOWS + 1
    short = windows[1].split("\n", 1)[0]
    assert short.split() == [f"h{i}" for i in range(WINDOW_CONTEXT_TOKENS)]


def test_an_embedder_without_windows_sees_one_text() -> None:
    assert chunk_windows(NoEmbedder(), "T", "body") == ["T\nbody"]


async def test_int8_precision_is_a_different_embedder_with_close_unit_vectors() -> None:
    import math

    from cairo_coder.config import EmbeddingSettings
    from cairo_coder.embeddings import LocalEmbedder

    full = LocalEmbedder(EmbeddingSettings())
    quantized = LocalEmbedder(EmbeddingSettings(precision="int8"))
    assert quantized.id == full.id + ":int8", "a store built with one is never searched with the other"
    text = "How do I store a Map in a contract?"
    a, b = await full.embed_query(text), await quantized.embed_query(text)
    assert len(b) == 384 and math.isclose(sum(x * x for x in b), 1.0, rel_tol=1e-4)
    assert 0.8 < sum(x * y for x, y in zip(a, b, strict=True)) < 0.9999
