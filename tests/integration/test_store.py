"""The store on a real PostgreSQL: migrations, search modes, filters, thresholds, embedder binding, errors."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from cairo_coder import lexical
from cairo_coder.config import BASE_LOCAL_MODEL, DatabaseSettings, EmbeddingSettings
from cairo_coder.embeddings import LocalEmbedder, NoEmbedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.store import (
    ChunkRecord,
    DatabaseAuthError,
    DatabaseUnavailableError,
    DocumentStore,
    EmbedderMismatchError,
    SchemaVersionError,
    writes,
)
from cairo_coder.store import search as rank
from cairo_coder.store.database import with_retries
from cairo_coder.store.schema import SCHEMA_VERSION
from cairo_coder.types import DocumentSource
from tests.conftest import make_settings
from tests.helpers import run_cli
from tests.integration.mini_corpus import write_mini_corpus


async def _ingested_store(db_url: str, tmp_path: Path, embedder: LocalEmbedder | NoEmbedder) -> DocumentStore:
    settings = make_settings(db_url)
    corpus = write_mini_corpus(tmp_path / "corpus")
    store = await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True)
    ingester = Ingester(settings, store)
    for source in (DocumentSource.CAIRO_BOOK, DocumentSource.SCARB_DOCS):
        await ingester.ingest_source(source, corpus)
    return store


async def dense_truth(
    conn: Any, vector: list[float], sources: list[str] | None, weight: float
) -> list[tuple[int, float]]:
    """Every chunk's dense score computed here from its stored vectors: weight x its best vector (head, windows,
    API item descriptions) + (1 - weight) x its head; best first, ties by id."""
    query = np.asarray(vector)
    heads = {
        r["id"]: float(np.dot(np.asarray(r["embedding"].to_list()), query))
        for r in await conn.fetch(
            "SELECT id, embedding FROM documents WHERE embedding IS NOT NULL AND ($1::text[] IS NULL "
            "OR source = ANY($1))",
            sources,
        )
    }
    best = dict(heads)
    for r in await conn.fetch(
        "SELECT doc_id, embedding FROM chunk_vectors",
    ):
        if r["doc_id"] in best:
            best[r["doc_id"]] = max(best[r["doc_id"]], float(np.dot(np.asarray(r["embedding"].to_list()), query)))
    scores = {i: weight * best[i] + (1 - weight) * heads[i] for i in heads}
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


async def test_migrations_apply_once_and_record_version(db_url: str) -> None:
    settings = make_settings(db_url)
    for _ in range(2):
        store = await DocumentStore.open(settings.database, NoEmbedder(), settings.search)
        assert store.schema_version == SCHEMA_VERSION
        await store.close()
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(range(SCHEMA_VERSION))
        indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
        assert {"documents_lexemes_idx", "documents_source_idx", "lexical_postings_term_idx"} <= indexes
        # A migration that fails is reported as such, and rolled back whole.
        last = SCHEMA_VERSION
        # Forgotten as applied, the last migration runs again and fails: what it creates exists already.
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", last)
        with pytest.raises(SchemaVersionError, match=f"schema migration {last} .* stays at schema version {last - 1}"):
            await DocumentStore.open(settings.database, NoEmbedder(), settings.search)
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == last - 1
    finally:
        await conn.close()


async def test_search_reads_the_messages_hex_felts_encode(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    """Error output pasted as the question: the message a hex felt encodes is searched, in every mode."""
    async with await _ingested_store(db_url, tmp_path, local_embedder) as store:
        pasted = f"[FAIL] my_test\n\nFailure data:\n    0x{b'Manifest Format edition'.hex()}\n"
        for mode in ("lexical", "hybrid"):
            results = await store.search(pasted, k=3, mode=mode)  # type: ignore[arg-type]
            assert results and results[0].document.metadata.path == "reference/manifest.md", mode


async def test_search_on_an_empty_store_returns_nothing(db_url: str, local_embedder: LocalEmbedder) -> None:
    settings = make_settings(db_url)
    async with await DocumentStore.open(settings.database, local_embedder, settings.search) as store:
        for mode in ("dense", "lexical", "hybrid"):
            assert await store.search("anything at all", k=3, mode=mode) == []  # type: ignore[arg-type]
        assert (await store.status())["embedder"] is None


async def test_every_search_mode_returns_scored_results_with_metadata(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    async with await _ingested_store(db_url, tmp_path, local_embedder) as store:
        conn = await asyncpg.connect(db_url)
        access = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'documents_embedding_idx'")
        await conn.close()
        assert "hnsw" in access and "vector_cosine_ops" in access
        for mode in ("dense", "lexical", "hybrid"):
            results = await store.search("How do I append to an array?", k=3, mode=mode)  # type: ignore[arg-type]
            assert results, mode
            top = results[0]
            assert top.document.metadata.path == "ch02-arrays.md", mode
            assert top.document.metadata.url == "https://book.cairo-lang.org/ch02-arrays.html#arrays"
            assert top.document.metadata.title == "Arrays"
            assert "arr.append(42);" in top.document.content  # the include was resolved
            assert "{{#" not in top.document.content
            assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
        dense = await store.search("storage variables", k=2, mode="dense")
        assert all(-1.0 <= r.score <= 1.0 for r in dense)
        assert dense[0].document.metadata.similarity == pytest.approx(dense[0].score, abs=1e-5)  # type: ignore[attr-defined]


async def test_source_filter_and_similarity_threshold(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    async with await _ingested_store(db_url, tmp_path, local_embedder) as store:
        for mode in ("dense", "lexical", "hybrid"):
            results = await store.search("edition of the package manifest", k=10, sources=["scarb_docs"], mode=mode)  # type: ignore[arg-type]
            assert results and {r.document.metadata.source for r in results} == {"scarb_docs"}, mode
            none = await store.search("edition of the package manifest", k=10, sources=["dojo_docs"], mode=mode)  # type: ignore[arg-type]
            assert none == [], mode
        loose = await store.search("storage mapping", k=20, min_similarity=-1.0)
        strict = await store.search("storage mapping", k=20, min_similarity=0.4)
        assert 0 < len(strict) < len(loose)
        assert all(r.document.metadata.similarity >= 0.4 for r in strict)  # type: ignore[attr-defined]
        # similarity_to: the similarity reported (and filtered on) is to that vector, not to the query.
        other = await local_embedder.embed_query("append to an array")
        to_other = {r.chunk_id: r.score for r in await store.search("append to an array", k=500, mode="dense")}
        reported = await store.search("storage mapping", k=10, similarity_to=other)
        assert reported
        for r in reported:
            assert r.document.metadata.similarity == pytest.approx(to_other[r.chunk_id], abs=1e-5)  # type: ignore[attr-defined]


async def test_filtered_dense_search_is_exact_by_either_plan(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source filter is searched by an exact scan when it leaves few rows, else over HNSW with a fall back to
    exact when the index comes up short; both give the exact answer. Source sizes follow the store's writes."""
    async with await _ingested_store(db_url, tmp_path, local_embedder) as store:
        vector = await local_embedder.embed_query("How do I declare dependencies?")
        scarb = ["scarb_docs"]
        sizes = await store.pool.fetchval("SELECT count(*) FROM documents WHERE source = 'scarb_docs'")
        assert await store.source_sizes.rows(store.pool, scarb) == sizes > 0
        async with store.pool.acquire() as conn:
            # The exact statement's ordering cannot be served by the HNSW index: even unfiltered and with
            # sequential scans discouraged (a tiny table is scanned anyway), its plan has no index to choose.
            weight = store.search_settings.window_weight
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")
                plan = "\n".join(
                    r[0] for r in await conn.fetch("EXPLAIN " + rank.exact_sql(1), None, 2, weight, vector)
                )
                hnsw = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + rank.HNSW_SQL, vector, None, 2, weight))
            assert "embedding_idx" not in plan and "documents_embedding_idx" in hnsw, plan
            assert "chunk_vectors_embedding_idx" in hnsw, hnsw
            truth = await dense_truth(conn, vector, scarb, weight)
            for limit in (2, sizes + 5):  # more than the filter leaves: the HNSW plan falls back to exact
                pages: rank.Pages = {}
                found = await rank.dense(conn, vector, limit, scarb, weight, pages)
                exact = rank.hits(await store.exact_scans.scan(vector, limit, scarb), None)
                for ranked in (found, exact):
                    assert [i for i, _ in ranked] == [i for i, _ in truth[:limit]], limit
                    assert ranked[0][1] == pytest.approx(truth[0][1])
                assert {source for source, _ in pages.values()} == {"scarb_docs"}
        ingester = Ingester(make_settings(db_url), store)
        await ingester.ingest_source(DocumentSource.SCARB_DOCS, write_mini_corpus(tmp_path / "again"))
        corpus = write_mini_corpus(tmp_path / "fewer")
        for page in (corpus / "scarb_docs").rglob("*.md"):
            page.unlink()
            break
        await ingester.ingest_source(DocumentSource.SCARB_DOCS, corpus)
        now = await store.pool.fetchval("SELECT count(*) FROM documents WHERE source = 'scarb_docs'")
        assert now < sizes and await store.source_sizes.rows(store.pool, scarb) == now, "a write drops the cache"
        # A search while a write's transaction is open caches the old counts; the commit must drop them again.
        real_insert = writes.insert_chunks

        async def insert_while_searching(*args: Any, **kwargs: Any) -> None:
            await real_insert(*args, **kwargs)
            assert await store.source_sizes.rows(store.pool, scarb) == now  # not committed yet

        monkeypatch.setattr(writes, "insert_chunks", insert_while_searching)
        text = "One more Scarb page."
        terms = lexical.tokenize(text)
        await store.write_page(
            "scarb_docs",
            "extra.md",
            "h-extra",
            "Extra",
            "https://example.org/extra",
            [
                ChunkRecord(
                    chunk_number=0,
                    content=text,
                    content_hash="h-extra",
                    title="Extra",
                    section=[],
                    url="https://example.org/extra",
                    terms=Counter(terms),
                    terms_in_order=terms,
                    title_terms=set(),
                    token_count=len(terms),
                    embedding=vector,
                )
            ],
            None,
        )
        assert await store.source_sizes.rows(store.pool, scarb) == now + 1


