"""One log setup for the server and the CLI: JSON lines in production, readable text in a terminal.

``log.format``: "json", "text", or "auto" (text when stderr is a terminal, else JSON); ``log.level``. Every line
carries the current request's id (observe.py) when there is one. Secrets never reach a log: the configured keys
(API keys, the admin key, provider keys, the database password) and anything shaped like a bearer token or an
``sk-`` key are masked in every line, tracebacks included. User text is logged only at DEBUG (callers' rule).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from cairo_coder.observe import current_request_id

MASK = "***"
SECRET_SHAPES = re.compile(
    r"(?i)(?:(?<=bearer )|(?<=authorization: )|(?<=api[_-]key=)|(?<=x-api-key: ))[^\s\"',;]{6,}"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|(?<=://)([^:/@\s]+):([^@\s]+)@"
)
# Libraries whose INFO lines are noise for an operator (each request already gets one line of ours).
QUIET = {"LiteLLM": logging.WARNING, "litellm": logging.WARNING, "httpx": logging.WARNING, "uvicorn.access": 100}
HANDLER_NAME = "cairo-coder"


class Redactor:
    """Masks the configured secrets and secret-shaped strings in a line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return SECRET_SHAPES.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    if match.group(1) is not None:  # user:password@ in a URL: keep the user
        return f"{match.group(1)}:{MASK}@"
    return MASK


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, the record's ``fields``, exc."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO cairo_coder.server [1f3a…] message key=value ...`` for a terminal."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        request_id = getattr(record, "request_id", None)
        where = f" [{request_id[:12]}]" if request_id else ""
        extra = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in _fields(record).items())
        text = f"{when} {record.levelname} {record.name}{where} {record.getMessage()}" + (f" {extra}" if extra else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return self.redact(text)


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every record (also those of libraries logging inside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


def setup_logging(
    level: str = "INFO", fmt: str = "auto", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Install the one handler on the root logger (replacing an earlier one of ours); returns it."""
    stream = stream or sys.stderr
    redact = Redactor(secrets)
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter(redact) if use_json else TextFormatter(redact))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, root.level))
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines go through our handler, in our format
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


__all__ = ["JsonFormatter", "Redactor", "RequestIdFilter", "TextFormatter", "setup_logging"]
