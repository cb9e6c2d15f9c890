"""The embedded PostgreSQL + pgvector server from the ``pgserver`` package.

With no DATABASE_URL, cairo-coder runs its own PostgreSQL in a local data directory: started on first use,
reused by later runs (and by concurrent processes on the same directory), stopped when the last process using
it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from cairo_coder.store.errors import EmbeddedServerError

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A handle on a pgserver instance in ``data_dir``; ``uri`` is a libpq URI over its Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        try:
            with warnings.catch_warnings():
                # pgserver puts its lock file in the user's runtime directory; where XDG_RUNTIME_DIR is unset
                # (containers, CI, sudo) platformdirs falls back to /tmp/runtime-<uid>, which works, and warns.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR is not set")
                import pgserver
        except ImportError as exc:  # pragma: no cover - pgserver is a core dependency
            raise EmbeddedServerError(
                "the embedded PostgreSQL needs the 'pgserver' package (pip install pgserver), "
                "or set DATABASE_URL to use your own PostgreSQL server"
            ) from exc
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
            uri: str = self._server.get_uri()
        except Exception as exc:
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL in {self.data_dir}: {exc}. "
                "Check that the directory is writable and not used by another PostgreSQL version, "
                "or set database.data_dir / DATABASE_URL."
            ) from exc
        logger.info("embedded PostgreSQL running in %s", self.data_dir)
        return uri

    @property
    def uri(self) -> str:
        if self._server is None:
            return self.start()
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Release this process's handle; the server stops when no process uses it any more."""
        if self._server is not None:
            try:
                self._server.cleanup()
            finally:
                self._server = None
