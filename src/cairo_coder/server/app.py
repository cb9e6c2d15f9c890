"""The FastAPI application factory. Nothing connects at import: the lifespan opens the store, builds the
agents' programs, starts the insights writer and the MCP session manager, and closes them all on shutdown."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from mcp.server.transport_security import TransportSecuritySettings
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from cairo_coder import __version__, tracing
from cairo_coder.agents import AgentFactory
from cairo_coder.config import ServerSettings, Settings, load_settings
from cairo_coder.embeddings import Embedder, create_embedder
from cairo_coder.llm import LLMRouter
from cairo_coder.logs import setup_logging
from cairo_coder.programs.suggestions import SuggestionsProgram
from cairo_coder.server import chat, extras, info, page, process
from cairo_coder.server.context import RequestContext
from cairo_coder.server.errors import APIError, http_error, install_error_handlers
from cairo_coder.server.mcp_server import build_mcp_server
from cairo_coder.server.middleware import APIKeyAuth, BodySizeLimit, ErrorBoundary, send_error
from cairo_coder.server.protocol import STATE_KEY as READ_TIMEOUT_KEY
from cairo_coder.server.security import LOOPBACK_HOSTS, HostOriginGuard
from cairo_coder.server.state import ConcurrencyLimiter, Services
from cairo_coder.store import DocumentStore
from cairo_coder.store.insights import start_recorder
from cairo_coder.tokens import count_tokens

logger = logging.getLogger(__name__)

DESCRIPTION = """Cairo and Starknet answers grounded in the official documentation, with cited sources.

* OpenAI-compatible chat completions (`/v1/chat/completions`, `/v1/agents/{agent_id}/chat/completions`),
  streaming as Server-Sent Events; header `x-mcp-mode: true` returns the documentation instead of an answer.
