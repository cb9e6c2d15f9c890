"""Request ids and the one log line per request.

:class:`RequestContext` is the outermost middleware: every HTTP request and WebSocket connection gets an id (the
incoming ``X-Request-ID`` when it is sane, else a new one), returned in the ``X-Request-ID`` response header and
carried by every log line written while it runs (observe.py keeps it in a context variable). When the request
ends, :func:`log_request` writes its line: route, status, agent, mode, duration in total and per stage, tokens
and model per stage, documents retrieved. No user text (that is DEBUG detail, logged by the stages).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairo_coder import metrics, observe

logger = logging.getLogger("cairo_coder.request")
HEADER = b"x-request-id"
# Probes and scrapes: logged at DEBUG (every few seconds from an orchestrator would bury the requests).
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


def log_request(record: observe.RequestRecord, level: int = logging.INFO, **extra: Any) -> None:
    fields = {**extra, **record.summary()}
    status = fields.get("http_status", fields.get("status", ""))
    logger.log(
        level,
        "%s %s %s %.0f ms",
        extra.get("method", "WS"),
        record.route,
        status,
        fields["duration_ms"],
        extra={"fields": fields, "request_id": record.request_id},
    )


def incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return bytes(value).decode("latin-1")
    return None


class RequestContext:
    """Gives each request its id and record, answers the id in ``X-Request-ID``, logs the request's line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        record = observe.RequestRecord(observe.new_request_id(incoming_id(scope)), route=scope.get("path", ""))
        header = (HEADER, record.request_id.encode())
        http_status: int | None = None

        async def with_id(message: Message) -> None:
            nonlocal http_status
            if message["type"] == "http.response.start":
                http_status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif message["type"] == "websocket.accept":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        with observe.request(record):
            try:
                await self.app(scope, receive, with_id)
            finally:
                if scope["type"] == "http":
                    route = getattr(scope.get("route"), "path", None) or "other"  # the template: bounded
                    status = http_status if http_status is not None else 499
                    metrics.record_http(route, scope.get("method", ""), status, record.elapsed_ms() / 1000)
                    quiet = record.route in QUIET_PATHS and (http_status or 500) < 400
                    log_request(
                        record,
                        logging.DEBUG if quiet else logging.INFO,
                        method=scope.get("method", ""),
                        http_status=http_status if http_status is not None else 499,  # 499: the client left
                    )
