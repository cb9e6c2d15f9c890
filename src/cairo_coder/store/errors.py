"""Precise store exceptions. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every store failure."""

    kind = "database_error"


class DatabaseUnavailableError(StoreError):
    """The PostgreSQL server cannot be reached (down, wrong host/port, network)."""

    kind = "database_unavailable"


class DatabaseAuthError(StoreError):
    """The server refused the credentials or the database does not exist."""

    kind = "database_auth"


class PgvectorMissingError(StoreError):
    """The server has no pgvector extension available."""

    kind = "database_unavailable"


class EmbedderMismatchError(StoreError):
    """The store was built with another embedding model or dimension."""

    kind = "embedder_mismatch"


class SchemaVersionError(StoreError):
    """The database schema is newer than this version of cairo-coder understands."""

    kind = "database_error"


class EmbeddedServerError(StoreError):
    """The embedded PostgreSQL (pgserver) could not be started."""

    kind = "database_unavailable"
