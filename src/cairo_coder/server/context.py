"""Request ids and the one log line per request.

:class:`RequestContext` is the outermost middleware: every HTTP request and WebSocket connection gets an id (the
incoming ``X-Request-ID`` when it is sane, else a new one), returned in the ``X-Request-ID`` response header and
carried by every log line written while it runs (observe.py keeps it in a context variable). When the request
ends, :func:`log_request` writes its line: route, status, agent, mode, duration in total and per stage, tokens
and model per stage, documents retrieved. No user text (that is DEBUG detail, logged by the stages).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairo_coder import metrics, observe, tracing

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


def _headers(scope: Scope) -> dict[str, str]:
    return {bytes(k).decode("latin-1"): bytes(v).decode("latin-1") for k, v in scope.get("headers", ())}


def incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return bytes(value).decode("latin-1")
    return None


class RequestContext:
    """Gives each request its id and record, answers the id in ``X-Request-ID``, logs the request's line."""

    def __init__(self, app: ASGIApp, metrics_enabled: bool = True) -> None:
        self.app = app
        self.metrics_enabled = metrics_enabled

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

        with observe.request(record), self._span(scope) as span:
            record.trace_id = tracing.trace_id(span)
            try:
                await self.app(scope, receive, with_id)
            finally:
                route = getattr(scope.get("route"), "path", None) or "other"  # the template: bounded
                if span is not None:
                    method = scope.get("method", "WS")
                    span.update_name(f"{method} {route}")
                    if (http_status or 0) >= 500 or record.status == "error":
                        tracing.mark_error(span, record.error or f"HTTP {http_status}")
                    tracing.set_attributes(
                        span,
                        {
                            "http.route": route,
                            "http.response.status_code": http_status,
                            "cairo_coder.agent": record.agent,
                            "cairo_coder.mode": record.mode,
                            "cairo_coder.status": record.status,
                            "cairo_coder.error": record.error,
                            "cairo_coder.documents": record.documents,
                        },
                    )
                if scope["type"] == "http":
                    status = http_status if http_status is not None else 499
                    if self.metrics_enabled:
                        metrics.record_http(route, scope.get("method", ""), status, record.elapsed_ms() / 1000)
                    quiet = record.route in QUIET_PATHS and (http_status or 500) < 400
                    log_request(
                        record,
                        logging.DEBUG if quiet else logging.INFO,
                        method=scope.get("method", ""),
                        http_status=http_status if http_status is not None else 499,  # 499: the client left
                    )

    @staticmethod
    def _span(scope: Scope) -> AbstractContextManager[Any]:
        """The request's span (a child of the caller's W3C ``traceparent`` when one came), or a no-op."""
        if not tracing.enabled():
            return nullcontext()
        parent = tracing.incoming_context(_headers(scope))
        return tracing.span(
            f"{scope.get('method', 'WS')} {scope.get('path', '')}",
            {
                "http.request.method": scope.get("method"),
                "url.path": scope.get("path"),
                "network.protocol.name": scope["type"],
            },
            parent=parent,
        )
