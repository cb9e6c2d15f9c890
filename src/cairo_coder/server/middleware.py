"""Pure ASGI middleware: request body size limit and optional API keys (HTTP and WebSocket alike)."""

from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairo_coder.server.errors import APIError

PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


async def send_error(send: Send, error: APIError) -> None:
    body = json.dumps(error.payload()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for bodies over ``limit`` bytes: at once from Content-Length, or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

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

        async def limited() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


class APIKeyAuth:
    """With keys configured, every non-public path needs one: ``Authorization: Bearer <key>`` or ``x-api-key``."""

    def __init__(self, app: ASGIApp, keys: list[str], admin_key: str = "") -> None:
        self.app = app
        self.keys = [k.encode() for k in keys if k] + ([admin_key.encode()] if admin_key else [])
        self.enabled = any(k for k in keys)

    def _valid(self, scope: Scope) -> bool:
        presented: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-api-key":
                presented.append(value.strip())
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                presented.append(value[7:].strip())
        # compare_digest against every key: no timing hint of which prefix matched
        return any(hmac.compare_digest(p, k) for p in presented for k in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS \
                or self._valid(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid or missing API key"})
            return
        await send_error(send, APIError(
            401, "invalid or missing API key: send Authorization: Bearer <key> or x-api-key: <key>",
            code="invalid_api_key", headers={"www-authenticate": "Bearer"}))
