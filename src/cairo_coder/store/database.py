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

# Connection-level failures: the server or the path to it is gone, restarting, full or read-only (a standby after
# a failover). A retry on a fresh connection may succeed; after the retry deadline they are 503
# database_unavailable. OSError covers what the event loop raises for a vanished socket (FileNotFoundError under
# uvloop), refused and reset connections, and timeouts.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed", "connection was closed in the middle of operation"
)
# Transient on a healthy server: run the operation again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
DEFAULT_RETRY_SECONDS = 5.0


def is_connection_error(exc: BaseException) -> bool:
    """A connection-level failure of the database driver (not of some other client: OSError counts only when
    it was raised inside asyncpg)."""
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return False
    if isinstance(exc, OSError) and not isinstance(exc, asyncpg.PostgresError):
        tb = exc.__traceback__
        while tb is not None:
            if "asyncpg" in tb.tb_frame.f_code.co_filename:
                return True
            tb = tb.tb_next
        return False
    return isinstance(exc, CONNECTION_ERRORS)


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
    operation: Callable[[], Awaitable[T]],
    *,
    deadline: float = DEFAULT_RETRY_SECONDS,
    base_delay: float = 0.1,
    what: str = "query",
    pool: asyncpg.Pool | None = None,
) -> T:
    """Run ``operation``, retrying transient failures (lost connection, server restarting, deadlock...) with
    jittered exponential backoff for up to ``deadline`` seconds, then raise :class:`DatabaseUnavailableError`.

    After a connection-level failure the pool's idle connections are expired: after a database restart they are
    all dead, and without this each retry would draw the next dead one instead of opening a fresh connection.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    attempt = 0
    while True:
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            if pool is not None and isinstance(exc, CONNECTION_ERRORS):
                await _expire(pool)
            delay = min(base_delay * 2**attempt * (0.5 + random.random()), 2.0)
            attempt += 1
            if loop.time() + delay > give_up:
                raise DatabaseUnavailableError(
                    f"the database {what} failed: PostgreSQL is unreachable or restarting ({failure_reason(exc)}) "
                    f"and did not come back within {deadline:g} s; retry shortly"
                ) from exc
            logger.warning(
                "transient database error during %s (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)


def failure_reason(exc: BaseException) -> str:
    """A connection failure in words for clients (class names and driver details stay in the log)."""
    if isinstance(exc, FileNotFoundError):
        return "its socket is gone"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncpg.exceptions.TooManyConnectionsError):
        return "too many connections"
    if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
        return "the server is read-only"
    if isinstance(exc, asyncpg.exceptions.OperatorInterventionError):
        return "the server is shutting down or starting"
    if isinstance(exc, asyncpg.exceptions.SerializationError | asyncpg.exceptions.DeadlockDetectedError):
        return "conflicting transactions"
    return "connection lost"


async def _expire(pool: asyncpg.Pool) -> None:
    try:
        await pool.expire_connections()
    except Exception:  # the pool may be closing; the retry will tell
        logger.debug("could not expire the pool's connections", exc_info=True)


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
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            init=_init_connection,
            reset=_no_reset,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise map_connect_error(exc, url) from exc
    assert pool is not None
    return pool