* The agent process interface (`/agents/process`, WebSocket `/agents/process/ws`).
* An MCP server at `/mcp` (streamable HTTP) with `search_cairo_docs`, `get_cairo_doc_page`, `ask_cairo_coder`.
"""


async def open_services(
    settings: Settings, *, embedder: Embedder | None = None, environ: Mapping[str, str] | None = None
) -> Services:
    """Everything a request needs, opened once. ``embedder``/``environ`` are injectable for tests."""
    embedder = embedder or create_embedder(settings.embeddings, settings.llm)
    store = await DocumentStore.open(settings.database, embedder, settings.search)
    try:
        router = LLMRouter(settings.llm, environ)
        factory = AgentFactory(settings, store, embedder, router)
        if router.is_configured(factory.get_config(factory.default_agent_id)):
            importlib.import_module("litellm")  # seconds on first import: now, not in the first request
        for agent_id in factory.agent_ids():
            factory.programs(agent_id)  # bad templates or optimized programs fail at start, not per request
        recorder = None
        salt = settings.server.insights_salt
        if settings.server.insights:
            recorder, salt = await start_recorder(store, salt, settings.server.insights_queue_size)
    except BaseException:
        await store.close()
        raise
    return Services(
        settings=settings,
        store=store,
        factory=factory,
        router=router,
        limiter=ConcurrencyLimiter(settings.server.max_concurrent_requests),
        suggestions=SuggestionsProgram(),
        insights=recorder,
        salt=salt,
    )


async def close_services(services: Services) -> None:
    try:
        if services.insights is not None:
            await services.insights.aclose()
    finally:
        await services.store.close()


async def warm_up(services: Services) -> None:
    """Load what the first requests would otherwise load (the embedding model, the tokenizer) and run one search,
    so that ``/ready`` means able: before this, 32 requests right after a start took a median 24 s. (LiteLLM is
    imported before the server accepts connections, see :func:`open_services`: imports are not thread-safe.)"""
    started = time.perf_counter()
    try:
        await services.store.search("warm up: storage variables", k=1, mode=services.settings.search.mode)
        await asyncio.to_thread(count_tokens, "warm up")
    except Exception as exc:  # a failed warm-up is not fatal: /ready reports the database, requests retry
        logger.warning("warm-up failed (%s: %s); the first requests will be slower", type(exc).__name__, exc)
    finally:
        services.warm = True
        logger.info("warmed up in %.1f s", time.perf_counter() - started)


def mcp_transport_security(server: ServerSettings) -> TransportSecuritySettings | None:
    """DNS-rebinding protection of ``/mcp``: the MCP SDK's loopback default, widened by ``server.allowed_hosts``.

    Behind a reverse proxy the Host header is the public name, which the SDK's loopback-only list rejects (421);
    listing that name turns protection on (for any bind address) with it allowed. None = the SDK's default.
    """
    if not server.allowed_hosts:
        return None
    hosts = [
        pattern
        for host in (*LOOPBACK_HOSTS, *server.allowed_hosts)
        for pattern in ((host,) if host.endswith(":*") else (host, f"{host}:*"))
    ]
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins + list(server.cors_origins)
    )


class _MCPEndpoint:
    """Forwards ``/mcp`` to the MCP streamable-HTTP app that the lifespan created."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mcp_app = getattr(self.app.state, "mcp_app", None)
        if mcp_app is None:
            await send_error(send, APIError(503, "the MCP server is not running", code="not_ready"))
            return
        if scope.get("method") != "POST":
            # Stateless: no server-initiated stream (GET would hold an SSE stream open forever) and no session
            # to delete. The MCP spec's answer for both is 405.
            await send_error(
                send,
                APIError(
                    405,
                    "the MCP endpoint is stateless: send JSON-RPC with POST",
                    code="method_not_allowed",
                    headers={"allow": "POST"},
                ),
            )
            return
        # Read the body here (within the size limit and read timeout of BodySizeLimit), so that an oversize or
        # stalled body gets our JSON error rather than the SDK's plain text.
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except HTTPException as exc:
            await send_error(send, http_error(exc))
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await mcp_app({**scope, "path": "/mcp"}, replay, send)


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    environ: Mapping[str, str] | None = None,
    configure_logging: bool = False,
) -> FastAPI:
    """The API server. ``settings`` default to the layered configuration (cairo-coder.toml + environment).

    ``configure_logging``: install the log setup of ``settings.log`` and start tracing when the ``OTEL_*``
    variables ask for it (what `serve` does, in each worker process); embedding applications and tests keep
    their own.
    """
    settings = settings or load_settings()
    tracing_started = False
    if configure_logging:
        setup_logging(settings.log.level, settings.log.format, secrets=settings.secrets())
        tracing_started = tracing.configure(os.environ if environ is None else environ)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        services = await open_services(settings, embedder=embedder, environ=environ)
        try:
            mcp_server = build_mcp_server(lambda: services)
            app.state.mcp_app = mcp_server.streamable_http_app(
                streamable_http_path="/mcp",
                stateless_http=True,
                json_response=True,
                host=settings.server.host,
                max_request_body_size=settings.server.max_body_bytes,
                transport_security=mcp_transport_security(settings.server),
            )
            async with mcp_server.session_manager.run():
                app.state.services = services
                warming = asyncio.create_task(warm_up(services), name="warm-up")
                try:
                    yield {READ_TIMEOUT_KEY: settings.server.read_timeout}  # for protocol.HeaderTimeoutProtocol
                finally:
                    warming.cancel()
        finally:
            app.state.services = None
            app.state.mcp_app = None
            await close_services(services)
            if tracing_started:
                tracing.shutdown()

    app = FastAPI(title="cairo-coder", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.services = None
    install_error_handlers(app)
    for module in (info, chat, process, extras, page):
        app.include_router(module.router)
    endpoint: Any = _MCPEndpoint(app)
    for path in ("/mcp", "/mcp/"):
        app.add_route(path, endpoint, methods=["GET", "HEAD", "POST", "DELETE"], include_in_schema=False)
    server = settings.server
    # Last added runs first: Host/Origin checks -> CORS (preflights need no key) -> API keys -> the error
    # boundary -> body limits -> routes.
    app.add_middleware(BodySizeLimit, limit=server.max_body_bytes, read_timeout=server.read_timeout)
    app.add_middleware(ErrorBoundary)
    app.add_middleware(APIKeyAuth, keys=server.api_keys, admin_key=server.admin_key)
    if server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["mcp-session-id"],
        )
    app.add_middleware(HostOriginGuard, server=server)
    app.add_middleware(
        RequestContext, metrics_enabled=server.metrics
    )  # outermost: even a refused request has an id and a log line
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): configuration from CAIRO_CODER_CONFIG + environment."""
    return create_app(configure_logging=True)
