"""Chunk windows: an embedder sees the head of a chunk; further windows cover the rest, each after a short
form of the heading trail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    from cairo_coder.embeddings import LocalEmbedder
    from cairo_coder.local_model import int8_layers

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


def test_auto_precision_and_model_follow_the_store_and_default_to_the_shipped_int8() -> None:
    from cairo_coder.config import BASE_LOCAL_MODEL, EmbeddingSettings
    from cairo_coder.embeddings import LocalEmbedder

    auto = LocalEmbedder(EmbeddingSettings())
    default = "local:cairo-minilm-l6-v1:128:int8-per-channel"
    base_float32 = "local:all-MiniLM-L6-v2:128"  # what stores were built with before int8, then before fine-tuning
    assert (auto.model, auto.precision, auto.id) == ("cairo-minilm-l6-v1", "int8", default)
    auto.adopt(base_float32)
    assert (auto.model, auto.precision, auto.id) == (BASE_LOCAL_MODEL, "float32", base_float32)
    assert auto.reindex_note == (
        "the store was built with all-MiniLM-L6-v2: `cairo-coder ingest --reindex` moves it to cairo-minilm-l6-v1"
    )
    auto.adopt(base_float32 + ":int8-per-channel")
    assert (auto.model, auto.precision) == (BASE_LOCAL_MODEL, "int8")
    auto.adopt("local:cairo-minilm-l6-v1:128")
    assert (auto.model, auto.precision) == ("cairo-minilm-l6-v1", "float32")
    for foreign in ("local:all-MiniLM-L6-v2:128:int8", "local:all-MiniLM-L6-v2:256", "remote:openai/x"):
        auto.adopt(foreign)  # an earlier int8 scheme, other limits, another provider: a mismatch the store reports
        assert auto.id == default, foreign
    auto.adopt(base_float32)
    auto.adopt(None)  # a new or re-indexed store
    assert auto.id == default and auto.reindex_note is None
    for fixed in ("float32", "int8"):
        pinned = LocalEmbedder(EmbeddingSettings(precision=fixed))  # type: ignore[arg-type]
        pinned.adopt(f"local:cairo-minilm-l6-v1:128{'' if fixed == 'int8' else ':int8-per-channel'}")
        assert pinned.precision == fixed
    named = LocalEmbedder(EmbeddingSettings(model="cairo-minilm-l6-v1"))  # a model the configuration names stays
    named.adopt(base_float32)
    assert (named.model, named.precision) == ("cairo-minilm-l6-v1", "int8")
    base = LocalEmbedder(EmbeddingSettings(model=BASE_LOCAL_MODEL))
    base.adopt("local:cairo-minilm-l6-v1:128")
    assert (base.model, base.precision) == (BASE_LOCAL_MODEL, "int8") and base.reindex_note is None


def test_local_models_are_checked_and_remote_one_setting_away() -> None:
    from pydantic import ValidationError

    from cairo_coder.config import REMOTE_MODEL, EmbeddingSettings

    with pytest.raises(ValidationError, match="the local provider runs cairo-minilm-l6-v1 or all-MiniLM-L6-v2"):
        EmbeddingSettings(model="bge-small")
    for local in ("cairo-minilm-l6-v1", "all-MiniLM-L6-v2"):
        assert EmbeddingSettings(provider="remote", model=local).model == REMOTE_MODEL


async def test_the_shipped_weights_are_the_fine_tuned_model_not_the_base() -> None:
    """The default model loads the fine-tuned weights over the base model: same tokenizer and vector size,
    different vectors (a question moves nearer the page that answers it)."""
    from cairo_coder.config import BASE_LOCAL_MODEL, EmbeddingSettings
    from cairo_coder.embeddings import LocalEmbedder

    tuned = LocalEmbedder(EmbeddingSettings(precision="float32"))
    base = LocalEmbedder(EmbeddingSettings(model=BASE_LOCAL_MODEL, precision="float32"))
    question = "How do I get the address of the contract that called my function?"
    page = "get_caller_address\nReturns the address of the caller of the current contract call."
    (tq, tp), (bq, _) = await tuned.embed([question, page]), await base.embed([question, page])

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert len(tq) == len(bq) == 384
    assert 0.5 < cos(tq, bq) < 0.999, "the fine-tuned weights were not applied"
    assert cos(tq, tp) > 0.5


async def test_a_weights_file_replaces_the_shipped_weights_and_is_named_in_the_id(tmp_path: Path) -> None:
    """embeddings.weights scores a model trained by the recipe (e.g. on half of train) without touching the
    shipped file; its content hash keeps a store built with other weights from being searched with these."""
    from pydantic import ValidationError
    from safetensors.torch import save_file

    from cairo_coder.config import BASE_LOCAL_MODEL, EmbeddingSettings
    from cairo_coder.embeddings import LocalEmbedder, file_digest

    base = LocalEmbedder(EmbeddingSettings(model=BASE_LOCAL_MODEL, precision="float32"))
    state = base._load()[0].auto_model.state_dict()
    file = tmp_path / "base-as-tuned.safetensors"
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(file))
    other = LocalEmbedder(EmbeddingSettings(precision="float32", weights=str(file)))
    digest = file_digest(str(file))
    assert len(digest) == 12 and other.id == f"local:cairo-minilm-l6-v1+{digest}:128"
    shipped = LocalEmbedder(EmbeddingSettings(precision="float32"))
    text = ["How do I get the address of the contract that called my function?"]
    (o,), (b,), (s,) = await other.embed(text), await base.embed(text), await shipped.embed(text)

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cos(o, b) > 0.9999 > cos(o, s)  # the file's weights (the base model's here), not the shipped ones
    other.adopt(shipped.id)  # a store built with the shipped weights: left to the store to report the mismatch
    assert other.id == f"local:cairo-minilm-l6-v1+{digest}:128"
    with pytest.raises(ValidationError, match="no file at"):
        EmbeddingSettings(weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValidationError, match="local provider only"):
        EmbeddingSettings(provider="remote", weights=str(file))
