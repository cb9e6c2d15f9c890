"""A real uvicorn server on 127.0.0.1 (an ephemeral port) in a thread of its own, with its own event loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from cairo_coder.config import Settings
from cairo_coder.embeddings import Embedder
from cairo_coder.server import create_app
from cairo_coder.server.protocol import HeaderTimeoutProtocol


class LiveServer:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, embedder=embedder, environ={})
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            ws_max_size=settings.server.max_body_bytes,
            timeout_graceful_shutdown=5,
            http=HeaderTimeoutProtocol,
        )  # as `cairo-coder serve` runs it
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Any:
        return self.app.state.services

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
