"""Serving commands: ``serve`` (the HTTP API, ingesting on first start) and ``mcp`` (MCP over stdio)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated, Any

import typer

from cairo_coder.cli.common import _run, _settings, app, err
from cairo_coder.config import Settings
from cairo_coder.logs import setup_logging


async def _ingest_if_empty(settings: Settings) -> None:
    from cairo_coder.cli.common import _open_store
    from cairo_coder.cli.knowledge import _ingest, _print_summary

    async with await _open_store(settings) as store:
        documents = await store.count_documents()
    if documents:
        return
    err.print("[bold]The document store is empty: ingesting the documentation first (once).[/]", highlight=False)
    reports = await _ingest(settings, None, None, False, False, only_if_empty=True)
    if not reports:
        return  # another replica ingested it while this one waited
    _print_summary(reports)
    if not any(r.pages for r in reports):
        err.print(
            "[yellow]No documentation could be ingested; the server starts, but answers will have no "
            "sources. Set CAIRO_CODER_CORPUS to a local snapshot or go online, then run "
            "`cairo-coder ingest`.[/]",
            highlight=False,
        )


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: server.host, 127.0.0.1).", show_default=False)
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: server.port, 3001).", show_default=False)] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: server.workers, 1).", show_default=False)
    ] = None,
    ingest: Annotated[
        bool,
        typer.Option(
            "--ingest/--no-ingest",
            help="Ingest the documentation first when the store is empty (server.ingest_on_start).",
        ),
    ] = True,
) -> None:
    """Run the API server: OpenAI-compatible chat completions, the agent process interface, MCP at /mcp.

    With no options it runs on embedded defaults: an embedded PostgreSQL, local embeddings, and the
    documentation ingested on first start. Answers need an LLM (e.g. CAIRO_CODER_MODEL and its API key);
    search, MCP mode and the MCP tools work without one. API docs: http://HOST:PORT/docs. Examples:

      cairo-coder serve
      CAIRO_CODER_MODEL=openai/gpt-4o-mini OPENAI_API_KEY=sk-... cairo-coder serve --host 0.0.0.0 --workers 2
    """
    settings = _settings()
    server = settings.server.model_copy(
        update={k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    setup_logging(settings.log.level, settings.log.format, secrets=settings.secrets())
    if ingest and settings.server.ingest_on_start:
        _run(lambda: _ingest_if_empty(settings))
    import uvicorn

    from cairo_coder.server.protocol import HeaderTimeoutProtocol

    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "ws_max_size": server.max_body_bytes,
        "log_config": None,  # uvicorn's lines go through our handler (logs.py), in our format
        "log_level": settings.log.level.lower(),
        "access_log": False,  # our RequestContext writes one richer line per request
        "timeout_graceful_shutdown": 30,
        "proxy_headers": True,
        "http": HeaderTimeoutProtocol,  # half-sent requests are closed after server.read_timeout
    }
    err.print(
        f"[bold]cairo-coder[/] serving on http://{server.host}:{server.port} (API docs at /docs, MCP at /mcp)",
        highlight=False,
    )
    if server.workers == 1:
        from cairo_coder.server import create_app

        uvicorn.run(create_app(settings, configure_logging=True), **options)
        return
    # Several workers: uvicorn pickles its Config into each worker process, app factory included, so every worker
    # builds its app from these very settings (nothing is passed through os.environ, nothing is read twice).
    from functools import partial

    from uvicorn.supervisors import Multiprocess

    from cairo_coder.metrics import MULTIPROC_VARIABLE
    from cairo_coder.server import create_app

    factory = partial(create_app, settings, configure_logging=True)
    config = uvicorn.Config(factory, factory=True, workers=server.workers, **options)
    # prometheus-client's multiprocess mode, so that one scrape of any worker sees them all: its switch is this
    # variable, read by each worker when it starts (not a setting of ours; an operator's own directory is kept).
    own_dir = None if os.environ.get(MULTIPROC_VARIABLE) else tempfile.mkdtemp(prefix="cairo-coder-metrics-")
    if own_dir is not None:
        os.environ[MULTIPROC_VARIABLE] = own_dir
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


@app.command()
def mcp() -> None:
    """Serve the documentation tools over MCP stdio (for Claude Code, Cursor, Codex ...).

    Example: claude mcp add cairo-coder -- cairo-coder mcp. Tools: search_cairo_docs, get_cairo_doc_page, and
    ask_cairo_coder when an LLM is configured. Logs go to stderr; stdout carries the protocol only.
    """
    settings = _settings()
    # stdout carries the protocol: logs go to stderr, warnings only unless log.level is DEBUG.
    level = "DEBUG" if settings.log.level == "DEBUG" else "WARNING"
    setup_logging(level, settings.log.format, secrets=settings.secrets())

    async def run() -> None:
        from cairo_coder.server.app import close_services, open_services
        from cairo_coder.server.mcp_server import build_mcp_server

        services = await open_services(settings)
        try:
            await build_mcp_server(lambda: services).run_stdio_async()
        finally:
            await close_services(services)

    _run(run)
