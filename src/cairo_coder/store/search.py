"""Ranking queries: dense (pgvector cosine), lexical (BM25 over our inverted index, or PostgreSQL full-text,
each with the symbol lookup), reciprocal-rank fusion, the reference-page weight and page support. Rankings are
lists of (document id, score) pairs, best first.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from cairo_coder import lexical
from cairo_coder.store.database import HNSW_EF_SEARCH, Conn

Id = TypeVar("Id", int, str)
Pages = dict[int, tuple[str, str]]  # document id -> (source, path): the page a ranked chunk belongs to

# BM25 parameters. Impacts are precomputed at write time with a fixed pivot length (the typical chunk length)
# instead of the live average, so that adding documents never rewrites existing postings.
BM25_K1 = 1.2
BM25_B = 0.75
BM25_PIVOT = 220.0
MAX_QUERY_TERMS = 24
POSTINGS_PER_TERM = 2000
# Below this many candidate rows an exact scan beats HNSW with a post-filter (which may also return too few).
EXACT_SCAN_MAX_ROWS = 20_000
AMBIGUOUS_SYMBOL_MATCHES = 8
SYMBOL_HITS = 5  # symbol matches ranked first at most
SYMBOL_QUERY_MAX_TERMS = 12


def bm25_impact(tf: float, length: int) -> float:
    return tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / BM25_PIVOT))


def tsvector_literal(terms_in_order: Sequence[str], title_terms: set[str]) -> str:
    """A tsvector in PostgreSQL's text form, with positions, title terms weighted A (for ts_rank_cd)."""
    positions: dict[str, list[int]] = {}
    for index, term in enumerate(terms_in_order[:16383], start=1):
        slots = positions.setdefault(term, [])
        if len(slots) < 256:
            slots.append(index)
    parts = []
    for term, slots in positions.items():
        weight = "A" if term in title_terms else ""
        quoted = term.replace("\\", "\\\\").replace("'", "''")
        parts.append(f"'{quoted}':" + ",".join(f"{p}{weight}" for p in slots))
    for term in title_terms - positions.keys():
        quoted = term.replace("\\", "\\\\").replace("'", "''")
        parts.append(f"'{quoted}':1A")
    return " ".join(parts)


# Dense scores. A chunk has a head vector (documents.embedding: its heading trail and first word pieces) and may
# have further ones (chunk_vectors: windows over the rest of its text, descriptions of the API items it documents).
# Its score is  w x (its best vector's cosine) + (1 - w) x (its head's cosine),  w = search.window_weight: the
# best window finds a passage deep in a long chunk, the head keeps what the chunk is about in the score. Chosen on
# the train set (hybrid, whole shared corpus): w = 0 (the head alone, as before) recall@5 0.697 / MRR@10 0.518;
# w = 0.3 0.719 / 0.531; 0.5 0.719 / 0.529; 0.7 0.730 / 0.530; 1.0 0.708 / 0.514. Dev at 0.7: 0.886 / 0.669.
#
# HNSW: the nearest heads and the nearest further vectors (each approximate); a chunk's best vector is the nearest
# of its vectors that either index scan found (its head is always scored). Scoring every candidate's further
# vectors exactly instead cost ~1 ms more per search and changed no eval figure.
def dense_score_sql(weight: str, head: str, best: str) -> str:
    """The SQL expression of a chunk's dense score from its head's cosine and its best further vector's (NULL
    when it has none): the one formula that the HNSW and exact rankings and the reported similarity share."""
    return f"{weight} * greatest({head}, coalesce({best}, {head})) + (1 - {weight}) * {head}"


HNSW_SQL = f"""
    WITH heads AS (SELECT id, embedding <#> $1 AS d FROM documents
                   WHERE embedding IS NOT NULL AND ($2::text[] IS NULL OR source = ANY($2))
                   ORDER BY embedding <=> $1 LIMIT $3),
         parts AS (SELECT doc_id AS id, embedding <#> $1 AS d FROM chunk_vectors
                   WHERE ($2::text[] IS NULL OR source = ANY($2))
                   ORDER BY embedding <=> $1 LIMIT $3),
         cand AS (SELECT id, min(d) AS d FROM (SELECT * FROM heads UNION ALL SELECT * FROM parts) u GROUP BY id)
    SELECT c.id, doc.source, doc.path, {dense_score_sql("$4", "-(doc.embedding <#> $1)", "-c.d")} AS score
    FROM cand c JOIN documents doc ON doc.id = c.id
    ORDER BY score DESC, c.id LIMIT $3"""


