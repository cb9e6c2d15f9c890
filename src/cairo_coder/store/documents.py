"""DocumentStore: the PostgreSQL + pgvector knowledge base (writes, search, status)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from cairo_coder import lexical
from cairo_coder.config import DatabaseSettings, SearchSettings, mask_url
from cairo_coder.embeddings import Embedder
from cairo_coder.sanitize import clean_text
from cairo_coder.store import schema, writes
from cairo_coder.store import search as rank
from cairo_coder.store.database import (
    DEFAULT_RETRY_SECONDS,
    Conn,
    connect_with_retries,
    create_pool,
    with_retries,
)
from cairo_coder.store.embedded import EmbeddedPostgres
from cairo_coder.store.pages import Page, fetch_page
from cairo_coder.store.scans import ExactScans
from cairo_coder.store.writes import ChunkRecord
from cairo_coder.types import Document, DocumentMetadata, SearchMode, SearchResult

SYMBOL_BONUS = 1.0
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
        self.source_sizes = rank.SourceSizes()
        self.retry_seconds = DEFAULT_RETRY_SECONDS
        self.exact_scans = ExactScans(pool, search_settings.window_weight)
        self.page_kinds = rank.PageKinds(dict(search_settings.reference_pages), search_settings.reference_weight)

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
        return await with_retries(operation, deadline=deadline, what=what, pool=self.pool)

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
                asyncio.ensure_future(self.embedder.embed_query(query)) if query_vector is None else _done(query_vector)
            )
        wanted = max(k, self.search_settings.candidates) if mode == "hybrid" else k

        async def run() -> list[SearchResult]:
            # Each step takes its own pooled connection and never waits for a second one while holding one:
            # under load (every connection taken) nested acquires would deadlock the pool.
            scored, vector = await self._rank(query, vector_task, wanted, sources, mode)
            async with self.pool.acquire() as conn:
                reported = similarity_to if similarity_to is not None and can_dense else vector
                return await self._fetch(conn, scored, reported, k, min_similarity)

        try:
            return await self.retrying(run, "search")
        finally:
            if vector_task is not None and not vector_task.done():
                vector_task.cancel()

    async def _rank(
        self,
        query: str,
        vector_task: asyncio.Future[list[float]] | None,
        limit: int,
        sources: list[str] | None,
        mode: SearchMode,
    ) -> tuple[list[tuple[int, float]], list[float] | None]:
        """The ranked (document id, score) list, and the query vector if one was computed."""
        pages: rank.Pages = {}
        if mode == "dense":
            assert vector_task is not None
            query_vector, nearest = await self._dense(vector_task, limit, sources, pages)
            return nearest, query_vector
        dense_task: asyncio.Future[tuple[list[float], list[tuple[int, float]]]] | None = None
        api_task: asyncio.Future[tuple[int, float] | None] | None = None
        if mode == "hybrid" and vector_task is not None:
            # The dense ranking runs on a connection of its own while the lexical one ranks.
            dense_task = asyncio.ensure_future(self._dense(vector_task, limit, sources, pages))
            if self.search_settings.api_item_similarity < 1.0:
                api_task = asyncio.ensure_future(self._api_item(vector_task, sources, pages))
        try:
            symbol_hits, lexical_hits = await self._lexical(query, limit, sources, pages)
        except BaseException:
            for task in (dense_task, api_task):
                if task is not None:
                    task.cancel()
            raise
        vector: list[float] | None = None
        dense_hits: list[tuple[int, float]] = []
        if dense_task is not None:
            try:
                vector, dense_hits = await dense_task
            except BaseException:
                if api_task is not None:
                    api_task.cancel()
                raise
        elif vector_task is not None:
            vector = await vector_task
        # Hybrid: reciprocal-rank fusion (the lexical ranking alone without an embedder), the reference-page
        # weight, then page support. The rankings brought each chunk's page along: no lookup round trip.
        ranked = lexical_hits
        if dense_task is not None:
            ranked = rank.reciprocal_rank_fusion([(lexical_hits, 1.0), (dense_hits, 1.0)], self.search_settings.rrf_k)
        if mode == "hybrid":
            ranked = self.page_kinds.weigh(ranked, pages)
        if dense_task is not None:
            ranked = rank.page_support(ranked, pages)
        api_hit = await api_task if api_task is not None else None
        if not symbol_hits:
            # A question that describes what an API item does (without naming it) gets that item among the
            # first pages, next to the guides that rank above it (API reference weighs less in the fusion).
            # Lifted only when its description is about as close to the question as the best chunk is (a
            # question about a concept or a tool is nearer its guide than any API item: it is left alone).
            settings = self.search_settings
            best_chunk = dense_hits[0][1] if dense_hits else 0.0
            if api_hit is not None and api_hit[1] >= max(
                settings.api_item_similarity, best_chunk + settings.api_item_margin
            ):
                ranked = rank.lift_page(ranked, pages, api_hit[0], settings.api_item_position)
            return ranked, vector
        # Exact symbol matches come first: they are what a lookup of that name asks for.
        symbol_ids = {doc_id for doc_id, _ in symbol_hits}
        top = ranked[0][1] if ranked else 0.0
        firsts = [(doc_id, top + SYMBOL_BONUS * hits) for doc_id, hits in symbol_hits]
        return firsts + [item for item in ranked if item[0] not in symbol_ids], vector

    async def _lexical(
        self, query: str, limit: int, sources: list[str] | None, pages: rank.Pages
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(symbol hits, lexical ranking): one statement for the default BM25 ranker."""
        lexical_rank = rank.bm25 if self.search_settings.lexical_ranker == "bm25" else rank.full_text
        async with self.pool.acquire() as conn:
            ranked, symbol_hits = await lexical_rank(conn, query, limit, sources, pages)
        return symbol_hits, ranked

    async def _dense(
        self, vector_task: asyncio.Future[list[float]], limit: int, sources: list[str] | None, pages: rank.Pages
    ) -> tuple[list[float], list[tuple[int, float]]]:
        vector = await vector_task  # before taking a connection: none is held while the embedder works
        exact = sources is not None and await self.source_sizes.rows(self.pool, sources) <= rank.EXACT_SCAN_MAX_ROWS
        if exact:
            # Coalesced with the other exact scans started now (the retriever's other queries, other requests).
            return vector, rank.hits(await self.exact_scans.scan(vector, limit, sources), pages)
        async with self.pool.acquire() as conn:
            return vector, await rank.dense(conn, vector, limit, sources, self.search_settings.window_weight, pages)

    async def _api_item(
        self, vector_task: asyncio.Future[list[float]], sources: list[str] | None, pages: rank.Pages
    ) -> tuple[int, float] | None:
        vector = await vector_task
        async with self.pool.acquire() as conn:
            return await rank.api_item(conn, vector, sources, pages)

    async def _fetch(
        self,
        conn: Conn,
        scored: list[tuple[int, float]],
        vector: list[float] | None,
        k: int,
        min_similarity: float | None,
    ) -> list[SearchResult]:
        if not scored:
            return []
        # Without a similarity floor the first k are the answer; with one, any candidate may be needed.
        ids = [doc_id for doc_id, _ in (scored if min_similarity is not None else scored[:k])]
        # The chunk's dense score (see search.py): its head and its best further vector, weighed.
        best = "(SELECT max(-(v.embedding <#> $2)) FROM chunk_vectors v WHERE v.doc_id = d.id)"
        similarity = rank.dense_score_sql("$3", "-(d.embedding <#> $2)", best) if vector is not None else "NULL::float8"
        params: list[Any] = [ids] + ([vector, self.search_settings.window_weight] if vector is not None else [])
        rows = await conn.fetch(
            f"""SELECT d.id, d.chunk_id, d.source, d.path, d.title, d.section, d.url, d.chunk_number, d.content,
                       d.content_hash, d.metadata, d.source_commit, d.indexed_at, d.prompt_tokens,
                       {similarity} AS similarity
                FROM documents d WHERE d.id = ANY($1::bigint[])""",
            *params,
        )
        by_id = {r["id"]: r for r in rows}
        results: list[SearchResult] = []
        for doc_id, score in scored:
            row = by_id.get(doc_id)
            if row is None:
                continue  # deleted between ranking and fetching
            sim = row["similarity"]
            if min_similarity is not None and sim is not None and sim < min_similarity:
                continue
            results.append(_to_result(row, score))
            if len(results) >= k:
                break
        return results

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


def _done(value: list[float]) -> asyncio.Future[list[float]]:
    future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def _to_result(row: asyncpg.Record, score: float) -> SearchResult:
    metadata = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else dict(row["metadata"] or {})
    if row["similarity"] is not None:
        metadata["similarity"] = float(row["similarity"])
    meta = DocumentMetadata(
        source=row["source"],
        path=row["path"],
        title=row["title"],
        section=list(row["section"]),
        url=row["url"],
        chunk_number=row["chunk_number"],
        content_hash=row["content_hash"],
        source_commit=row["source_commit"],
        indexed_at=row["indexed_at"],
        prompt_tokens=row["prompt_tokens"],
        **metadata,
    )
    return SearchResult(document=Document(content=row["content"], metadata=meta), score=score, chunk_id=row["chunk_id"])


def _as_list(vector: Any) -> list[float]:
    """pgvector's codec returns a Vector (or a numpy array, by version); we pass plain lists around."""
    if hasattr(vector, "to_list"):
        return [float(x) for x in vector.to_list()]
    return [float(x) for x in vector]