async def test_exact_scans_started_together_run_as_one_statement(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    """Concurrent exact scans over the same sources share one statement, and each gets exactly what a scan of
    its own returns (its own limit); other sources go in their own statement; an error reaches every scan of
    the batch and the next batch works; a scan cancelled while waiting does not disturb the others."""
    async with await _ingested_store(db_url, tmp_path, local_embedder) as store:
        questions = [
            "How do I declare dependencies?",
            "storage variables",
            "append to an array",
            "build a package",
            "What is a felt?",
        ]
        vectors = await local_embedder.embed(questions)
        both, scarb = ["cairo_book", "scarb_docs"], ["scarb_docs"]

        async def alone(vector: list[float], limit: int, sources: list[str]) -> list[tuple[int, float]]:
            async with store.pool.acquire() as conn:
                return rank.hits(
                    await conn.fetch(rank.exact_sql(1), sources, limit, store.search_settings.window_weight, vector),
                    None,
                )

        wanted = [(v, 3 + i, both if i % 2 == 0 else scarb) for i, v in enumerate(vectors)]
        expected = [await alone(*w) for w in wanted]
        scans = store.exact_scans
        before = scans.statements
        got = await asyncio.gather(*(scans.scan(*w) for w in wanted))
        assert scans.statements - before == 2, "one statement per source filter"
        for (_, limit, sources), rows, truth in zip(wanted, got, expected, strict=True):
            ranked = rank.hits(rows, None)
            assert len(ranked) == len(truth) == min(limit, await store.source_sizes.rows(store.pool, sources))
            assert [i for i, _ in ranked] == [i for i, _ in truth]
            assert [s for _, s in ranked] == pytest.approx([s for _, s in truth])

        # An error (here: a vector of the wrong dimension in the batch) reaches every scan that shared it.
        broken = [scans.scan(vectors[0], 3, both), scans.scan([1.0, 0.0], 3, both)]
        outcomes = await asyncio.gather(*broken, return_exceptions=True)
        assert all(isinstance(o, asyncpg.PostgresError) for o in outcomes), outcomes
        # A scan cancelled while it waits: the rest of its batch is answered, and the next batch works.
        first = asyncio.ensure_future(scans.scan(vectors[0], 3, both))
        second = asyncio.ensure_future(scans.scan(vectors[1], 3, both))
        await asyncio.sleep(0)
        first.cancel()
        assert rank.hits(await second, None) == [(i, pytest.approx(s)) for i, s in await alone(vectors[1], 3, both)]
        assert first.cancelled()
        assert rank.hits(await scans.scan(vectors[2], 4, both), None) == [
            (i, pytest.approx(s)) for i, s in await alone(vectors[2], 4, both)
        ]
        assert not scans._pending and not scans._running
        # Through search(): the retriever's concurrent hybrid searches over a filter share one dense scan.
        before = scans.statements
        await asyncio.gather(
            *(store.search(q, k=3, sources=both, query_vector=v) for q, v in zip(questions, vectors, strict=True))
        )
        assert scans.statements - before == 1


async def test_embedder_mismatch_is_a_clear_error_and_reindex_fixes_it(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    store = await _ingested_store(db_url, tmp_path, local_embedder)
    await store.close()
    settings = make_settings(db_url)
    other = LocalEmbedder(EmbeddingSettings(max_tokens=256))  # a different embedder id
    with pytest.raises(EmbedderMismatchError) as info:
        await DocumentStore.open(settings.database, other, settings.search, for_writing=True)
    assert local_embedder.id in str(info.value) and "cairo-coder ingest --reindex" in str(info.value)
    with pytest.raises(EmbedderMismatchError):
        await DocumentStore.open(settings.database, other, settings.search)  # dense reader
    async with await DocumentStore.open(settings.database, NoEmbedder(), settings.search) as lexical_reader:
        assert (await lexical_reader.search("storage", k=1))[0].document.metadata.source == "cairo_book"
    async with await DocumentStore.open(settings.database, NoEmbedder(), settings.search) as lexical_writer:
        with pytest.raises(EmbedderMismatchError):
            await lexical_writer.bind_for_writing()
        await lexical_writer.reset()  # what `ingest --reindex` does
        assert (await lexical_writer.status())["embedder"] == {"id": "none", "dimensions": 0}


async def test_a_store_built_with_the_base_float32_model_keeps_it_and_a_reindex_moves_to_the_defaults(
    db_url: str, tmp_path: Path
) -> None:
    """int8, then the fine-tuned model, became the defaults: a store built with the base model's float32 vectors
    before that must keep working (its queries embedded as its chunks were), and only a new or re-indexed store
    gets the defaults."""
    settings = make_settings(db_url)
    old = LocalEmbedder(EmbeddingSettings(model=BASE_LOCAL_MODEL, precision="float32"))
    store = await _ingested_store(db_url, tmp_path, old)
    expected = [r.chunk_id for r in await store.search("storage variables", k=3, mode="dense")]
    await store.close()
    printed = await asyncio.to_thread(run_cli, "db", "status", env={"DATABASE_URL": db_url})
    assert printed.returncode == 0, printed.stderr
    assert (
        f"note: the store was built with {BASE_LOCAL_MODEL}: `cairo-coder ingest --reindex` moves it to"
        " cairo-minilm-l6-v1"
        in " ".join(printed.stdout.split())  # as an operator reads it, whatever the terminal's width
    )
    auto = LocalEmbedder(EmbeddingSettings())
    assert auto.id == "local:cairo-minilm-l6-v1:128:int8-per-channel" != old.id
    async with await DocumentStore.open(settings.database, auto, settings.search, for_writing=True) as store:
        assert (auto.model, auto.precision) == (BASE_LOCAL_MODEL, "float32")
        status = await store.status()
        assert status["embedder"]["id"] == old.id and "--reindex" in status["reindex_note"]
        assert [r.chunk_id for r in await store.search("storage variables", k=3, mode="dense")] == expected
        await store.reset()  # `ingest --reindex`
        status = await store.status()
        assert auto.id == "local:cairo-minilm-l6-v1:128:int8-per-channel" == status["embedder"]["id"]
        assert status["reindex_note"] is None
        await Ingester(settings, store).ingest_source(DocumentSource.CAIRO_BOOK, write_mini_corpus(tmp_path / "c2"))
        assert (await store.search("storage variables", k=1, mode="dense"))[0].document.metadata.source == "cairo_book"
    pinned = LocalEmbedder(EmbeddingSettings(precision="float32"))  # an explicit precision is never overridden
    with pytest.raises(EmbedderMismatchError):
        await DocumentStore.open(settings.database, pinned, settings.search)
    assert pinned.precision == "float32"
    named = LocalEmbedder(EmbeddingSettings(model=BASE_LOCAL_MODEL))  # nor is a model the configuration names
    with pytest.raises(EmbedderMismatchError):
        await DocumentStore.open(settings.database, named, settings.search)
    assert named.model == BASE_LOCAL_MODEL


async def test_database_down_and_missing_database_are_precise_errors(db_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    down = DatabaseSettings(url=f"postgresql://postgres@127.0.0.1:{port}/cairo", connect_timeout=2)
    with pytest.raises(DatabaseUnavailableError) as info:
        await DocumentStore.open(down, NoEmbedder())
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}/cairo" in str(info.value)
    assert "DATABASE_URL" in str(info.value)
    missing = DatabaseSettings(url=db_url.replace("/test_", "/nope_"), connect_timeout=2)
    with pytest.raises(DatabaseAuthError, match="does not exist"):
        await DocumentStore.open(missing, NoEmbedder())


async def test_transient_errors_are_retried_then_reported() -> None:
    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle")
        return "ok"

    assert await with_retries(flaky, base_delay=0.01) == "ok"
    assert calls["n"] == 3

    async def always_down() -> str:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")

    with pytest.raises(DatabaseUnavailableError, match=r"did not come back within 0\.2 s"):
        await with_retries(always_down, deadline=0.2, base_delay=0.01)


def _chunk(text: str, key: str, title: str, symbols: list[str] | None = None) -> ChunkRecord:
    """One chunk of ``text`` (hash and URL from ``key``), its terms counted as ingestion counts them."""
    terms = lexical.tokenize(text)
    return ChunkRecord(
        chunk_number=0,
        content=text,
        content_hash=key,
        title=title,
        section=[],
        url=f"https://example.org/{key}",
        terms=Counter(terms),
        terms_in_order=terms,
        title_terms=set(),
        token_count=len(terms),
        symbols=symbols or [],
    )


def _symbol_chunk(number: int, symbols: list[str]) -> ChunkRecord:
    return _chunk(f"Item number {number}.", str(number), f"item {number}", symbols)


async def test_symbol_lookup_ranks_a_unique_name_and_ignores_a_shared_one(db_url: str) -> None:
    settings = make_settings(db_url)
    async with await DocumentStore.open(settings.database, NoEmbedder(), settings.search, for_writing=True) as store:
        for number in range(9):  # nine items define `shared_helper`, one also defines `unique_helper`
            symbols = ["shared_helper", *(["unique_helper"] if number == 4 else [])]
            await store.write_page(
                "corelib_docs",
                f"core::m{number}",
                f"p{number}",
                f"item {number}",
                f"https://example.org/{number}",
                [_symbol_chunk(number, symbols)],
                None,
            )
        async with store.pool.acquire() as conn:
            unique = await rank.symbols(conn, "what is unique_helper?", None)
            assert len(unique) == 1
            assert await rank.symbols(conn, "what is shared_helper?", None) == []
        top = await store.search("what is unique_helper?", k=1, mode="lexical")
        assert top[0].document.metadata.path == "core::m4"


async def test_hybrid_search_ranks_a_guide_above_the_equal_api_reference_page(db_url: str) -> None:
    api, guide = "modules/ROOT/pages/api/erc20.adoc", "modules/ROOT/pages/erc20.adoc"
    for weight, first in (("0.8", guide), ("1.0", api)):
        settings = make_settings(db_url, CAIRO_CODER_SEARCH__REFERENCE_WEIGHT=weight)
        async with await DocumentStore.open(
            settings.database, NoEmbedder(), settings.search, for_writing=True
        ) as store:
            await store.reset()
            for path in (api, guide):  # same text; the reference page is written first (the lower id wins ties)
                chunk = _chunk("An ERC20 token contract keeps balances and allowances.", path, "ERC20")
                await store.write_page("openzeppelin_docs", path, path, "ERC20", chunk.url, [chunk], None)
            hybrid = await store.search("ERC20 token balances", k=2)
            assert [r.document.metadata.path for r in hybrid] == [first, api if first == guide else guide], weight
            lexical_only = await store.search("ERC20 token balances", k=2, mode="lexical")
            assert lexical_only[0].document.metadata.path == api, "the weight is a hybrid-ranking preference only"


async def test_a_pasted_query_is_ranked_by_its_question_and_error_not_by_the_pasted_names(db_url: str) -> None:
    """The paste's own rare names (a project's function and variable names) match some page by chance; the
    question's words and the error's must decide. Fails when bm25 ranks the whole text."""
    settings = make_settings(db_url)
    pages = {
        "storage.md": "Writing to a storage map: call write on the map entry with the key and the value.",
        "invoices.md": "An example contract: create_invoice records merchant_registry entries and invoice_nonce.",
    }
    async with await DocumentStore.open(settings.database, NoEmbedder(), settings.search, for_writing=True) as store:
        await store.reset()
        for path, text in pages.items():
            chunk = _chunk(text, path, path)
            await store.write_page("cairo_book", path, path, path, chunk.url, [chunk], None)
        code = "    fn create_invoice(ref self: ContractState) {\n        let n = self.invoice_nonce.read();\n"
        pasted = (
            f"how do I write a value to a storage map?\n{code * 2}        self.merchant_registry.write(n);\n    }}\n"
            "error: Method `write` could not be called on type `StorageMap`."
        )
        assert len(pasted) > lexical.PASTE_MIN_CHARS
        found = await store.search(pasted, k=2, mode="lexical")
        assert [r.document.metadata.path for r in found][:1] == ["storage.md"]
        short = await store.search("create_invoice invoice_nonce write", k=1, mode="lexical")
        assert short[0].document.metadata.path == "invoices.md", "a short query is ranked by all its words"


@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_local_embedder_makes_torch_threads_wait_passively_unless_told_otherwise(given: str | None) -> None:
    """OpenMP workers that spin after a forward pass take the CPUs the database needs next; a user's value wins."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (
        {"OMP_WAIT_POLICY": given} if given else {}
    )
    code = (
        "import os, sys; from cairo_coder.config import EmbeddingSettings; "
        "from cairo_coder.embeddings import LocalEmbedder; LocalEmbedder(EmbeddingSettings())._load(); "
        "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == [given or "PASSIVE", "True"], out.stderr[-2000:]