def exact_sql(count: int) -> str:
    """The exact dense scan of ``count`` query vectors in one statement: each filtered row's vectors are read
    once and every query vector's inner product computed (stored and query vectors are unit length, so the
    inner product orders as cosine does, with a third of the arithmetic), then the top rows of each.

    Parameters: $1 sources (text[] or NULL), $2 limit, $3 window weight, $4.. the query vectors. Rows carry
    ``q``, the index of the vector they answer. Ties break on id.
    """
    vectors = [f"${i + 4}" for i in range(count)]
    heads = ", ".join(f"-(embedding <#> {v}) AS h{i}" for i, v in enumerate(vectors))
    parts = ", ".join(f"max(-(embedding <#> {v})) AS w{i}" for i, v in enumerate(vectors))
    scores = ", ".join(f"{dense_score_sql('$3', f'h.h{i}', f'p.w{i}')} AS s{i}" for i in range(count))
    tops = " UNION ALL ".join(
        f"(SELECT {i} AS q, id, source, path, s{i} AS score FROM scan ORDER BY s{i} DESC, id LIMIT $2)"
        for i in range(count)
    )
    return f"""WITH heads AS MATERIALIZED (SELECT id, source, path, {heads} FROM documents
                                           WHERE embedding IS NOT NULL AND ($1::text[] IS NULL OR source = ANY($1))),
                parts AS MATERIALIZED (SELECT doc_id, {parts} FROM chunk_vectors
                                       WHERE $1::text[] IS NULL OR source = ANY($1) GROUP BY doc_id),
                scan AS MATERIALIZED (SELECT h.id, h.source, h.path, {scores}
                                      FROM heads h LEFT JOIN parts p ON p.doc_id = h.id)
            {tops}"""


# The API item whose description (a "summary" vector) is nearest the query, among the sources.
API_ITEM_SQL = """SELECT v.doc_id AS id, d.source, d.path, v.score FROM (
                      SELECT doc_id, -(embedding <#> $1) AS score FROM chunk_vectors
                      WHERE kind = 'summary' AND ($2::text[] IS NULL OR source = ANY($2))
                      ORDER BY embedding <#> $1, doc_id LIMIT 1) v
                  JOIN documents d ON d.id = v.doc_id"""


async def dense(
    conn: Conn,
    vector: Sequence[float],
    limit: int,
    sources: list[str] | None,
    window_weight: float,
    pages: Pages | None = None,
) -> list[tuple[int, float]]:
    """Dense ranking over the HNSW indexes, falling back to an exact scan when a source filter left the
    indexes' answer short. (Filters that leave few rows go straight to an exact scan: store/scans.py.)"""
    if limit * 2 <= HNSW_EF_SEARCH:
        # The connection's own ef_search (set when it was opened) is wide enough: one round trip.
        rows = await conn.fetch(HNSW_SQL, vector, sources, limit, window_weight)
    else:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {min(1000, limit * 2)}")
            rows = await conn.fetch(HNSW_SQL, vector, sources, limit, window_weight)
    if sources is not None and len(rows) < limit:
        rows = await conn.fetch(exact_sql(1), sources, limit, window_weight, vector)
    return hits(rows, pages)


async def api_item(
    conn: Conn, vector: Sequence[float], sources: list[str] | None, pages: Pages | None = None
) -> tuple[int, float] | None:
    """The chunk whose API item description is nearest ``vector`` (id, cosine), if any source has them."""
    rows = await conn.fetch(API_ITEM_SQL, vector, sources)
    found = hits(rows, pages)
    return found[0] if found else None


