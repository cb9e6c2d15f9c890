"""Who may talk to the server: the Host and Origin checks of every route and of the WebSocket handshake.

A local server with no API keys (the default) is reachable by any web page open in the user's browser: a page
can send it requests (its Origin is the page's) or rebind a DNS name to 127.0.0.1 (the Host is then that name).
Either would let any site spend the user's LLM key. So:

* Host: when the server is bound to loopback, or ``server.allowed_hosts`` names its public names, a request
  whose Host is not one of them is refused (421, like the MCP SDK's own check). Bound to every interface with
  no names configured, the Host cannot be known and is not checked (SECURITY.md).
* Origin (default deny): a request that carries an Origin (browsers always send it on cross-site requests and
  WebSocket handshakes) is refused (403) unless it is the server's own origin (the Origin's host equals the
  Host: the server's own page; or its name is one of ``server.allowed_hosts``) or listed in
  ``server.cors_origins``. Clients that are not browsers send no
  Origin and are not affected.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from cairo_coder.config import ServerSettings
from cairo_coder.server.errors import APIError
from cairo_coder.server.middleware import refuse

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
PROBE_PATHS = frozenset({"/health", "/ready"})


def host_name(value: str) -> str:
    """The host part of a Host header or allow-list entry, lower-case, without port (IPv6 keeps brackets)."""
    value = value.strip().lower()
    if value.endswith(":*"):
        value = value[:-2]
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_host_names(server: ServerSettings) -> frozenset[str] | None:
    """The Host names accepted, or None when the Host is not checked (see the module docstring)."""
    names = [host_name(h) for h in server.allowed_hosts]
    if "*" in names:
        return None
    bind = server.host.strip().lower()
    if bind in WILDCARD_BINDS and not names:
        return None
    own = [] if bind in WILDCARD_BINDS else [f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind]
    return frozenset((*LOOPBACK_HOSTS, *own, *names))


class HostOriginGuard:
    """Pure ASGI middleware applying the checks above to HTTP requests and WebSocket handshakes."""

    def __init__(self, app: ASGIApp, server: ServerSettings) -> None:
        self.app = app
        self.hosts = allowed_host_names(server)
        self.any_origin = "*" in server.cors_origins
        self.origins = frozenset(o.strip().rstrip("/").lower() for o in server.cors_origins)
        # Public names the operator declared (behind a proxy the Origin may differ from the forwarded Host in
        # scheme or port); loopback names are not among them: another local server's page is another site.
        self.own_names = frozenset(host_name(h) for h in server.allowed_hosts) - {"*", *LOOPBACK_HOSTS}

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        if origin == "null":  # sandboxed frames, file:// pages
            return False
        netloc = urlsplit(origin).netloc
        return (bool(host) and netloc == host.strip().lower()) or host_name(netloc) in self.own_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = origin = None
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
        error = None
        # Probes (a load balancer's or Kubernetes' health checks) come with the pod's address as Host; what these
        # two routes reveal (liveness, readiness, a document count) is no use to a rebinding page.
        probe = scope["path"] in PROBE_PATHS
        if self.hosts is not None and not probe and host_name(host or "") not in self.hosts:
            error = APIError(
                421,
                f"this server does not answer for host {host!r}: add it to server.allowed_hosts "
                "if it is the server's public name",
                code="invalid_host",
            )
        elif origin is not None and not self._origin_allowed(origin, host or ""):
            error = APIError(
                403,
                f"requests from web pages at {origin!r} are not allowed: add the origin to "
                "server.cors_origins to allow it",
                code="origin_not_allowed",
            )
        if error is None:
            await self.app(scope, receive, send)
            return
        logger.warning("refused a %s request: %s", scope["type"], error.message)
        await refuse(scope, send, error)
