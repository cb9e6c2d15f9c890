"""Exact dense scans, coalesced: the scans started in one event-loop turn over the same sources run as one
statement.

Why: an exact scan is bound by reading the filtered rows' vectors (6 KB each at 1536 dimensions), not by the
arithmetic. Once a row's vector is in the CPU cache, a second query vector costs only its inner product: over
the ~4,000 rows of a five-source filter of the shared corpus one scan takes ~7.5 ms, two in one statement
~9 ms, four ~12 ms. The retriever searches with the question and each of its rewrites concurrently, and
concurrent requests often filter on the same sources; each would otherwise read every vector again. A single
request gains little wall time (its separate scans would run on separate cores); the CPU saved is what lets
the server answer more requests at once (MCP mode at 32 clients: 32.2 -> 36.4 requests/s in
benchmarks/server.py).

Coalescing adds no wait: the batch is sent on the next turn of the event loop, which the scans started
together (an ``asyncio.gather``) have all reached by then. A scan started later simply goes in the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from cairo_coder.store.search import exact_sql

MAX_BATCH = 8  # query vectors per statement; past a few, each one costs its arithmetic and nothing is shared

_Key = tuple[str, ...] | None
_Waiter = tuple[list[float], int, "asyncio.Future[list[Any]]"]


class ExactScans:
    """Runs exact dense scans for a pool, coalescing those started together (see the module docstring).

    ``statements`` counts the statements sent, for tests and benchmarks.
    """

    def __init__(self, pool: asyncpg.Pool, window_weight: float, max_batch: int = MAX_BATCH) -> None:
        self.pool = pool
        self.window_weight = window_weight
        self.max_batch = max_batch
        self.statements = 0
        self._pending: dict[_Key, list[_Waiter]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def scan(self, vector: list[float], limit: int, sources: Sequence[str] | None) -> list[Any]:
        """The ``limit`` rows (id, source, path, score) nearest ``vector`` among ``sources``, best first.

        Database errors reach every scan of the batch; the caller's retry runs its scan again.
        """
        key: _Key = tuple(sources) if sources is not None else None
        loop = asyncio.get_running_loop()
        batch = self._pending.get(key)
        if batch is None or len(batch) >= self.max_batch:
            batch = []
            self._pending[key] = batch
            loop.call_soon(self._send, key, batch)
        future: asyncio.Future[list[Any]] = loop.create_future()
        batch.append((vector, limit, future))
        return await future

    def _send(self, key: _Key, batch: list[_Waiter]) -> None:
        if self._pending.get(key) is batch:
            del self._pending[key]
        task = asyncio.ensure_future(self._run(key, batch))
        self._running.add(task)  # a reference until done: the loop keeps only weak ones
        task.add_done_callback(self._running.discard)

    async def _run(self, key: _Key, batch: list[_Waiter]) -> None:
        live = [waiter for waiter in batch if not waiter[2].done()]  # a cancelled search needs no answer
        if not live:
            return
        sources = list(key) if key is not None else None
        limit = max(waiter[1] for waiter in live)
        try:
            async with self.pool.acquire() as conn:
                self.statements += 1
                rows = await conn.fetch(exact_sql(len(live)), sources, limit, self.window_weight, *(w[0] for w in live))
                answers: list[list[Any]] = [[] for _ in live]
                for row in rows:
                    answers[row["q"]].append(row)
        except asyncio.CancelledError:  # the loop is shutting down: so are the searches waiting
            for _, _, future in live:
                future.cancel()
            raise
        except Exception as exc:  # handed to every waiter, which raises it (and may retry)
            for _, _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, wanted, future), rows_of in zip(live, answers, strict=True):
            if not future.done():
                future.set_result(rows_of[:wanted])
