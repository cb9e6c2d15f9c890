"""uvicorn's HTTP protocol with a deadline on request headers.

uvicorn closes idle keep-alive connections, but a client that sends half a request line or half its headers
keeps its connection (and a file descriptor) forever: a few thousand such clients exhaust the server
(slowloris). This protocol closes a connection whose request headers are not complete ``server.read_timeout``
seconds after the request began (or after the connection opened). Body reads have their own deadline
(middleware.BodySizeLimit). The timeout comes from the lifespan state (``app.py``), so that every worker process
of ``serve --workers N`` reads it from its own settings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

STATE_KEY = "cairo_coder_read_timeout"
DEFAULT_READ_TIMEOUT = 30.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None

    def _timeout(self) -> float:
        state: Any = getattr(self, "app_state", None) or {}
        return float(state.get(STATE_KEY, DEFAULT_READ_TIMEOUT))

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._timeout(), self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            logger.info("closed a connection whose request headers did not arrive within %.0f s", self._timeout())
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
