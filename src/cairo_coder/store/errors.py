"""Precise store exceptions (the tree: cairo_coder/errors.py). Each message says what went wrong and what to do."""

from __future__ import annotations

from cairo_coder.errors import CairoCoderError


class StoreError(CairoCoderError):
    """Base class of every store failure."""

    kind = "database_error"
    status = 503


class DatabaseUnavailableError(StoreError):
    """The PostgreSQL server cannot be reached (down, wrong host/port, network)."""

    kind = "database_unavailable"


class DatabaseAuthError(StoreError):
    """The server refused the credentials or the database does not exist."""

    kind = "database_auth"


class PgvectorMissingError(DatabaseUnavailableError):
    """The server has no pgvector extension available."""

    kind = "database_unavailable"


class EmbedderMismatchError(StoreError):
    """The store was built with another embedding model or dimension."""

    kind = "embedder_mismatch"


class SchemaVersionError(StoreError):
    """The database schema is newer than this version of cairo-coder understands."""

    kind = "database_error"


class EmbeddedServerError(DatabaseUnavailableError):
    """The embedded PostgreSQL (pgserver) could not be started."""

    kind = "database_unavailable"
