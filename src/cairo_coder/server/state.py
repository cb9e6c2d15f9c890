"""What the routes share: created once in the app's lifespan, reached through ``request.app.state.services``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cairo_coder import metrics
from cairo_coder.agents import AgentFactory
from cairo_coder.config import Settings
from cairo_coder.llm import LLMRouter
from cairo_coder.programs.suggestions import SuggestionsProgram
from cairo_coder.server.errors import APIError
from cairo_coder.store import DocumentStore
from cairo_coder.store.insights import InsightsRecorder


class ConcurrencyLimiter:
    """At most ``limit`` answering requests in flight; the next one is refused with 429 at once (no queueing:
    a client's own retry policy knows better than a hidden server queue how long it can wait)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0

    def acquire(self) -> None:
        if self.in_flight >= self.limit:
            self.refused += 1
            raise APIError(
                429,
                f"too many concurrent requests (limit {self.limit}); retry shortly",
                code="concurrency_limit",
                headers={"retry-after": "1"},
            )
        self.in_flight += 1
        metrics.IN_FLIGHT.inc()

    def release(self) -> None:
        self.in_flight -= 1
        metrics.IN_FLIGHT.dec()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


@dataclass
class Services:
    settings: Settings
    store: DocumentStore
    factory: AgentFactory
    router: LLMRouter
    limiter: ConcurrencyLimiter
    suggestions: SuggestionsProgram
    insights: InsightsRecorder | None = None
    salt: str = ""
    started_at: float = field(default_factory=time.time)
    warm: bool = False  # the embedding model is loaded and one search ran (app.warm_up); /ready waits for it
