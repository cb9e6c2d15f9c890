"""DocumentStore: the PostgreSQL + pgvector knowledge base (writes, search, status)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from cairo_coder import lexical, metrics, observe, tracing
from cairo_coder.config import DatabaseSettings, SearchSettings, mask_url
from cairo_coder.embeddings import Embedder
from cairo_coder.sanitize import clean_text
from cairo_coder.store import schema, writes
from cairo_coder.store.database import (
    DEFAULT_RETRY_SECONDS,
    connect_with_retries,
    create_pool,
    with_retries,
)
from cairo_coder.store.embedded import EmbeddedPostgres
from cairo_coder.store.pages import Page, fetch_page
from cairo_coder.store.ranking import Ranker, done
from cairo_coder.store.writes import ChunkRecord
from cairo_coder.types import SearchMode, SearchResult

T = TypeVar("T")


class DocumentStore:
    """Owns the connection pool. Create with :meth:`open`; always :meth:`close` (or use ``async with``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder,
        search_settings: SearchSettings,
        *,
        url: str,
        schema_version: int,
        embedded: EmbeddedPostgres | None = None,
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.search_settings = search_settings
        self.url = url
        self.schema_version = schema_version
        self._embedded = embedded
        # Whether the store has vectors to search (False while nothing has been indexed yet).
        self.dense_ready = False
        self.retry_seconds = DEFAULT_RETRY_SECONDS
        self.ranker = Ranker(pool, search_settings)
        self.source_sizes = self.ranker.source_sizes  # writes drop its cache
        self.exact_scans = self.ranker.exact_scans

    @classmethod
    async def open(
        cls,
        database: DatabaseSettings,
        embedder: Embedder,
        search_settings: SearchSettings | None = None,
        *,
        for_writing: bool = False,
    ) -> DocumentStore:
        embedded = None
        url = database.url
        if not url:
            embedded = EmbeddedPostgres(database.resolved_data_dir())
            url = embedded.start()
        try:
            conn = await connect_with_retries(url, database.connect_timeout)
            try:
                version = await schema.migrate(conn)
                found = await schema.bound_embedder(conn)
                _adopt(embedder, found[0] if found else None)
                await schema.bind_embedder(conn, embedder.id, embedder.dimensions, for_writing=for_writing)
                bound = await schema.bound_embedder(conn)
            finally:
                await conn.close()
            pool = await create_pool(url, database.pool_min_size, database.pool_max_size, database.connect_timeout)
        except BaseException:
            if embedded is not None:
                embedded.stop()
            raise
        store = cls(
            pool, embedder, search_settings or SearchSettings(), url=url, schema_version=version, embedded=embedded
        )
        store.dense_ready = bool(bound and bound[1] and embedder.dimensions)
        store.retry_seconds = database.retry_seconds
        return store

    @asynccontextmanager
    async def ingestion_lock(self, on_wait: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Hold the database-wide ingestion lock (a PostgreSQL session advisory lock on a connection of its own,
        released when the block ends or the process dies): ingestions from several processes or machines on one
        database run one after the other, and replicas started together ingest an empty store once.
        ``on_wait`` is called when another process holds it."""
        conn = await connect_with_retries(self.url, 10.0)
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", schema.INGEST_LOCK):
                if on_wait is not None:
                    on_wait()
                await conn.execute("SELECT pg_advisory_lock($1)", schema.INGEST_LOCK)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", schema.INGEST_LOCK)
        finally:
            await conn.close()

    async def close(self) -> None:
        await self.pool.close()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    async def __aenter__(self) -> DocumentStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def retrying(self, operation: Callable[[], Awaitable[T]], what: str, deadline: float | None = None) -> T:
        """``operation`` (which takes its own pooled connections) retried through a lost or restarting database
        for up to ``deadline`` (default ``database.retry_seconds``); then :class:`DatabaseUnavailableError`."""
        deadline = self.retry_seconds if deadline is None else deadline
        left = observe.remaining()  # never retry past the request's own deadline
        if left is not None:
            deadline = max(min(deadline, left), 0.0)
        with tracing.span(f"db {what}", {"db.system.name": "postgresql", "db.operation.name": what}) as span:
            result = await with_retries(operation, deadline=deadline, what=what, pool=self.pool)
            if span is not None and isinstance(result, list):
                tracing.set_attributes(span, {"db.response.returned_rows": len(result)})
            return result

    def pool_stats(self) -> tuple[int, int]:
        """(connections open, connections in use) of the pool, for the metrics."""
        size = self.pool.get_size()
        return size, size - self.pool.get_idle_size()

    async def count_documents(self, deadline: float | None = None) -> int:
        return int(
            await self.retrying(
                lambda: self.pool.fetchval("SELECT count(*) FROM documents"), "count of documents", deadline
            )
            or 0
        )

    async def page(self, url: str) -> Page | None:
        """The whole page whose URL is ``url`` (see :func:`pages.fetch_page`), or None."""
        return await self.retrying(lambda: fetch_page(self.pool, url), "page lookup")

    async def bind_for_writing(self) -> None:
        async with self.pool.acquire() as conn:
            await schema.bind_embedder(conn, self.embedder.id, self.embedder.dimensions, for_writing=True)
        # The embedding column may have just been added: new connections see the new table shape.
        await self.pool.expire_connections()
        self.dense_ready = bool(self.embedder.dimensions)

    async def reset(self) -> None:
        """Delete every document and the embedder binding, then bind the current embedder."""
        async with self.pool.acquire() as conn:
            await schema.reset_embedder(conn)
        await self.pool.expire_connections()
        self.source_sizes.invalidate()
        _adopt(self.embedder, None)  # a re-index is a new store: "auto" precision takes the default again
        await self.bind_for_writing()

    # ------------------------------------------------------------------------------------------ pages / writes

    async def page_hashes(self, source: str) -> dict[str, str]:
        rows = await self.pool.fetch("SELECT path, page_hash FROM pages WHERE source = $1", source)
        return {r["path"]: r["page_hash"] for r in rows}

    async def chunk_embeddings(
        self, source: str, paths: list[str]
    ) -> dict[str, tuple[list[float], list[tuple[str, list[float]]]]]:
        """Existing vectors of these pages' chunks by content hash: the head vector and the further ones (kind,
        vector) in order. One query for a batch of pages, so that unchanged chunks are not re-embedded. Equal
        hashes mean equal embedded text, hence equal vectors."""
        if not self.embedder.dimensions or not paths:
            return {}
        async with self.pool.acquire() as conn:
            heads = await conn.fetch(
                """SELECT id, content_hash, embedding FROM documents
                   WHERE source = $1 AND path = ANY($2::text[]) AND embedding IS NOT NULL""",
                source,
                paths,
            )
            further = await conn.fetch(
                """SELECT v.doc_id, v.kind, v.embedding FROM chunk_vectors v JOIN documents d ON d.id = v.doc_id
                   WHERE d.source = $1 AND d.path = ANY($2::text[]) ORDER BY v.doc_id, v.ordinal""",
                source,
                paths,
            )
        extras: dict[int, list[tuple[str, list[float]]]] = {}
        for r in further:
            extras.setdefault(r["doc_id"], []).append((r["kind"], _as_list(r["embedding"])))
        return {r["content_hash"]: (_as_list(r["embedding"]), extras.get(r["id"], [])) for r in heads}

    async def write_page(
        self,
        source: str,
        path: str,
        page_hash: str,
        title: str,
        url: str,
        chunks: list[ChunkRecord],
        source_commit: str | None,
    ) -> None:
        """Replace a page's chunks atomically; the page row is written last, so an interrupted run resumes."""

        async def run() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                await writes.delete_page_chunks(conn, source, [path])
                await writes.insert_chunks(conn, source, path, chunks, source_commit, bool(self.embedder.dimensions))
                await conn.execute(
                    """INSERT INTO pages (source, path, page_hash, title, url, chunk_count, source_commit, indexed_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                       ON CONFLICT (source, path) DO UPDATE SET page_hash = EXCLUDED.page_hash,
                         title = EXCLUDED.title, url = EXCLUDED.url, chunk_count = EXCLUDED.chunk_count,
                         source_commit = EXCLUDED.source_commit, indexed_at = now()""",
                    source,
                    path,
                    page_hash,
                    title,
                    url,
                    len(chunks),
                    source_commit,
                )
            # After the commit: a search during the transaction would re-cache the counts it is changing.
            self.source_sizes.invalidate()

        await self.retrying(run, f"write of {source}/{path}")

    async def delete_pages(self, source: str, paths: list[str]) -> int:
        if not paths:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            deleted = await writes.delete_page_chunks(conn, source, paths)
            await conn.execute("DELETE FROM pages WHERE source = $1 AND path = ANY($2::text[])", source, paths)
        self.source_sizes.invalidate()  # after the commit, as in write_page
        return deleted

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) the tables a search reads; the ingester calls it after a source changed.

        Why: the BM25 postings are read by index-only scans, which skip the table only for pages the visibility
        map marks all-visible, and the planner needs statistics that cover the new rows. Autovacuum gets there
        eventually, but not at once, and an embedded server stopped uncleanly forgets what it had counted.
        Measured on the shared corpus: the BM25 statement's p50 went from 4.2 to 2.8 ms. Takes ~0.4 s there.
        """
        for table in writes.SEARCHED_TABLES:
            await self.pool.execute(f"VACUUM (ANALYZE) {table}")

    # ------------------------------------------------------------------------------------------ search

    async def search(
        self,
        query: str,
        k: int = 5,
        sources: list[str] | None = None,
        mode: SearchMode = "hybrid",
        min_similarity: float | None = None,
        query_vector: list[float] | None = None,
        similarity_to: list[float] | None = None,
    ) -> list[SearchResult]:
        """Top ``k`` chunks for ``query``. Scores: cosine similarity (dense), BM25 (lexical), RRF (hybrid).

        Each result's ``metadata.similarity`` is its cosine similarity to the query, or to ``similarity_to``
        when given (the retriever compares every search query's results with the user's question, and reading
        it here saves a round trip). ``min_similarity`` drops chunks whose similarity is below it (needs
        embeddings). ``query_vector``: the query's embedding when the caller already has it (e.g. embedded in
        a batch); unit length, as every Embedder returns it.
        """
        query = clean_text(query.replace("\x00", " "))  # NUL, lone surrogates: PostgreSQL cannot hold them
        if not query.strip():
            return []
        query = lexical.with_decoded_messages(query)  # pasted error output: its hex-encoded messages, readable
        sources = list(sources) if sources else None
        can_dense = self.dense_ready
        if mode == "dense" and not can_dense:
            if self.embedder.dimensions:
                return []  # nothing indexed yet
            from cairo_coder.embeddings import EmbeddingConfigError

            raise EmbeddingConfigError("dense search needs an embedder: set embeddings.provider to 'local' or 'remote'")
        needs_vector = can_dense and (mode != "lexical" or min_similarity is not None)
        vector_task: asyncio.Future[list[float]] | None = None
        if needs_vector:
            # Embed in a worker thread while the database runs the lexical ranking.
            vector_task = (
                asyncio.ensure_future(self.embedder.embed_query(query)) if query_vector is None else done(query_vector)
            )
        wanted = max(k, self.search_settings.candidates) if mode == "hybrid" else k

        async def run() -> list[SearchResult]:
            # Each step takes its own pooled connection and never waits for a second one while holding one:
            # under load (every connection taken) nested acquires would deadlock the pool.
            scored, vector = await self.ranker.ranking(query, vector_task, wanted, sources, mode)
            async with self.pool.acquire() as conn:
                reported = similarity_to if similarity_to is not None and can_dense else vector
                return await self.ranker.fetch(conn, scored, reported, k, min_similarity)

        started = time.perf_counter()
        try:
            return await self.retrying(run, "search")
        finally:
            metrics.SEARCH_DURATION.labels(mode).observe(time.perf_counter() - started)
            if vector_task is not None and not vector_task.done():
                vector_task.cancel()

    # ------------------------------------------------------------------------------------------ status

    async def status(self) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            version = await conn.fetchval("SHOW server_version")
            schema_version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
            per_source = await conn.fetch(
                """SELECT d.source, count(*) AS chunks, count(DISTINCT d.path) AS pages,
                          max(d.source_commit) AS commit, max(d.indexed_at) AS indexed_at
                   FROM documents d GROUP BY d.source ORDER BY d.source"""
            )
            bound = await schema.bound_embedder(conn)
        return {
            "server": f"PostgreSQL {version}",
            "database": "embedded (pgserver)" if self._embedded else "external",
            "location": str(self._embedded.data_dir) if self._embedded else mask_url(self.url),
            "schema_version": schema_version,
            "embedder": {"id": bound[0], "dimensions": bound[1]} if bound else None,
            "configured_embedder": {"id": self.embedder.id, "dimensions": self.embedder.dimensions},
            "reindex_note": getattr(self.embedder, "reindex_note", None),
            "sources": {
                r["source"]: {
                    "pages": r["pages"],
                    "chunks": r["chunks"],
                    "commit": r["commit"],
                    "indexed_at": r["indexed_at"].isoformat() if r["indexed_at"] else None,
                }
                for r in per_source
            },
        }


def _as_list(vector: Any) -> list[float]:
    """pgvector's codec returns a Vector (or a numpy array, by version); we pass plain lists around."""
    if hasattr(vector, "to_list"):
        return [float(x) for x in vector.to_list()]
    return [float(x) for x in vector]


def _adopt(embedder: Embedder, store_embedder: str | None) -> None:
    """Let an embedder with a choice (LocalEmbedder's "auto" precision) take the one the store was built with,
    before the store checks the binding; ``None``: a new or emptied store."""
    adopt = getattr(embedder, "adopt", None)
    if adopt is not None:
        adopt(store_embedder)
