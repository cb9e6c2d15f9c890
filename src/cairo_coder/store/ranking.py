"""Ranking one query against the store: lexical (BM25 with exact symbol matches), dense (HNSW or coalesced exact
scans), their fusion with the reference-page weight and page support, the API-item lift, then the rows.

DocumentStore.search drives it (with the retries and the query's cleaning); the SQL of each ranking is in
search.py and scans.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from cairo_coder.config import SearchSettings
from cairo_coder.store import search as rank
from cairo_coder.store.database import Conn
from cairo_coder.store.scans import ExactScans
from cairo_coder.types import Document, DocumentMetadata, SearchMode, SearchResult

SYMBOL_BONUS = 1.0


class Ranker:
    """The rankings of one store's pool under its search settings (shared by every request)."""

    def __init__(self, pool: asyncpg.Pool, search_settings: SearchSettings) -> None:
        self.pool = pool
        self.search_settings = search_settings
        self.source_sizes = rank.SourceSizes()
        self.exact_scans = ExactScans(pool, search_settings.window_weight)
        self.page_kinds = rank.PageKinds(dict(search_settings.reference_pages), search_settings.reference_weight)

    async def ranking(
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
            floor, margin = settings.api_item_similarity, settings.api_item_margin
            if api_hit is not None and rank.lifts_api_item(api_hit[1], best_chunk, floor, margin):
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

    async def fetch(
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
            results.append(to_result(row, score))
            if len(results) >= k:
                break
        return results


def done(value: list[float]) -> asyncio.Future[list[float]]:
    future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def to_result(row: asyncpg.Record, score: float) -> SearchResult:
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
