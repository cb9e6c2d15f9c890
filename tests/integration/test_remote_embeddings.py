"""Remote embeddings through the real LiteLLM client against our fake OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairo_coder.config import EmbeddingSettings, LLMSettings
from cairo_coder.embeddings import EmbeddingConfigError, EmbeddingError, RemoteEmbedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.store import DocumentStore
from cairo_coder.types import DocumentSource
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI, fake_vector
from tests.integration.mini_corpus import write_mini_corpus


def remote(base_url: str, key: str = "sk-test", batch_size: int = 64) -> RemoteEmbedder:
    embedder = RemoteEmbedder(
        EmbeddingSettings(
            provider="remote",
            model="openai/text-embedding-3-large",
            dimensions=8,
            api_base=base_url,
            batch_size=batch_size,
        ),
        LLMSettings(openai_api_key=key),
    )
    embedder.BASE_DELAY = 0.05
    return embedder


async def test_batches_and_retries_rate_limits_and_server_errors() -> None:
    with FakeOpenAI() as server:
        server.failures.extend([429, 500])
        embedder = remote(server.base_url, batch_size=2)
        vectors = await embedder.embed(["a", "b", "c"])
        assert vectors[0] == pytest.approx(fake_vector("a", 8))
        assert len(vectors) == 3
        bodies = [r["body"] for r in server.requests]
        assert [len(b["input"]) for b in bodies] == [2, 2, 2, 1]  # 2 failures, then 2 batches
        assert bodies[0]["dimensions"] == 8 and bodies[0]["model"] == "text-embedding-3-large"
        assert bodies[0]["encoding_format"] == "base64", "vectors travel as base64 float32, not JSON numbers"
        assert server.requests[0]["authorization"] == "Bearer sk-test"


async def test_servers_without_base64_get_json_numbers() -> None:
    with FakeOpenAI() as server:
        server.reject_base64 = True
        embedder = remote(server.base_url)
        assert (await embedder.embed(["a"]))[0] == pytest.approx(fake_vector("a", 8))
        assert (await embedder.embed(["b"]))[0] == pytest.approx(fake_vector("b", 8))
        formats = [r["body"].get("encoding_format") for r in server.requests]
        assert formats == ["base64", None, None], "one rejected try, then JSON numbers for good"


async def test_gives_up_after_the_last_retry_with_a_clear_error() -> None:
    with FakeOpenAI() as server:
        server.failures.extend([503] * 10)
        embedder = remote(server.base_url)
        embedder.RETRIES = 2
        with pytest.raises(EmbeddingError, match="failed after 3 attempts"):
            await embedder.embed(["x"])


async def test_missing_key_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    embedder = RemoteEmbedder(EmbeddingSettings(provider="remote"), LLMSettings())
    with pytest.raises(EmbeddingConfigError) as info:
        await embedder.embed(["x"])
    assert "OPENAI_API_KEY" in str(info.value) and "llm.openai_api_key" in str(info.value)


async def test_ingest_and_search_with_remote_embeddings(db_url: str, tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        settings = make_settings(db_url)
        embedder = remote(server.base_url)
        async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
            corpus = write_mini_corpus(tmp_path / "corpus")
            report = await Ingester(settings, store).ingest_source(DocumentSource.SCARB_DOCS, corpus)
            assert report.embedded_chunks == report.chunks == 2
            status = await store.status()
            assert status["embedder"] == {"id": "remote:openai/text-embedding-3-large", "dimensions": 8}
            results = await store.search("git dependency", k=2, mode="hybrid")
            assert results[0].document.metadata.path == "guides/dependencies.md"
