"""Search latency per mode (dense, lexical, hybrid) at the shared corpus size and at 100,000 chunks.

    uv run --extra local python benchmarks/search.py [--chunks 100000] [--repeat 3]

The shared corpus is ingested once (kept under .bench/), then the labelled questions of the eval set are run
``--repeat`` times per mode through DocumentStore.search (k=5), end to end: query embedding included. The
store is then grown to ``--chunks`` synthetic chunks derived from the real ones (same term distribution, real
vectors plus noise, a random 20% of each copy's terms dropped) and measured again. Query embedding time is
reported on its own so that database time can be read off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cairo_coder.embeddings import create_embedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.store import DocumentStore
from common import CORPUS, DATASET, bench_settings, describe

MODES = ("dense", "lexical", "hybrid")
# A stored vector plus noise, unit length again (as embedders return them): {column} is the vector's column.
NOISY = """(SELECT array_agg(y / norm ORDER BY i) FROM (
               SELECT i, y, sqrt(sum(y * y) OVER ()) AS norm FROM (
                 SELECT i, x + (random() - 0.5) * 0.04 AS y
                 FROM unnest({column}::real[]) WITH ORDINALITY AS u(x, i)) noisy) unit)::vector"""


async def measure(store: DocumentStore, queries: list[str], repeat: int, label: str) -> None:
    count = await store.pool.fetchval("SELECT count(*) FROM documents")
    print(f"\n== {label}: {count} chunks, {len(queries)} queries x {repeat}")
    for q in queries[:5]:  # warm caches and the model
        await store.search(q, 5, mode="hybrid")
    embed_ms = []
    vectors = []
    for q in queries:
        started = time.perf_counter()
        vectors.append(await store.embedder.embed_query(q))
        embed_ms.append((time.perf_counter() - started) * 1000)
    print(f"{'query embedding':<30} {describe(embed_ms)}")
    cases: list[tuple[str, str, list[str] | None, bool]] = [
        *((f"{mode}, end to end", mode, None, False) for mode in MODES),
        *((f"{mode}, vector given", mode, None, True) for mode in MODES if mode != "lexical"),
        ("hybrid, 1 source, end to end", "hybrid", ["starknet_js"], False),
        ("hybrid, 1 source, vector given", "hybrid", ["starknet_js"], True),
    ]
    for name, mode, sources, given in cases:
        timings = []
        for _ in range(repeat):
            for q, vector in zip(queries, vectors, strict=True):
                started = time.perf_counter()
                await store.search(
                    q,
                    5,
                    sources=sources,
                    mode=mode,  # type: ignore[arg-type]
                    query_vector=vector if given else None,
                )
                timings.append((time.perf_counter() - started) * 1000)
        print(f"{name:<30} {describe(timings)}")


async def shrink(store: DocumentStore) -> None:
    """Remove the synthetic chunks of an earlier run, so that the corpus-size figures are measured again."""
    async with store.pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM documents WHERE path LIKE '%#synthetic-%'")]
        if not ids:
            return
        print(f"removing {len(ids)} synthetic chunks of an earlier run...")
        await conn.execute("DELETE FROM lexical_postings WHERE doc_id = ANY($1::bigint[])", ids)
        await conn.execute("DELETE FROM documents WHERE id = ANY($1::bigint[])", ids)
        await conn.execute(
            """UPDATE lexical_terms t SET df = c.n FROM
                 (SELECT term, count(*) AS n FROM lexical_postings GROUP BY term) c WHERE t.term = c.term"""
        )
        await conn.execute("UPDATE lexical_terms SET df = (SELECT count(*) FROM documents) WHERE term = ''")
        await conn.execute("VACUUM ANALYZE documents")
        await conn.execute("VACUUM ANALYZE lexical_postings")
        # An HNSW graph that lost 95% of its nodes is slow to search: rebuild it like a fresh store would have.
        await conn.execute("REINDEX INDEX documents_embedding_idx")
        await conn.execute("VACUUM ANALYZE chunk_vectors")
        await conn.execute("REINDEX INDEX chunk_vectors_embedding_idx")


async def grow(store: DocumentStore, target: int) -> None:
    """Add synthetic chunks until the store holds ``target`` chunks (SQL-side, in batches)."""
    async with store.pool.acquire() as conn:
        base = await conn.fetchval("SELECT count(*) FROM documents WHERE path NOT LIKE '%#synthetic-%'")
        current = await conn.fetchval("SELECT count(*) FROM documents")
        if current >= target:
            return
        started = time.perf_counter()
        await conn.execute("DROP INDEX IF EXISTS documents_embedding_idx")
        await conn.execute("DROP INDEX IF EXISTS chunk_vectors_embedding_idx")
        copy = 0
        while current < target:
            copy += 1
            take = min(base, target - current)
            async with conn.transaction():
                await conn.execute(
                    """CREATE TEMP TABLE synth ON COMMIT DROP AS
                       SELECT id AS old_id, nextval('documents_id_seq') AS new_id FROM documents
                       WHERE path NOT LIKE '%#synthetic-%' ORDER BY id LIMIT $1""",
                    take,
                )
                await conn.execute(
                    f"""INSERT INTO documents (id, chunk_id, source, path, title, section, url, chunk_number,
                           content, content_hash, lexemes, token_count, symbols, metadata, embedding)
                       SELECT s.new_id, d.chunk_id || '#synthetic-' || s.new_id, d.source,
                              d.path || '#synthetic-' || $1, d.title, d.section, d.url, d.chunk_number, d.content,
                              md5(d.content || s.new_id), d.lexemes, d.token_count, '{{}}', d.metadata,
                              {NOISY.format(column="d.embedding")}
                       FROM synth s JOIN documents d ON d.id = s.old_id""",
                    str(copy),
                )
                await conn.execute(  # the copies' further vectors (windows, API items), with the same noise
                    f"""INSERT INTO chunk_vectors (doc_id, ordinal, kind, source, embedding)
                       SELECT s.new_id, v.ordinal, v.kind, v.source, {NOISY.format(column="v.embedding")}
                       FROM synth s JOIN chunk_vectors v ON v.doc_id = s.old_id"""
                )
                await conn.execute(
                    """INSERT INTO lexical_postings (term, doc_id, source, impact)
                       SELECT p.term, s.new_id, p.source, p.impact * (0.8 + random() * 0.4)
                       FROM synth s JOIN lexical_postings p ON p.doc_id = s.old_id WHERE random() > 0.2"""
                )
                await conn.execute(
                    """UPDATE lexical_terms t SET df = c.n FROM
                         (SELECT term, count(*) AS n FROM lexical_postings GROUP BY term) c WHERE t.term = c.term"""
                )
                await conn.execute("UPDATE lexical_terms SET df = (SELECT count(*) FROM documents) WHERE term = ''")
            current += take
            print(f"  {current} chunks ({time.perf_counter() - started:.0f} s)", flush=True)
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("CREATE INDEX documents_embedding_idx ON documents USING hnsw (embedding vector_cosine_ops)")
        await conn.execute(
            "CREATE INDEX chunk_vectors_embedding_idx ON chunk_vectors USING hnsw (embedding vector_cosine_ops)"
        )
        await conn.execute("VACUUM ANALYZE chunk_vectors")
        await conn.execute("VACUUM ANALYZE documents")
        await conn.execute("VACUUM ANALYZE lexical_postings")
        await conn.execute("ANALYZE lexical_terms")
        print(f"  grown to {current} chunks and HNSW rebuilt in {time.perf_counter() - started:.0f} s")


async def run(chunks: int, repeat: int) -> None:
    settings = bench_settings("search")
    async with await DocumentStore.open(
        settings.database, create_embedder(settings.embeddings), settings.search, for_writing=True
    ) as store:
        if not await store.pool.fetchval("SELECT count(*) FROM documents"):
            print("ingesting the shared corpus (once)...")
            ingester = Ingester(settings, store)
            for source in [s for s in settings.sources if (CORPUS / s).is_dir()]:
                await ingester.ingest_source(source, CORPUS)
        queries = [json.loads(line)["query"] for line in DATASET.read_text().splitlines() if line.strip()]
        await shrink(store)
        original_count = await store.pool.fetchval("SELECT count(*) FROM documents")
        await measure(store, queries, repeat, "shared corpus")
        if chunks > original_count:
            print(f"\ngrowing the store to {chunks} chunks...")
            await grow(store, chunks)
            await measure(store, queries, repeat, f"{chunks} chunks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.chunks, args.repeat))


if __name__ == "__main__":
    main()
