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

    full = LocalEmbedder(EmbeddingSettings(precision="float32"))
    quantized = LocalEmbedder(EmbeddingSettings(precision="int8"))
    assert quantized.id == full.id + ":int8-per-channel", "a store built with one is never searched with the other"
    text = "How do I store a Map in a contract?"
    a, b = await full.embed_query(text), await quantized.embed_query(text)
    assert len(b) == 384 and math.isclose(sum(x * x for x in b), 1.0, rel_tol=1e-4)
    assert 0.9 < sum(x * y for x, y in zip(a, b, strict=True)) < 0.9999


def test_int8_keeps_the_first_layer_whole_and_quantizes_the_others_per_channel() -> None:
    import torch

    from cairo_coder.config import EmbeddingSettings
    from cairo_coder.embeddings import LocalEmbedder, int8_layers

    model = LocalEmbedder(EmbeddingSettings(precision="float32"))._load()
    chosen = int8_layers(model)
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    # 6 layers x (query, key, value, attention out, FFN in, FFN out), and BERT's pooler (unused: mean pooling)
    assert len(linear) == 37 and len(chosen) == 31
    assert not any(".layer.0." in name for name in chosen) and all(".layer.0." in n for n in set(linear) - set(chosen))
    quantized = dict(LocalEmbedder(EmbeddingSettings(precision="int8"))._load().named_modules())
    assert type(quantized["0.model.encoder.layer.0.intermediate.dense"]) is torch.nn.Linear
    deep = quantized["0.model.encoder.layer.5.intermediate.dense"]
    assert type(deep) is not torch.nn.Linear and deep.weight().qscheme() == torch.per_channel_affine


def test_auto_precision_follows_the_store_and_defaults_to_int8() -> None:
    from cairo_coder.config import EmbeddingSettings
    from cairo_coder.embeddings import LocalEmbedder

    auto = LocalEmbedder(EmbeddingSettings())
    float32_id = "local:all-MiniLM-L6-v2:128"
    assert auto.precision == "int8" and auto.id == float32_id + ":int8-per-channel"
    auto.adopt(float32_id)
    assert auto.precision == "float32" and auto.id == float32_id
    auto.adopt("local:all-MiniLM-L6-v2:128:int8")  # an earlier int8 scheme: a mismatch the store reports
    assert auto.precision == "int8"
    auto.adopt(float32_id)
    auto.adopt(None)  # a new or re-indexed store
    assert auto.precision == "int8"
    for fixed in ("float32", "int8"):
        pinned = LocalEmbedder(EmbeddingSettings(precision=fixed))  # type: ignore[arg-type]
        pinned.adopt(float32_id if fixed == "int8" else pinned.id + ":int8-per-channel")
        assert pinned.precision == fixed