def lifts_api_item(similarity: float, best_chunk: float, floor: float, margin: float) -> bool:
    """Whether the API item described nearest the question (at cosine ``similarity``) is lifted: it must reach
    ``floor`` and come within ``margin`` of the best chunk's dense score (a question about a concept or a tool is
    nearer its guide than any item description)."""
    return similarity >= max(floor, best_chunk + margin)


def lift_page(
    ranked: Sequence[tuple[int, float]], page_of: Pages, doc_id: int, position: int
) -> list[tuple[int, float]]:
    """``ranked`` with ``doc_id``'s chunk moved or inserted so that its page is the ``position``-th distinct page
    (1-based), unless its page is already ranked there or higher. Its score becomes the one of the chunk it now
    precedes, so that scores stay in order."""
    page = page_of.get(doc_id)
    seen: list[tuple[str, str] | None] = []
    for other, _ in ranked:
        other_page = page_of.get(other)
        if other_page not in seen:
            seen.append(other_page)
            if len(seen) == position:
                if page in seen:
                    return list(ranked)
                rest = [item for item in ranked if item[0] != doc_id]
                at = next(i for i, item in enumerate(rest) if item[0] == other)
                return [*rest[:at], (doc_id, rest[at][1]), *rest[at:]]
        if other_page == page and len(seen) <= position:
            return list(ranked)  # already among the first ``position`` pages
    if any(item[0] == doc_id for item in ranked):
        return list(ranked)
    return [*ranked, (doc_id, ranked[-1][1] if ranked else 0.0)]


class SourceSizes:
    """Rows with an embedding per source, for choosing exact or HNSW search without a count per query.

    Cached for ``ttl`` seconds and dropped when this process writes. A stale figure can only pick the slower
    plan, never change results: a short HNSW answer falls back to the exact scan.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._sizes: dict[str, int] | None = None
        self._at = 0.0

    def invalidate(self) -> None:
        self._sizes = None

    async def rows(self, pool: asyncpg.Pool, sources: Sequence[str]) -> int:
        if self._sizes is None or time.monotonic() - self._at > self.ttl:
            found = await pool.fetch(
                "SELECT source, count(*) AS n FROM documents WHERE embedding IS NOT NULL GROUP BY source"
            )
            self._sizes, self._at = {r["source"]: int(r["n"]) for r in found}, time.monotonic()
        return sum(self._sizes.get(source, 0) for source in sources)


def hits(rows: Sequence[Any], pages: Pages | None) -> list[tuple[int, float]]:
    """(id, score) pairs of ranking rows; their pages go into ``pages`` when the caller wants them."""
    if pages is not None:
        pages.update((r["id"], (r["source"], r["path"])) for r in rows)
    return [(r["id"], float(r["score"])) for r in rows]


# CTE "q": the query's indexed terms ($1) with their BM25 idf, most informative first (at most $2 of them).
_WEIGHTED_TERMS = """
    n AS (SELECT coalesce((SELECT df FROM lexical_terms WHERE term = ''), 0)::float8 AS n),
    q AS (SELECT t.term, ln(1 + (n.n - t.df + 0.5) / (t.df + 0.5)) AS idf
          FROM lexical_terms t, n WHERE t.term = ANY($1::text[]) AND t.term <> ''
          ORDER BY idf DESC, t.term LIMIT $2)"""


def ranked_terms(query: str, all_terms: list[str] | None = None) -> list[str]:
    """The terms lexical ranking uses: a long pasted query's prose and error lines (lexical.salient_text), any
    other query whole (``all_terms``, its terms when the caller has them already: tokenized once)."""
    salient = lexical.salient_text(query)
    if salient is query:
        return all_terms if all_terms is not None else lexical.query_terms(query)
    return lexical.query_terms(salient)


async def weighted_terms(conn: Conn, query: str) -> list[tuple[str, float]]:
    """The query's indexed terms with their BM25 idf, most informative first (at most MAX_QUERY_TERMS)."""
    terms = ranked_terms(query)
    if not terms:
        return []
    rows = await conn.fetch(f"WITH {_WEIGHTED_TERMS} SELECT term, idf FROM q ORDER BY idf DESC", terms, MAX_QUERY_TERMS)
    return [(r["term"], float(r["idf"])) for r in rows]


