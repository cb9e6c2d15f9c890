"""Pure ASGI middleware: the error boundary, request body limits (size, read timeout) and optional API keys
(HTTP and WebSocket alike)."""

from __future__ import annotations

import asyncio
import hmac
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairo_coder import observe
from cairo_coder.server.deps import bearer_token
from cairo_coder.server.errors import APIError, from_exception

PUBLIC_PATHS = frozenset(
    {"/", "/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
ADMIN_PREFIX = "/v1/insights"


async def send_error(send: Send, error: APIError, prefix: str = "http") -> None:
    """The error envelope as an ASGI answer; ``prefix`` "websocket.http" answers a refused WebSocket handshake."""
    observe.note_error(error.kind)
    body = json.dumps(error.payload()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": f"{prefix}.response.start", "status": error.status, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": body})


async def refuse(scope: Scope, send: Send, error: APIError) -> None:
    """Refuse a request before the app sees it: the error envelope with its status; for a WebSocket handshake
    the same HTTP answer when the server supports ASGI's denial response (uvicorn does), so that a client can
    tell a wrong API key (401) from a refused origin (403), else a close with 1008 (policy violation)."""
    if scope["type"] != "websocket":
        await send_error(send, error)
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
        return
    await send_error(send, error, prefix="websocket.http")


class ErrorBoundary:
    """Every exception a route lets out becomes the OpenAI envelope here, once: errors.as_error logs anything
    unexpected with its traceback, and the request's log line names the error kind (server/context.py).
    Starlette's own last-resort handler would re-raise each one to the server, which logs a traceback for every
    404 of an unknown agent: a client could flood the log. A WebSocket that fails before it was accepted is
    closed with 1011."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            error = from_exception(exc)  # the request's log line carries its kind (server/context.py)
            observe.note_error(error.kind)
            if started:
                return  # the response is under way: the connection closes, the client sees it cut
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011, "reason": error.message[:120]})
                return
            await send_error(send, error)


class BodySizeLimit:
    """413 for bodies over ``limit`` bytes: at once from Content-Length, or while a chunked body streams in; 408
    when a client stops sending its body for ``read_timeout`` seconds (a half-sent request holds no resources
    forever)."""

    def __init__(self, app: ASGIApp, limit: int, read_timeout: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than the limit of {self.limit} bytes (server.max_body_bytes)"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.limit
                except ValueError:
                    too_large = False
                if too_large:
                    await send_error(send, APIError(413, message, code="body_too_large"))
                    return
        received = 0
        complete = False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # after the body: waiting for a disconnect, no deadline
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.read_timeout:g} s (server.read_timeout)"
                ) from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                complete = not msg.get("more_body", False)
                if received > self.limit:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


class APIKeyAuth:
    """With keys configured, every non-public path needs one: ``Authorization: Bearer <key>`` or ``x-api-key``.
    The admin key opens the admin routes only (``/v1/insights``): it is not a client key."""

    def __init__(self, app: ASGIApp, keys: list[str], admin_key: str = "") -> None:
        self.app = app
        self.client_keys = [k.encode() for k in keys if k]
        self.admin_keys = [*self.client_keys, admin_key.encode()] if admin_key else self.client_keys
        self.enabled = any(k for k in keys)

    def _valid(self, scope: Scope) -> bool:
        presented: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-api-key":
                presented.append(value.strip())
            elif name == b"authorization" and (token := bearer_token(value.decode("latin-1"))):
                presented.append(token.encode("latin-1"))
            elif name == b"x-admin-key":
                presented.append(value.strip())
        keys = self.admin_keys if str(scope["path"]).startswith(ADMIN_PREFIX) else self.client_keys
        # compare_digest against every key: no timing hint of which prefix matched
        return any(hmac.compare_digest(p, k) for p in presented for k in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] not in ("http", "websocket")
            or scope["path"] in PUBLIC_PATHS
            or str(scope["path"]).startswith("/ui/")  # the chat page's assets (the page asks for a key itself)
            or self._valid(scope)
        ):
            await self.app(scope, receive, send)
            return
        await refuse(
            scope,
            send,
            APIError(
                401,
                "invalid or missing API key: send Authorization: Bearer <key> or x-api-key: <key>",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            ),
        )
