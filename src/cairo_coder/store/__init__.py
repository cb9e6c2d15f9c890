"""PostgreSQL + pgvector knowledge base: schema, connections, search and the DocumentStore."""

from cairo_coder.store.documents import DocumentStore
from cairo_coder.store.errors import (
    DatabaseAuthError,
    DatabaseUnavailableError,
    EmbeddedServerError,
    EmbedderMismatchError,
    PgvectorMissingError,
    SchemaVersionError,
    StoreError,
)
from cairo_coder.store.writes import ChunkRecord

__all__ = [
    "ChunkRecord",
    "DatabaseAuthError",
    "DatabaseUnavailableError",
    "DocumentStore",
    "EmbeddedServerError",
    "EmbedderMismatchError",
    "PgvectorMissingError",
    "SchemaVersionError",
    "StoreError",
]