# CTE "sym": chunks that define one of the identifiers {names} (most names first), within the sources {sources}.
_SYMBOLS = f"""sym AS (
    SELECT id, source, path, cardinality(ARRAY(SELECT unnest(symbols) INTERSECT SELECT unnest({{names}}::text[])))
           AS hits, chunk_number
    FROM documents WHERE cardinality({{names}}::text[]) > 0 AND symbols && {{names}}::text[]
      AND ({{sources}}::text[] IS NULL OR source = ANY({{sources}}::text[]))
    ORDER BY hits DESC, chunk_number, id LIMIT {AMBIGUOUS_SYMBOL_MATCHES + 1})"""


def symbol_names(query: str, terms: Sequence[str]) -> list[str]:
    """The identifiers a query looks up: only in a short question ("what does felt252_div do?"). In a long one
    (pasted code, error output) identifiers are context, and ranking them first would bury the real answer."""
    return lexical.identifiers(query) if len(terms) <= SYMBOL_QUERY_MAX_TERMS else []


def _symbol_hits(rows: Sequence[Any]) -> list[tuple[int, float]]:
    # A name that many chunks define is not a lookup of one item: rank nothing first rather than guess.
    if len(rows) > AMBIGUOUS_SYMBOL_MATCHES:
        return []
    return [(r["id"], float(r["score"])) for r in rows[:SYMBOL_HITS]]


async def symbols(conn: Conn, query: str, sources: list[str] | None) -> list[tuple[int, float]]:
    """Documents that define an identifier named in the query (``ArrayTrait``, ``core::array::ArrayTrait``)."""
    names = symbol_names(query, lexical.query_terms(query))
    if not names:
        return []
    rows = await conn.fetch(
        f"WITH {_SYMBOLS.format(names='$1', sources='$2')} SELECT id, hits AS score FROM sym", names, sources
    )
    return _symbol_hits(rows)


