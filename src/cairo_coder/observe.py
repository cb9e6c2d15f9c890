"""What one request did, gathered as it runs: its id, agent, mode, each stage's duration, tokens and model, the
documents retrieved, and how it ended.

The server opens a :class:`RequestRecord` per HTTP request or WebSocket message (server/context.py) and keeps it
in a context variable, so the pipeline's stages fill it without being passed it, and every task or thread
started for the request (asyncio copies the context) sees the same record and request id. The log line of a
request (logs.py) is written from it; metrics and traces read the same record.
"""

from __future__ import annotations

import contextvars
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# What an incoming X-Request-ID may be to be kept (else a new id is generated): short, printable, no spaces, so
# that it cannot forge log lines or headers.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}$")


@dataclass
class StageRecord:
    duration_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None


@dataclass
class RequestRecord:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    route: str = ""
    agent: str | None = None
    mode: str | None = None  # "answer" or "mcp"
    stages: dict[str, StageRecord] = field(default_factory=dict)
    documents: int | None = None
    first_token_ms: float | None = None  # when the first piece of the answer was ready
    status: str | None = None  # ok, error, cancelled
    error: str | None = None  # the error's kind
    deadline: float | None = None  # perf_counter() time after which no retry starts (llm.request_deadline)
    trace_id: str | None = None  # the request span's trace (tracing.py), for the log line

    def stage(self, name: str) -> StageRecord:
        return self.stages.setdefault(name, StageRecord())

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def summary(self) -> dict[str, Any]:
        """The fields of the request's log line (no user text)."""
        fields: dict[str, Any] = {"route": self.route}
        for key in ("agent", "mode", "status", "error", "documents", "trace_id"):
            value = getattr(self, key)
            if value is not None:
                fields[key] = value
        fields["duration_ms"] = round(self.elapsed_ms(), 1)
        if self.stages:
            fields["stages"] = {
                name: {
                    "duration_ms": round(stage.duration_ms, 1),
                    **({"model": stage.model} if stage.model else {}),
                    **(
                        {"prompt_tokens": stage.prompt_tokens, "completion_tokens": stage.completion_tokens}
                        if stage.prompt_tokens or stage.completion_tokens
                        else {}
                    ),
                }
                for name, stage in self.stages.items()
            }
        return fields


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("cairo_coder_request", default=None)


def new_request_id(incoming: str | None = None) -> str:
    """``incoming`` when it is a sane id (a proxy's or the client's own), else a fresh one."""
    if incoming and SANE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def current() -> RequestRecord | None:
    return _current.get()


def current_request_id() -> str | None:
    record = _current.get()
    return record.request_id if record is not None else None


@contextmanager
def request(record: RequestRecord) -> Iterator[RequestRecord]:
    """Make ``record`` the current request for this block (and the tasks it starts)."""
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


def remaining() -> float | None:
    """Seconds left before the current request's deadline (may be negative), or None: no deadline."""
    record = _current.get()
    if record is None or record.deadline is None:
        return None
    return record.deadline - time.perf_counter()


def note_error(kind: str) -> None:
    """The current request is answered with error ``kind`` (its log line and metrics say so); the first wins."""
    record = _current.get()
    if record is not None and record.error is None:
        record.error = kind


@contextmanager
def stage(name: str) -> Iterator[StageRecord | None]:
    """Time a pipeline stage into the current request (no-op outside one, e.g. the CLI)."""
    record = _current.get()
    if record is None:
        yield None
        return
    started = time.perf_counter()
    found = record.stage(name)
    try:
        yield found
    finally:
        found.duration_ms += (time.perf_counter() - started) * 1000


__all__ = [
    "RequestRecord",
    "StageRecord",
    "current",
    "current_request_id",
    "new_request_id",
    "note_error",
    "remaining",
    "request",
    "stage",
]
