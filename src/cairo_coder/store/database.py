"""Connecting to PostgreSQL: embedded or external server, pool creation, error mapping and retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qs, urlparse

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pgvector.asyncpg import register_vector

from cairo_coder.store.errors import (
    DatabaseAuthError,
    DatabaseUnavailableError,
    PgvectorMissingError,
    StoreError,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
# A plain connection or one borrowed from the pool: the query code accepts both.
Conn = asyncpg.Connection | PoolConnectionProxy

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionResetError,
    ConnectionRefusedError,
    TimeoutError,
)


def describe_target(url: str) -> str:
    parsed = urlparse(url)
    query_host = parse_qs(parsed.query).get("host", [""])[0]
    host = parsed.hostname or query_host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.path.lstrip('/') or 'postgres'}"


def map_connect_error(exc: BaseException, url: str) -> StoreError:
    """Turn a driver/OS error into a precise store error whose message says what to do."""
    target = describe_target(url)
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseAuthError(
            f"PostgreSQL at {target} rejected the credentials: {exc}. Check the user and password in DATABASE_URL."
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return DatabaseAuthError(
            f"PostgreSQL at {target}: {exc}. Create it (CREATE DATABASE ...) or fix the database name in DATABASE_URL."
        )
    if isinstance(exc, StoreError):
        return exc
    return DatabaseUnavailableError(
        f"cannot reach PostgreSQL at {target} ({type(exc).__name__}: {exc}). Check that the server is running "
        "and that DATABASE_URL is right, or unset DATABASE_URL to use the embedded PostgreSQL."
    )


async def with_retries(
    operation: Callable[[], Awaitable[T]], *, attempts: int = 4, base_delay: float = 0.2, what: str = "query"
) -> T:
    """Run ``operation``, retrying transient failures (lost connection, deadlock...) with jittered backoff."""
    for attempt in range(attempts):
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            if attempt == attempts - 1:
                raise DatabaseUnavailableError(
                    f"the database {what} kept failing after {attempts} attempts ({type(exc).__name__}: {exc}); "
                    "check that PostgreSQL is running"
                ) from exc
            delay = base_delay * 2**attempt * (0.5 + random.random())
            logger.warning("transient database error during %s (%s); retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def connect_once(url: str, connect_timeout: float) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=connect_timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise map_connect_error(exc, url) from exc


async def connect_with_retries(url: str, connect_timeout: float, attempts: int = 3) -> asyncpg.Connection:
    last: StoreError | None = None
    for attempt in range(attempts):
        try:
            return await connect_once(url, connect_timeout)
        except DatabaseUnavailableError as exc:
            last = exc
            if attempt < attempts - 1:
                await asyncio.sleep(0.3 * 2**attempt)
    assert last is not None
    raise last


HNSW_EF_SEARCH = 128


async def _init_connection(conn: asyncpg.Connection) -> None:
    try:
        await register_vector(conn)
    except ValueError as exc:  # the vector type does not exist in this database
        raise PgvectorMissingError(f"pgvector is not enabled in this database: {exc}") from exc
    # The HNSW search breadth of an unfiltered dense ranking (search.dense): set once per connection rather
    # than in a transaction per query (3 round trips fewer).
    await conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
    # Text codecs for types asyncpg has no binary codec for.
    await conn.set_type_codec("tsvector", encoder=str, decoder=str, schema="pg_catalog", format="text")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's full reset on release (a round trip of RESET ALL, UNLISTEN ... per query): cairo-coder keeps
    no session state (no LISTEN, session advisory locks or plain SET) on pooled connections. Only a transaction
    left open by a cancelled request is rolled back, so the next user gets a clean connection."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, min_size: int, max_size: int, connect_timeout: float) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=connect_timeout, init=_init_connection,
            reset=_no_reset,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise map_connect_error(exc, url) from exc
    assert pool is not None
    return pool
