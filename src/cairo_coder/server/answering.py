"""Running one question through an agent for any transport: limits, cancellation and query insights.

Every transport (chat completions, agent process, WebSocket, MCP) goes through :func:`answer_events`, so each
answered request is recorded once, with its status (``ok``, ``error`` or ``cancelled`` when the client left).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cairo_coder import metrics, observe
from cairo_coder.errors import ClientDisconnected
from cairo_coder.events import Accumulator, Sources, StreamEvent, Text, source_dicts
from cairo_coder.pipeline import GenerationOptions
from cairo_coder.sanitize import clean_text
from cairo_coder.server.errors import APIError, from_error
from cairo_coder.server.state import Services
from cairo_coder.store.insights import InsightEntry
from cairo_coder.types import Message

T = TypeVar("T")


@dataclass
class Question:
    agent_id: str
    query: str
    history: list[Message] = field(default_factory=list)
    mcp_mode: bool = False
    options: GenerationOptions = field(default_factory=GenerationOptions)
    conversation_id: str | None = None
    user_hash: str | None = None

    def __post_init__(self) -> None:
        # Client text is made storable and encodable once, here, for every transport (see sanitize.py).
        self.query = clean_text(self.query)
        self.history = [m.model_copy(update={"content": clean_text(m.content)}) for m in self.history]
        if self.conversation_id is not None:
            self.conversation_id = clean_text(self.conversation_id)


def check_agent(services: Services, agent_id: str, mcp_mode: bool = True) -> None:
    """404 for an unknown agent; 503 before anything is streamed when an answer needs an LLM that is missing."""
    agent = services.factory.get_config(agent_id)  # UnknownAgentError -> 404
    if not mcp_mode:
        services.router.lm("generation", agent)  # LLMNotConfiguredError -> 503 naming the settings to provide


async def answer_events(services: Services, question: Question) -> AsyncIterator[StreamEvent]:
    """The pipeline's events for ``question``; records the outcome in query insights when it ends."""
    pipeline = services.factory.create_agent_by_id(question.agent_id)
    started = time.perf_counter()
    seen = Accumulator()
    record = observe.current()
    if record is not None:
        record.agent, record.mode = question.agent_id, "mcp" if question.mcp_mode else "answer"
        record.deadline = record.started + services.settings.llm.request_deadline
    try:
        async for event in pipeline.stream(
            question.query, question.history, mcp_mode=question.mcp_mode, options=question.options
        ):
            seen.add(event)
            if record is not None:
                if isinstance(event, Sources):
                    record.documents = len(event.sources)
                elif isinstance(event, Text) and record.first_token_ms is None:
                    record.first_token_ms = record.elapsed_ms()
            yield event
    finally:
        if record is not None:
            record.status = seen.status
            record.error = seen.error.kind if seen.error is not None else None
            if services.settings.server.metrics:
                metrics.record_request(record, services.settings.agents)
        if services.insights is not None:
            services.insights.record(
                InsightEntry(
                    agent_id=question.agent_id,
                    query=question.query,
                    chat_history=[m.model_dump(mode="json") for m in question.history],
                    answer=seen.streamed or None,
                    sources=source_dicts(seen.sources),
                    usage=seen.usage.model_dump() if seen.final is not None else {},
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    conversation_id=question.conversation_id,
                    user_hash=question.user_hash,
                    mcp_mode=question.mcp_mode,
                    status=seen.status,
                    error=str(seen.error) if seen.error is not None else None,
                )
            )


async def answer(services: Services, question: Question) -> Accumulator:
    """The whole answer; an error event becomes the matching :class:`APIError`."""
    result = Accumulator()
    async for event in answer_events(services, question):
        result.add(event)
        if result.error is not None:
            raise from_error(result.error)
    return result


def check_limits(services: Services, texts: list[tuple[str, str]], param: str) -> None:
    """422 when a request has more messages, or longer ones, than the server's limits allow.

    ``texts``: each message as (its parameter path, e.g. ``messages.2.content``, its text), so that the error
    names the offending one; ``param`` names the list as a whole.
    """
    limits = services.settings.server
    reject_if(
        len(texts) > limits.max_messages,
        422,
        f"too many messages: {len(texts)} (limit {limits.max_messages})",
        "too_many_messages",
        param,
    )
    for name, text in texts:
        reject_if(
            len(text) > limits.max_message_chars,
            422,
            f"{name} is {len(text)} characters long (limit {limits.max_message_chars})",
            "message_too_long",
            name,
        )


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` but cancel it when the client disconnects (no LLM tokens are spent for nobody)."""
    task: asyncio.Future[Any] = asyncio.ensure_future(work())
    watcher: asyncio.Future[Any] = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        result: T = task.result()
        return result
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnected()


class ManagedStream(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends: finished, failed or client gone (even
    before its generator started, when the generator's own ``finally`` would never run)."""

    def __init__(
        self,
        content: AsyncIterator[str],
        *,
        on_close: Callable[[], None],
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._on_close = on_close
        self._closed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._closed:
                self._closed = True
                self._on_close()


def stream_with_slot(
    services: Services, body: AsyncIterator[str], media_type: str, headers: dict[str, str] | None = None
) -> ManagedStream:
    """A concurrency slot held for the whole life of a stream (taken now: 429 before any byte is sent)."""
    services.limiter.acquire()
    return ManagedStream(body, on_close=services.limiter.release, media_type=media_type, headers=headers)


def reject_if(condition: bool, status: int, message: str, code: str, param: str | None = None) -> None:
    if condition:
        raise APIError(status, message, code=code, param=param)
