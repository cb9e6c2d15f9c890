"""Query insights: what was asked and answered, recorded off the request path and queried by admins.

Requests never wait for the database here: :meth:`InsightsRecorder.record` puts the entry on a bounded queue
and a background task writes batches. When the queue is full (the database is down for a long time) entries
are dropped, counted and logged, rather than growing memory without bound or slowing answers down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from cairo_coder.sanitize import clean_json, clean_text
from cairo_coder.store.database import CONNECTION_ERRORS

if TYPE_CHECKING:
    from cairo_coder.store.documents import DocumentStore

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
MAX_PAGE_SIZE = 100


@dataclass
class InsightEntry:
    agent_id: str
    query: str
    chat_history: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    duration_ms: float | None = None
    conversation_id: str | None = None
    user_hash: str | None = None
    mcp_mode: bool = False
    status: str = "ok"  # ok | error | cancelled
    error: str | None = None


@dataclass
class InsightFilter:
    since: datetime | None = None
    until: datetime | None = None
    agent_id: str | None = None
    text: str | None = None
    conversation_id: str | None = None
    user_hash: str | None = None
    cursor: int | None = None  # id of the last record of the previous page
    limit: int = 20


async def insights_salt(pool: asyncpg.Pool, configured: str) -> str:
    """The configured salt, else a random one created once and kept in the database (stable across restarts)."""
    if configured:
        return configured
    await pool.execute(
        "INSERT INTO store_info (key, value) VALUES ('insights_salt', $1) ON CONFLICT DO NOTHING", secrets.token_hex(16)
    )
    value = await pool.fetchval("SELECT value FROM store_info WHERE key = 'insights_salt'")
    return str(value)


def hash_user(salt: str, user: str | None) -> str | None:
    if not user:
        return None
    return hashlib.sha256(f"{salt}:{user}".encode()).hexdigest()[:32]


class InsightsRecorder:
    """Writes :class:`InsightEntry` batches in the background. ``start()`` in the lifespan, ``aclose()`` at exit."""

    def __init__(self, pool: asyncpg.Pool, queue_size: int = 10_000) -> None:
        self.pool = pool
        self._queue: asyncio.Queue[InsightEntry] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="insights-writer")

    def record(self, entry: InsightEntry) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("query insights queue is full; %d records dropped so far", self.dropped)

    async def flush(self) -> None:
        """Wait until every queued entry has been written (or failed)."""
        await self._queue.join()

    async def aclose(self, drain_seconds: float = 10.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_SIZE and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write_batch(self, batch: list[InsightEntry]) -> None:
        """Write ``batch``: through a database outage (kept and retried, the queue bounds memory meanwhile), and
        record by record when the database refuses the batch, so that one bad record never loses the others."""
        delay = 0.5
        while True:
            try:
                await self._write(batch)
                self.written += len(batch)
                return
            except CONNECTION_ERRORS as exc:
                logger.warning(
                    "query insights: the database is unreachable (%s); %d records kept, retrying in %.1f s",
                    type(exc).__name__,
                    len(batch),
                    delay,
                )
                with contextlib.suppress(Exception):
                    await self.pool.expire_connections()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception:
                if len(batch) == 1:
                    self.failed += 1
                    logger.exception("query insights: a record was refused by the database and dropped")
                    return
                for entry in batch:  # find the record(s) the database refuses; write the rest
                    await self._write_batch([entry])
                return

    async def _write(self, batch: list[InsightEntry]) -> None:
        await self.pool.executemany(
            """INSERT INTO query_insights (agent_id, query, chat_history, answer, sources, usage, duration_ms,
                   conversation_id, user_hash, mcp_mode, status, error)
               VALUES ($1, $2, $3::jsonb, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, $12)""",
            [
                (
                    _text(e.agent_id),
                    _text(e.query),
                    _json(e.chat_history),
                    _text(e.answer),
                    _json(e.sources),
                    _json(e.usage),
                    e.duration_ms,
                    _text(e.conversation_id),
                    e.user_hash,
                    e.mcp_mode,
                    e.status,
                    _text(e.error),
                )
                for e in batch
            ],
        )


def _text(text: str | None) -> str | None:
    """Storable text (see sanitize.py): PostgreSQL refuses NUL and lone surrogates."""
    return clean_text(text) if text is not None else None


def _json(value: Any) -> str:
    # jsonb refuses the escaped NUL (\u0000) and lone surrogates as well: cleaned before encoding.
    return json.dumps(clean_json(value))


async def query_insights(pool: asyncpg.Pool, where: InsightFilter) -> tuple[list[dict[str, Any]], bool]:
    """One page of records, newest first, and whether more follow (keyset paging on id)."""
    for name in ("agent_id", "text", "conversation_id", "user_hash"):
        setattr(where, name, _text(getattr(where, name)))
    clauses: list[str] = []
    params: list[Any] = []

    def add(sql: str, value: Any) -> None:
        params.append(value)
        clauses.append(sql.replace("?", f"${len(params)}"))

    if where.since is not None:
        add("created_at >= ?", where.since)
    if where.until is not None:
        add("created_at < ?", where.until)
    if where.agent_id:
        add("agent_id = ?", where.agent_id)
    if where.conversation_id:
        add("conversation_id = ?", where.conversation_id)
    if where.user_hash:
        add("user_hash = ?", where.user_hash)
    if where.text:
        escaped = where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        add("(query ILIKE ? OR answer ILIKE ?)", f"%{escaped}%")  # one parameter, used twice
    if where.cursor is not None:
        add("id < ?", where.cursor)
    limit = max(1, min(where.limit, MAX_PAGE_SIZE))
    sql = "SELECT * FROM query_insights"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY id DESC LIMIT {limit + 1}"
    rows = await pool.fetch(sql, *params)
    records = [_record(row) for row in rows[:limit]]
    return records, len(rows) > limit


def _record(row: asyncpg.Record) -> dict[str, Any]:
    data = dict(row)
    for key in ("chat_history", "sources", "usage"):
        value = data.get(key)
        data[key] = json.loads(value) if isinstance(value, str) else (value or ([] if key != "usage" else {}))
    data["created_at"] = data["created_at"].isoformat()
    return data


# The store's pool stays inside store/: the server reaches query insights through these two.


async def start_recorder(store: DocumentStore, configured_salt: str, queue_size: int) -> tuple[InsightsRecorder, str]:
    """A started recorder writing to ``store``, and the salt of its user hashes (see :func:`insights_salt`)."""
    salt = await insights_salt(store.pool, configured_salt)
    recorder = InsightsRecorder(store.pool, queue_size)
    recorder.start()
    return recorder, salt


async def find_insights(store: DocumentStore, where: InsightFilter) -> tuple[list[dict[str, Any]], bool]:
    """:func:`query_insights` on ``store``, retried through a lost or restarting database."""
    return await store.retrying(lambda: query_insights(store.pool, where), "insights query")
