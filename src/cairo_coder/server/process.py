"""The agent process interface: ``POST /agents/process`` (NDJSON event stream) and ``/agents/process/ws``.

Events are ``{"type": "sources" | "response" | "end" | "error", "data": ...}``: the sources, the answer in
pieces, then ``end`` (with the usage) or one ``error`` (``{"type", "message", "status"}``) and nothing after it.
Over the WebSocket each client message is one request (``{"query", "chat_history", "agent_id", "mcp_mode",
"id"}``), its events carry the request's ``id``, and ``{"type": "cancel"}`` stops the request in flight.
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


async def process_events(services: Services, question: Question) -> AsyncIterator[dict[str, Any]]:
    """The process-interface events: sources, response*, then end (usage and finish_reason) or error.

    The first event also carries ``request_id`` (the id of the X-Request-ID header and of the server's logs)."""
    request_id = observe.current_request_id()
    async for event in _process_events(services, question):
        if request_id is not None:
            event["request_id"], request_id = request_id, None  # the first event only
        yield event


async def _process_events(services: Services, question: Question) -> AsyncIterator[dict[str, Any]]:
    usage: dict[str, Any] | None = None
    finish_reason = "stop"
    async for event in answer_events(services, question):
        match event:
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
        async for event in process_events(services, question):
            yield json.dumps(event, separators=(",", ":")) + "\n"

    return stream_with_slot(services, lines(), "application/x-ndjson", {"cache-control": "no-cache"})


@router.websocket("/agents/process/ws")
async def process_ws(websocket: WebSocket) -> None:
    services = get_services(websocket)
    await websocket.accept()
    current: asyncio.Task[None] | None = None

    async def send(event: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.send_text(json.dumps(event, separators=(",", ":")))

    async def run(question: Question, request_id: Any) -> None:
        # Each message is a request of its own: its own id (in its first event) and its own log line.
        record = observe.RequestRecord(observe.new_request_id(), route="/agents/process/ws")
        with observe.request(record), tracing.span("WS message /agents/process/ws") as span:
            record.trace_id = tracing.trace_id(span)
            try:
                async for event in process_events(services, question):
                    await send({**event, "id": request_id})
            except asyncio.CancelledError:
                await send({"type": "end", "data": {"cancelled": True}, "id": request_id})
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

    def error(kind: str, message: str, status: int, request_id: Any = None) -> dict[str, Any]:
        return {"type": "error", "data": error_data(kind, message, status), "id": request_id}

    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(frame.get("code", 1000))
            raw = frame.get("text")
            if raw is None:  # a binary frame: this protocol is JSON text, say so and keep the connection
                await send(
                    error(
                        "unsupported_frame",
                        "binary frames are not supported: send each request as a JSON text frame",
                        400,
                    )
                )
                continue
            try:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ValueError("a message must be a JSON object")
            except ValueError as exc:
                await send(error("invalid_json", f"not a JSON object: {exc}", 400))
                continue
            request_id = message.get("id")
            if message.get("type") == "cancel":
                if current is not None and not current.done():
                    current.cancel()
                continue
            if current is not None and not current.done():
                await send(
                    error(
                        "busy",
                        "a request is already in flight on this connection; wait for its end "
                        'or send {"type": "cancel"}',
                        409,
                        request_id,
                    )
                )
                continue
            try:
                question = process_question(services, ProcessRequest.model_validate(message), websocket.headers)
                services.limiter.acquire()
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                await send(error("invalid_request", f"{where}: {first['msg']}", 400, request_id))
                continue
            except Exception as exc:
                api = from_exception(exc)
                await send(error(api.code or "invalid_request", api.message, api.status, request_id))
                continue
            current = asyncio.create_task(run(question, request_id))
            # Released when the task ends, however it ends (even cancelled before it ever ran).
            current.add_done_callback(lambda _: services.limiter.release())
    except WebSocketDisconnect:
        pass
    finally:
        if current is not None and not current.done():
            current.cancel()  # the client left: stop generating for it
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await current