async def bm25(
    conn: Conn, query: str, limit: int, sources: list[str] | None, pages: Pages | None = None
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """BM25 over the inverted index and the symbol lookup, in one statement: term weights, postings, sums, the
    rows' pages, and the chunks that define an identifier the query names. Returns (ranking, symbol hits).
    A long pasted query is ranked by its prose and error lines (lexical.salient_text)."""
    all_terms = lexical.query_terms(query)
    terms = ranked_terms(query, all_terms)
    if not terms:
        return [], []
    # Two statements rather than one with "$3 IS NULL OR ...", so that each gets the plan of its index.
    source_filter = "AND lp.source = ANY($3::text[])" if sources is not None else "AND $3::text[] IS NULL"
    rows = await conn.fetch(
        f"""WITH {_WEIGHTED_TERMS},
            ranked AS (
                SELECT p.doc_id AS id, sum(q.idf * p.impact) AS score
                FROM q CROSS JOIN LATERAL (
                    SELECT doc_id, impact FROM lexical_postings lp
                    WHERE lp.term = q.term {source_filter}
                    ORDER BY impact DESC, doc_id LIMIT $5) p
                GROUP BY p.doc_id ORDER BY score DESC, p.doc_id LIMIT $4),
            {_SYMBOLS.format(names="$6", sources="$3")}
            SELECT false AS symbol, r.id, r.score, 0 AS tie, d.source, d.path
            FROM ranked r JOIN documents d ON d.id = r.id
            UNION ALL SELECT true, id, hits, chunk_number, source, path FROM sym
            ORDER BY symbol, score DESC, tie, id""",
        terms,
        MAX_QUERY_TERMS,
        sources,
        limit,
        POSTINGS_PER_TERM,
        symbol_names(query, all_terms),
    )
    ranked = hits([r for r in rows if not r["symbol"]], pages)
    return ranked, _symbol_hits([r for r in rows if r["symbol"]])


async def full_text(
    conn: Conn, query: str, limit: int, sources: list[str] | None, pages: Pages | None = None
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """PostgreSQL full-text ranking (ts_rank_cd over the GIN-indexed tsvector), OR of the informative terms,
    and the symbol lookup. Returns (ranking, symbol hits), as :func:`bm25` does."""
    symbol_hits = await symbols(conn, query, sources)
    weighted = await weighted_terms(conn, query)
    if not weighted:
        return [], symbol_hits
    tsquery = " | ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t, _ in weighted)
    rows = await conn.fetch(
        """SELECT id, source, path, ts_rank_cd(lexemes, q, 1) AS score
           FROM documents, CAST($1 AS tsquery) AS q
           WHERE lexemes @@ q AND ($2::text[] IS NULL OR source = ANY($2))
           ORDER BY score DESC, id LIMIT $3""",
        tsquery,
        sources,
        limit,
    )
    return hits(rows, pages), symbol_hits


def reciprocal_rank_fusion(
    rankings: Sequence[tuple[Sequence[tuple[Id, float]], float]], rrf_k: int
) -> list[tuple[Id, float]]:
    """Fuse ranked lists: score(d) = sum over lists of weight / (rrf_k + rank). Ties broken by id."""
    fused: dict[Id, float] = {}
    for ranking, weight in rankings:
        for rank, (doc_id, _) in enumerate(ranking, start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


class PageKinds:
    """Which pages are API reference (per source, by fnmatch globs over page paths), and their hybrid weight.

    A question is more often answered by a guide than by the reference entry of an API it uses; the reference
    also repeats identifiers that lexical ranking rewards. Measured on the dev set (local embedder): MRR@10
    0.626 -> 0.639 / 0.657 / 0.660 / 0.677 at weights 0.95 / 0.9 / 0.8 / 0.7, recall@5 unchanged at 0.886.
    """

    MAX_MEMO = 100_000

    def __init__(self, patterns: Mapping[str, Sequence[str]], weight: float) -> None:
        self.patterns = {source: list(globs) for source, globs in patterns.items()}
        self.weight = weight
        self._memo: dict[tuple[str, str], bool] = {}

    def is_reference(self, page: tuple[str, str]) -> bool:
        known = self._memo.get(page)
        if known is None:
            source, path = page
            known = any(fnmatch.fnmatchcase(path, glob) for glob in self.patterns.get(source, ()))
            if len(self._memo) >= self.MAX_MEMO:
                self._memo.clear()
            self._memo[page] = known
        return known

    def weigh(self, scored: Sequence[tuple[int, float]], page_of: Pages) -> list[tuple[int, float]]:
        """Scores with reference pages' multiplied by the weight, best first (ties by id)."""
        if self.weight == 1.0 or not self.patterns:
            return list(scored)
        weighed = [
            (doc_id, score * self.weight if doc_id in page_of and self.is_reference(page_of[doc_id]) else score)
            for doc_id, score in scored
        ]
        return sorted(weighed, key=lambda item: (-item[1], item[0]))


def page_support(
    scored: Sequence[tuple[int, float]], page_of: dict[int, tuple[str, str]], top: int = 2, decay: float = 0.3
) -> list[tuple[int, float]]:
    """Add to each chunk's score ``decay`` x the scores of its page's best ``top`` other candidate chunks.

    A page that several retrieved chunks come from is more likely to answer the question than a page with a
    single lucky chunk; this lifts such pages without letting long pages win on length alone (bounded by
    ``top``). Measured on the dev set: recall@5 0.81 -> 0.89 for the hybrid ranking, MRR unchanged.
    """
    by_page: dict[tuple[str, str], list[float]] = {}
    for doc_id, score in scored:
        by_page.setdefault(page_of.get(doc_id, ("", str(doc_id))), []).append(score)
    # Only a page's best top + 1 scores matter: a chunk's support is the best ``top`` of the others.
    heads = {page: sorted(scores, reverse=True)[: top + 1] for page, scores in by_page.items()}
    out = []
    for doc_id, score in scored:
        others = heads[page_of.get(doc_id, ("", str(doc_id)))]
        if score >= others[-1]:
            others = list(others)
            others.remove(score)
        out.append((doc_id, score + decay * sum(others[:top])))
    return sorted(out, key=lambda item: (-item[1], item[0]))
