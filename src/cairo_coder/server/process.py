"""The agent process interface: ``POST /agents/process`` (NDJSON event stream) and ``/agents/process/ws``.

Events are ``{"type": "sources" | "response" | "end" | "error", "data": ...}``: the sources, the answer in
pieces, then ``end`` (with the usage) or one ``error`` (``{"type", "message", "status"}``) and nothing after it.
Over the WebSocket each client message is one request (``{"query", "chat_history", "agent_id", "mcp_mode",
"include_content", "id"}``) and its events carry the request's ``id``. Several requests may be in flight on one
connection (``server.ws_max_in_flight``), told apart by their ids (unique among those in flight; at most one
without an id); ``{"type": "cancel", "id": ...}`` stops one, ``{"type": "cancel"}`` every request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from cairo_coder import observe, tracing
from cairo_coder.events import End, ErrorEvent, Final, Sources, Text, wire_data
from cairo_coder.server.answering import Question, answer_events, check_agent, check_limits, stream_with_slot
from cairo_coder.server.context import log_request
from cairo_coder.server.deps import Svc, get_services, user_hash
from cairo_coder.server.errors import APIError, error_responses, from_exception
from cairo_coder.server.schemas import ProcessRequest
from cairo_coder.server.state import Services

router = APIRouter(tags=["agents"])
NDJSON_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        "description": "One JSON event per line: sources, response*, then end or error",
    }
}


def process_question(services: Services, body: ProcessRequest, headers: Any) -> Question:
    agent_id = body.agent_id or services.factory.default_agent_id
    check_agent(services, agent_id, body.mcp_mode)
    check_limits(
        services,
        [("query", body.query)] + [(f"chat_history.{i}.content", m.content) for i, m in enumerate(body.chat_history)],
        "chat_history",
    )
    if not body.query.strip():
        raise APIError(422, "the query is empty", code="empty_question", param="query")
    history = body.history()[-services.settings.pipeline.max_history :]
    return Question(
        agent_id=agent_id,
        query=body.query.strip(),
        history=history,
        mcp_mode=body.mcp_mode,
        conversation_id=headers.get("x-conversation-id"),
        user_hash=user_hash(services, headers),
    )


def error_data(kind: str, message: str, status: int, retry_after: float | None = None) -> dict[str, Any]:
    """The process interface's error event data."""
    data: dict[str, Any] = {"type": kind, "message": message, "status": status}
    if retry_after is not None:
        data["retry_after"] = retry_after
    return data


