"""Writing chunks: batched inserts of documents with their BM25 postings, and deletes that keep the term
statistics (document frequencies, document count) exact, so that re-ingesting a page never skews the ranking.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cairo_coder.store import search as rank
from cairo_coder.store.database import Conn
from cairo_coder.tokens import count_tokens

# The tables written here that searches read (what DocumentStore.vacuum maintains after an ingestion).
SEARCHED_TABLES = ("documents", "chunk_vectors", "lexical_postings", "lexical_terms", "pages")


@dataclass
class ChunkRecord:
    """A chunk ready to be written: text, metadata, lexical terms and (optionally) its embedding."""

    chunk_number: int
    content: str
    content_hash: str
    title: str
    section: list[str]
    url: str
    terms: Counter[str]
    terms_in_order: list[str]
    title_terms: set[str]
    token_count: int  # lexical terms (BM25 document length)
    symbols: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: list[float] | None = None  # the head vector: heading trail and the start of the chunk
    # Descriptions of the API items the chunk documents ("get contract address: Returns the address of the
    # contract being executed."), embedded as further vectors: a question that describes what an item does finds
    # it by them, without naming it.
    summaries: list[str] = field(default_factory=list)
    # The further vectors (kind "window" or "summary"), ordinals 1.. in this order; set by the ingester.
    extra_vectors: list[tuple[str, list[float]]] = field(default_factory=list)


async def delete_page_chunks(conn: Conn, source: str, paths: list[str]) -> int:
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM documents WHERE source = $1 AND path = ANY($2::text[])", source, paths
        )
    ]
    if not ids:
        return 0
    # Document frequencies go down by one for every term of every removed chunk.
    await conn.execute(
        """WITH gone AS (SELECT term, count(*) AS n FROM lexical_postings WHERE doc_id = ANY($1::bigint[])
                         GROUP BY term)
           UPDATE lexical_terms t SET df = t.df - gone.n FROM gone WHERE t.term = gone.term""",
        ids,
    )
    await conn.execute("UPDATE lexical_terms SET df = df - $1 WHERE term = ''", len(ids))
    await conn.execute("DELETE FROM lexical_terms WHERE df <= 0 AND term <> ''")
    await conn.execute("DELETE FROM documents WHERE id = ANY($1::bigint[])", ids)
    return len(ids)


async def insert_chunks(
    conn: Conn,
    source: str,
    path: str,
    chunks: list[ChunkRecord],
    commit: str | None,
    with_vectors: bool,
) -> None:
    if not chunks:
        return
    columns = [
        "chunk_id",
        "source",
        "path",
        "title",
        "section",
        "url",
        "chunk_number",
        "content",
        "content_hash",
        "lexemes",
        "token_count",
        "symbols",
        "metadata",
        "source_commit",
        "prompt_tokens",
    ]
    casts = [
        "text",
        "text",
        "text",
        "text",
        "text[]",
        "text",
        "int",
        "text",
        "text",
        "tsvector",
        "int",
        "text[]",
        "jsonb",
        "text",
        "int",
    ]
    values: list[list[Any]] = [
        [f"{source}:{path}#{c.chunk_number}" for c in chunks],
        [source] * len(chunks),
        [path] * len(chunks),
        [c.title for c in chunks],
        [_pg_array(c.section) for c in chunks],
        [c.url for c in chunks],
        [c.chunk_number for c in chunks],
        [c.content for c in chunks],
        [c.content_hash for c in chunks],
        [rank.tsvector_literal(c.terms_in_order, c.title_terms) for c in chunks],
        [c.token_count for c in chunks],
        [_pg_array(c.symbols) for c in chunks],
        [json.dumps(c.metadata) for c in chunks],
        [commit] * len(chunks),
        [count_tokens(c.content.strip()) for c in chunks],  # what format_for_agent budgets
    ]
    if with_vectors:
        columns.append("embedding")
        casts.append("vector")
        values.append([_vector_literal(c.embedding) for c in chunks])
    # Types without an array codec travel as text and are cast per row.
    textual = ("text[]", "tsvector", "jsonb", "vector")
    array_types = ["text[]" if t in textual else f"{t}[]" for t in casts]
    selects = [f"u.c{i}::{t}" if t in textual else f"u.c{i}" for i, t in enumerate(casts)]
    sql = (
        f"INSERT INTO documents ({', '.join(columns)}) SELECT {', '.join(selects)} FROM unnest("
        + ", ".join(f"${i + 1}::{t}" for i, t in enumerate(array_types))
        + f") AS u({', '.join(f'c{i}' for i in range(len(columns)))}) RETURNING id, chunk_number"
    )
    rows = await conn.fetch(sql, *values)
    id_of = {r["chunk_number"]: r["id"] for r in rows}
    if with_vectors:
        await insert_extra_vectors(conn, source, [(id_of[c.chunk_number], c.extra_vectors) for c in chunks])
    postings = []
    df: Counter[str] = Counter()
    for c in chunks:
        doc_id = id_of[c.chunk_number]
        for term, tf in c.terms.items():
            postings.append((term, doc_id, source, rank.bm25_impact(tf, c.token_count)))
            df[term] += 1
    await conn.copy_records_to_table(
        "lexical_postings", records=postings, columns=["term", "doc_id", "source", "impact"]
    )
    df[""] = len(chunks)  # the '' row counts documents (N of the idf)
    await conn.execute(
        """INSERT INTO lexical_terms (term, df) SELECT * FROM unnest($1::text[], $2::int[])
           ON CONFLICT (term) DO UPDATE SET df = lexical_terms.df + EXCLUDED.df""",
        list(df.keys()),
        list(df.values()),
    )


async def insert_extra_vectors(
    conn: Conn, source: str, chunks: list[tuple[int, list[tuple[str, list[float]]]]]
) -> None:
    """A chunk's further vectors (ordinals 1.., after its head vector in documents)."""
    rows = [
        (doc_id, ordinal, kind, _vector_literal(vector))
        for doc_id, extras in chunks
        for ordinal, (kind, vector) in enumerate(extras, start=1)
    ]
    if not rows:
        return
    await conn.execute(
        """INSERT INTO chunk_vectors (doc_id, ordinal, kind, source, embedding)
           SELECT u.d, u.o, u.k, $4, u.v::vector FROM unnest($1::bigint[], $2::int[], $3::text[], $5::text[])
             AS u(d, o, k, v)""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        source,
        [r[3] for r in rows],
    )


def _vector_literal(vector: list[float] | None) -> str | None:
    return None if vector is None else "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def _pg_array(items: list[str]) -> str:
    """A text[] literal, for passing arrays of arrays through unnest()."""
    escaped = ['"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items]
    return "{" + ",".join(escaped) + "}"
