"""Versioned schema migrations, applied at start under an advisory lock.

The embedding column is not part of the migrations: its dimension belongs to the embedder, so it is added when
a store is first bound to an embedder (see :func:`bind_embedder`) and recorded in ``store_info``.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from cairo_coder.store.database import Conn
from cairo_coder.store.errors import EmbedderMismatchError, PgvectorMissingError, SchemaVersionError

MIGRATION_LOCK = 0x6361_6972_6F  # "cairo": one advisory lock id for every cairo-coder migrator
INGEST_LOCK = MIGRATION_LOCK + 1  # held by an ingestion for its whole run (DocumentStore.ingestion_lock)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "documents, pages, lexical index",
        """
        CREATE TABLE store_info (
            key text PRIMARY KEY,
            value text NOT NULL
        );
        CREATE TABLE pages (
            source text NOT NULL,
            path text NOT NULL,
            page_hash text NOT NULL,
            title text NOT NULL DEFAULT '',
            url text NOT NULL DEFAULT '',
            chunk_count integer NOT NULL,
            source_commit text,
            indexed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, path)
        );
        CREATE TABLE documents (
            id bigserial PRIMARY KEY,
            chunk_id text NOT NULL UNIQUE,
            source text NOT NULL,
            path text NOT NULL,
            title text NOT NULL DEFAULT '',
            section text[] NOT NULL DEFAULT '{}',
            url text NOT NULL DEFAULT '',
            chunk_number integer NOT NULL,
            content text NOT NULL,
            content_hash text NOT NULL,
            lexemes tsvector NOT NULL,
            token_count integer NOT NULL,
            symbols text[] NOT NULL DEFAULT '{}',
            metadata jsonb NOT NULL DEFAULT '{}',
            source_commit text,
            indexed_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX documents_source_idx ON documents (source);
        CREATE INDEX documents_page_idx ON documents (source, path);
        CREATE INDEX documents_lexemes_idx ON documents USING gin (lexemes);
        CREATE INDEX documents_symbols_idx ON documents USING gin (symbols);

        -- BM25 inverted index: one row per (term, chunk) with the term's precomputed BM25 tf-component
        -- ("impact"); queries read each term's highest-impact postings first.
        CREATE TABLE lexical_postings (
            term text NOT NULL,
            doc_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            source text NOT NULL,
            impact real NOT NULL
        );
        CREATE INDEX lexical_postings_term_idx ON lexical_postings (term, impact DESC) INCLUDE (doc_id, source);
        -- Source-filtered queries (an agent restricted to some sources) read their postings directly.
        CREATE INDEX lexical_postings_term_source_idx ON lexical_postings (term, source, impact DESC)
            INCLUDE (doc_id);
        CREATE INDEX lexical_postings_doc_idx ON lexical_postings (doc_id);
        CREATE TABLE lexical_terms (
            term text PRIMARY KEY,
            df integer NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "query insights",
        """
        CREATE TABLE query_insights (
            id bigserial PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            agent_id text NOT NULL,
            query text NOT NULL,
            chat_history jsonb NOT NULL DEFAULT '[]',
            answer text,
            sources jsonb NOT NULL DEFAULT '[]',
            usage jsonb NOT NULL DEFAULT '{}',
            duration_ms real,
            conversation_id text,
            user_hash text,
            mcp_mode boolean NOT NULL DEFAULT false,
            status text NOT NULL DEFAULT 'ok',
            error text
        );
        CREATE INDEX query_insights_created_idx ON query_insights (created_at DESC, id DESC);
        CREATE INDEX query_insights_agent_idx ON query_insights (agent_id, id DESC);
        CREATE INDEX query_insights_conversation_idx ON query_insights (conversation_id, id DESC);
        CREATE INDEX query_insights_user_idx ON query_insights (user_hash, id DESC);
        """,
    ),
    Migration(
        3,
        "BM25 postings in a total order",
        # Postings of equal impact are read in doc_id order, so which ones a term's cap keeps (and the ranking)
        # does not depend on the plan or the table's physical order. In the index, this order costs nothing.
        """
        CREATE INDEX lexical_postings_term_order_idx ON lexical_postings (term, impact DESC, doc_id)
            INCLUDE (source);
        DROP INDEX IF EXISTS lexical_postings_term_idx;
        ALTER INDEX lexical_postings_term_order_idx RENAME TO lexical_postings_term_idx;
        CREATE INDEX lexical_postings_term_source_order_idx ON lexical_postings (term, source, impact DESC, doc_id);
        DROP INDEX IF EXISTS lexical_postings_term_source_idx;
        ALTER INDEX lexical_postings_term_source_order_idx RENAME TO lexical_postings_term_source_idx;
        """,
    ),
    Migration(
        4,
        "prompt tokens per chunk",
        # The chunk's length in cl100k tokens (tokens.py), counted once when the chunk is written instead of on
        # every request that fits documentation into a token budget. Chunks written before stay NULL (counted
        # when needed, in a bounded cache) until their page is written again: filling them in by UPDATE rewrote
        # every 6 KB row out of its source's order, and the source-filtered exact scans were ~1.5 ms slower after.
        """
        ALTER TABLE documents ADD COLUMN prompt_tokens integer;
        """,
    ),
    Migration(
        5,
        "further vectors per chunk",
        # A chunk's head vector stays in documents.embedding; the windows over the rest of its text (an embedder
        # sees only its first 128 word pieces) and the descriptions of the API items it documents get one row
        # each here. The vector column is added with the embedder's dimension (bind_embedder), as for documents.
        # Stores built before have no rows: their chunks are scored by the head alone until re-ingested (the
        # index version changed, so the next `cairo-coder ingest` rewrites every page, reusing head vectors).
        """
        CREATE TABLE chunk_vectors (
            doc_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            kind text NOT NULL CHECK (kind IN ('window', 'summary')),
            source text NOT NULL,
            PRIMARY KEY (doc_id, ordinal)
        );
        CREATE INDEX chunk_vectors_source_idx ON chunk_vectors (source, kind);
        """,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


async def ensure_pgvector(conn: Conn) -> None:
    available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
    if not available:
        raise PgvectorMissingError(
            "the PostgreSQL server has no pgvector extension. Install it on the server "
            "(e.g. `apt install postgresql-16-pgvector`, or the pgvector/pgvector Docker image; "
            "see https://github.com/pgvector/pgvector#installation), "
            "or unset DATABASE_URL to use the embedded PostgreSQL, which ships pgvector."
        )
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise PgvectorMissingError(
            "pgvector is installed on the server but this user may not enable it: run "
            "`CREATE EXTENSION vector;` once as a superuser in this database."
        ) from exc


async def migrate(conn: Conn) -> int:
    """Apply pending migrations; return the schema version. Safe to call concurrently."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        # Under the lock: two replicas starting on one empty database would otherwise race in CREATE EXTENSION
        # IF NOT EXISTS, and the loser fails with a unique violation (PostgreSQL does not serialize it).
        await ensure_pgvector(conn)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database schema is version {current}, newer than this cairo-coder understands "
                f"({SCHEMA_VERSION}); upgrade cairo-coder or point it at another database"
            )
        for migration in MIGRATIONS:
            if migration.version > current:
                try:
                    await conn.execute(migration.sql)
                except asyncpg.PostgresError as exc:
                    raise SchemaVersionError(
                        f"schema migration {migration.version} ({migration.name}) failed: {exc}. Nothing was "
                        f"changed: the database stays at schema version {current}"
                    ) from exc
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        return int(await conn.fetchval("SELECT max(version) FROM schema_migrations"))


async def bound_embedder(conn: Conn) -> tuple[str, int] | None:
    rows = await conn.fetch("SELECT key, value FROM store_info WHERE key IN ('embedder', 'dimensions')")
    info = {r["key"]: r["value"] for r in rows}
    if "embedder" not in info:
        return None
    return info["embedder"], int(info["dimensions"])


async def bind_embedder(conn: Conn, embedder_id: str, dimensions: int, *, for_writing: bool) -> None:
    """Record the embedder of an empty store (adding the vector column), or check it matches.

    A lexical-only reader (dimensions 0) may open any store; a writer or a dense reader must match exactly.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        bound = await bound_embedder(conn)
        if bound is None:
            if not for_writing and dimensions:
                has_docs = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM documents)")
                if not has_docs:
                    return  # nothing indexed yet: the first ingestion binds the embedder
            await conn.execute(
                "INSERT INTO store_info (key, value) VALUES ('embedder', $1), ('dimensions', $2)",
                embedder_id,
                str(dimensions),
            )
            if dimensions:
                await conn.execute(f"ALTER TABLE documents ADD COLUMN embedding vector({int(dimensions)})")
                # Vectors stay uncompressed in the row: source-filtered exact scans read thousands of them,
                # and de-TOASTing each one made those scans several times slower.
                await conn.execute("ALTER TABLE documents ALTER COLUMN embedding SET STORAGE PLAIN")
                await conn.execute(
                    "CREATE INDEX documents_embedding_idx ON documents USING hnsw (embedding vector_cosine_ops)"
                )
                await _add_chunk_vector_column(conn, dimensions)
            return
        bound_id, bound_dims = bound
        if (bound_id, bound_dims) == (embedder_id, dimensions):
            if dimensions:
                await _add_chunk_vector_column(conn, dimensions)  # a store bound before schema 5
            return
        if not for_writing and dimensions == 0:
            return  # lexical search works on any store
        raise EmbedderMismatchError(
            f"this store was indexed with embedder {bound_id!r} ({bound_dims} dimensions) but the configuration "
            f"asks for {embedder_id!r} ({dimensions} dimensions). Either set the embeddings back to the store's "
            "model, or rebuild the index with the new one: `cairo-coder ingest --reindex`."
        )


async def _add_chunk_vector_column(conn: Conn, dimensions: int) -> None:
    """The vector column of chunk_vectors and its HNSW index, for a bound store that lacks them (idempotent)."""
    exists = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM information_schema.columns
                          WHERE table_name = 'chunk_vectors' AND column_name = 'embedding'
                            AND table_schema = current_schema())"""
    )
    if exists:
        return
    await conn.execute(f"ALTER TABLE chunk_vectors ADD COLUMN embedding vector({int(dimensions)}) NOT NULL")
    await conn.execute("ALTER TABLE chunk_vectors ALTER COLUMN embedding SET STORAGE PLAIN")
    await conn.execute(
        "CREATE INDEX chunk_vectors_embedding_idx ON chunk_vectors USING hnsw (embedding vector_cosine_ops)"
    )


async def reset_embedder(conn: Conn) -> None:
    """Drop every indexed document and the embedder binding (for a re-index with another embedder)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("TRUNCATE lexical_postings, lexical_terms, chunk_vectors, documents, pages")
        await conn.execute("DROP INDEX IF EXISTS documents_embedding_idx")
        await conn.execute("ALTER TABLE documents DROP COLUMN IF EXISTS embedding")
        await conn.execute("DROP INDEX IF EXISTS chunk_vectors_embedding_idx")
        await conn.execute("ALTER TABLE chunk_vectors DROP COLUMN IF EXISTS embedding")
        await conn.execute("DELETE FROM store_info WHERE key IN ('embedder', 'dimensions')")