async def process_events(
    services: Services, question: Question, include_content: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """The process-interface events: sources, response*, then end (usage and finish_reason) or error.

    The first event also carries ``request_id`` (the id of the X-Request-ID header and of the server's logs).
    With ``include_content`` each source also has its text (``content``)."""
    request_id = observe.current_request_id()
    async for event in _process_events(services, question, include_content):
        if request_id is not None:
            event["request_id"], request_id = request_id, None  # the first event only
        yield event


async def _process_events(
    services: Services, question: Question, include_content: bool
) -> AsyncIterator[dict[str, Any]]:
    usage: dict[str, Any] | None = None
    finish_reason = "stop"
    async for event in answer_events(services, question):
        match event:
            case Sources() if include_content:
                sources = wire_data(event)
                for source, content in zip(sources, event.contents, strict=False):
                    source["content"] = content
                yield {"type": "sources", "data": sources}
            case Sources() | Text():
                yield {"type": event.type, "data": wire_data(event)}
            case Final():  # folded into "end"
                usage = event.usage.model_dump()
                finish_reason = event.finish_reason or "stop"
            case End():
                # finish_reason "length": the answer stopped at the token limit (incomplete), as OpenAI reports it
                yield {"type": "end", "data": {"usage": usage, "finish_reason": finish_reason}}
            case ErrorEvent():
                data = error_data(event.kind, event.message, event.status, event.retry_after)
                yield {"type": "error", "data": data}


@router.post(
    "/agents/process",
    responses={**error_responses(400, 401, 404, 413, 422, 429, 503), **NDJSON_DOC},
    summary="Answer with a stream of JSON events (the agent process interface)",
)
async def process(request: Request, body: ProcessRequest, services: Svc) -> Any:
    question = process_question(services, body, request.headers)

    async def lines() -> AsyncIterator[str]:
        async for event in process_events(services, question, body.include_content):
            yield json.dumps(event, separators=(",", ":")) + "\n"

    return stream_with_slot(services, lines(), "application/x-ndjson", {"cache-control": "no-cache"})


@router.websocket("/agents/process/ws")
async def process_ws(websocket: WebSocket) -> None:
    services = get_services(websocket)
    await websocket.accept()
    connection = _Connection(websocket, services)
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            await connection.handle(frame.get("text"))
    except WebSocketDisconnect:
        pass
    finally:
        await connection.cancel_all()  # the client left: stop generating for it


def _error(kind: str, message: str, status: int, request_id: Any = None) -> dict[str, Any]:
    return {"type": "error", "data": error_data(kind, message, status), "id": request_id}


class _Connection:
    """One WebSocket connection's requests in flight, by id (None: the one request sent without an id).

    Events of concurrent requests interleave on the socket; a lock keeps each frame whole and in order."""

    def __init__(self, websocket: WebSocket, services: Services) -> None:
        self.websocket = websocket
        self.services = services
        self.in_flight: dict[Any, asyncio.Task[None]] = {}
        self.send_lock = asyncio.Lock()
        self.pending_sends: set[asyncio.Future[None]] = set()

    async def send(self, event: dict[str, Any]) -> None:
        async with self.send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.websocket.send_text(json.dumps(event, separators=(",", ":")))

    async def handle(self, raw: str | None) -> None:
        if raw is None:  # a binary frame: this protocol is JSON text, say so and keep the connection
            message = "binary frames are not supported: send each request as a JSON text frame"
            await self.send(_error("unsupported_frame", message, 400))
            return
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("a message must be a JSON object")
        except ValueError as exc:
            await self.send(_error("invalid_json", f"not a JSON object: {exc}", 400))
            return
        request_id = message.get("id")
        if isinstance(request_id, (dict, list)):
            await self.send(_error("invalid_request", "id: must be a string, a number or null", 400))
            return
        if message.get("type") == "cancel":
            self.cancel(request_id if "id" in message else ...)
            return
        if (refusal := self._refusal(request_id)) is not None:
            await self.send(refusal)
            return
        try:
            body = ProcessRequest.model_validate(message)
            question = process_question(self.services, body, self.websocket.headers)
            self.services.limiter.acquire()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            await self.send(_error("invalid_request", f"{where}: {first['msg']}", 400, request_id))
            return
        except Exception as exc:
            api = from_exception(exc)
            await self.send(_error(api.code or "invalid_request", api.message, api.status, request_id))
            return
        started: list[bool] = []
        task = asyncio.create_task(self.run(question, request_id, body.include_content, started))
        self.in_flight[request_id] = task

        def done(_: asyncio.Task[None]) -> None:
            # Released when the task ends, however it ends (even cancelled before it ever ran).
            self.services.limiter.release()
            if self.in_flight.get(request_id) is task:
                del self.in_flight[request_id]
            if not started:  # cancelled before it ran: its end is still owed to the client
                end = asyncio.ensure_future(self.send({"type": "end", "data": {"cancelled": True}, "id": request_id}))
                self.pending_sends.add(end)
                end.add_done_callback(self.pending_sends.discard)

        task.add_done_callback(done)

    def _refusal(self, request_id: Any) -> dict[str, Any] | None:
        if request_id in self.in_flight:
            what = "a request without an id" if request_id is None else f"a request with the id {request_id!r}"
            return _error(
                "busy",
                f"{what} is already in flight on this connection: give each concurrent request its own id, "
                'or wait for its end, or send {"type": "cancel", "id": ...}',
                409,
                request_id,
            )
        limit = self.services.settings.server.ws_max_in_flight
        if len(self.in_flight) >= limit:
            return _error(
                "busy",
                f"{limit} requests are already in flight on this connection (server.ws_max_in_flight): wait for "
                "one to end or open another connection",
                409,
                request_id,
            )
        return None

    async def run(self, question: Question, request_id: Any, include_content: bool, started: list[bool]) -> None:
        # Each message is a request of its own: its own id (in its first event) and its own log line.
        started.append(True)
        record = observe.RequestRecord(observe.new_request_id(), route="/agents/process/ws")
        with observe.request(record), tracing.span("WS message /agents/process/ws") as span:
            record.trace_id = tracing.trace_id(span)
            try:
                async for event in process_events(self.services, question, include_content):
                    await self.send({**event, "id": request_id})
            except asyncio.CancelledError:
                await self.send({"type": "end", "data": {"cancelled": True}, "id": request_id})
                raise
            finally:
                tracing.set_attributes(
                    span,
                    {
                        "cairo_coder.agent": record.agent,
                        "cairo_coder.mode": record.mode,
                        "cairo_coder.status": record.status,
                        "cairo_coder.error": record.error,
                        "cairo_coder.documents": record.documents,
                    },
                )
                if record.status == "error":
                    tracing.mark_error(span, record.error or "error")
                log_request(record, method="WS")

    def cancel(self, request_id: Any) -> None:
        """Cancel the request ``request_id``, or every request in flight when it is ``...`` (no id given);
        an id that is not in flight (already ended) is ignored: the cancel crossed the request's end."""
        for key, task in list(self.in_flight.items()):
            if request_id is ... or key == request_id:
                task.cancel()

    async def cancel_all(self) -> None:
        tasks = list(self.in_flight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
