"""One exception tree for every failure cairo-coder raises on purpose, and the one place that maps any exception.

Each class carries a stable ``kind`` (the ``code`` of the OpenAI error envelope and the ``type`` of a stream's
``error`` event), the HTTP ``status`` it is answered with, and the CLI ``exit_code`` (1 failure, 2 usage or
configuration)::

    CairoCoderError                      internal_error            500  1
    ├── ConfigError                      invalid_configuration     503  2   config.py (names the key and origin)
    │   ├── TemplateError                invalid_configuration     503  2   programs/templates.py
    │   └── OptimizedProgramError        invalid_configuration     503  2   programs/loading.py
    ├── InvalidRequestError              invalid_request           400  2   (empty query, unknown source ...)
    │   ├── UnknownAgentError            unknown_agent             404  2   agents.py
    │   ├── DatasetError                 invalid_dataset           400  2   datasets.py (names file and line)
    │   └── OptimizeError                invalid_optimization      400  2   optimizing.py
    ├── LLMError                         llm_error                 503  1   llm_errors.py
    │   ├── LLMNotConfiguredError        llm_not_configured        503  1
    │   ├── LLMRateLimitError            llm_rate_limited          429  1
    │   ├── LLMUnavailableError          llm_unavailable           503  1
    │   │   └── LLMCircuitOpenError      llm_circuit_open          503  1   breaker.py (provider paused)
    │   ├── LLMAuthError                 llm_auth                  503  1
    │   ├── LLMRequestError              llm_bad_request           400  1
    │   ├── LLMOutputError               llm_bad_output            502  1
    │   └── LLMIncompleteError           llm_incomplete            502  1
    ├── EmbeddingError                   embedding_unavailable     503  1   embeddings.py
    │   └── EmbeddingConfigError         embedding_not_configured  503  1
    ├── StoreError                       database_error            503  1   store/errors.py
    │   ├── DatabaseUnavailableError     database_unavailable      503  1
    │   │   ├── PgvectorMissingError     database_unavailable      503  1
    │   │   └── EmbeddedServerError      database_unavailable      503  1
    │   ├── DatabaseAuthError            database_auth             503  1
    │   ├── EmbedderMismatchError        embedder_mismatch         503  1
    │   └── SchemaVersionError           database_error            503  1
    ├── IngestError                      invalid_page              422  1   ingest/ (a page is reported, skipped)
    │   ├── BadPageError                 invalid_page              422  1
    │   └── IncludeError                 invalid_page              422  1
    ├── SourceUnavailableError           source_unavailable        503  1   ingest/loader.py
    ├── ClientDisconnected               client_disconnected       499  1   server/answering.py
    └── APIError                         (its code)          (its own)  1   server/errors.py (HTTP-level answers)

Third-party exceptions are mapped by :func:`as_error`, once: DSPy and LiteLLM failures become the precise
``LLMError`` (llm_errors.translate_error), database driver failures ``DatabaseUnavailableError``; anything else is a
bug, answered ``internal_error`` with the traceback logged, never sent. The HTTP envelope
(server/errors.py), the process interface and stream ``error`` events (events.ErrorEvent) and the CLI's exit
codes (cli/common.py) all read what :func:`as_error` returns. tests/unit/test_errors.py fails when a kind has no
status or a third-party error that can reach the server is left unmapped.
"""

from __future__ import annotations

import logging
from typing import ClassVar

logger = logging.getLogger(__name__)


class CairoCoderError(Exception):
    """Root of every failure raised on purpose. ``kind``, ``status`` and ``exit_code`` are stable."""

    kind: str = "internal_error"
    status: int = 500
    exit_code: ClassVar[int] = 1
    retry_after: float | None = None  # seconds, when the cause said when to retry (a provider's Retry-After)


class ConfigError(CairoCoderError):
    """A configuration value is invalid; the message names the key, its origin and what was expected."""

    kind = "invalid_configuration"
    status = 503
    exit_code = 2


class InvalidRequestError(CairoCoderError):
    """The request itself is wrong (empty query, unknown source or agent ...); the message says how."""

    kind = "invalid_request"
    status = 400
    exit_code = 2


class IngestError(CairoCoderError):
    """One page of a source cannot be ingested; it is reported and skipped, the rest goes on."""

    kind = "invalid_page"
    status = 422


class SourceUnavailableError(CairoCoderError):
    """A source's documents cannot be found locally nor fetched."""

    kind = "source_unavailable"
    status = 503


class ClientDisconnected(CairoCoderError):
    """The HTTP client left before its answer was ready; the work for it was cancelled."""

    kind = "client_disconnected"
    status = 499


def as_error(exc: BaseException, *, log: bool = True) -> CairoCoderError:
    """Any exception as one of ours: the single mapping read by every transport and the CLI.

    Ours are returned as they are; language-model and database-driver failures become their precise type (the
    original stays the ``__cause__``); anything else is a bug: logged with its traceback, answered as
    ``internal_error`` naming only the exception's class (``log=False``: the caller shows the traceback itself).
    """
    if isinstance(exc, CairoCoderError):
        return exc
    # Imported here: llm.py and store/ import this module (their errors live in this tree).
    from cairo_coder.llm_errors import translate_error
    from cairo_coder.store.database import failure_reason, is_connection_error
    from cairo_coder.store.errors import DatabaseUnavailableError

    mapped: CairoCoderError | None = translate_error(exc) if isinstance(exc, Exception) else None
    if mapped is None and is_connection_error(exc):
        logger.warning("database connection failure outside a retried operation", exc_info=exc)
        mapped = DatabaseUnavailableError(f"the database is unreachable ({failure_reason(exc)}); retry shortly")
    if mapped is None:
        if log:
            logger.error("unexpected failure", exc_info=exc)
        mapped = CairoCoderError(f"internal error ({type(exc).__name__}); see the server log")
    if mapped is not exc and mapped.__cause__ is None:
        mapped.__cause__ = exc
    return mapped


def all_error_classes() -> list[type[CairoCoderError]]:
    """Every class of the tree, once its defining modules are imported (for documentation and tests)."""
    found: list[type[CairoCoderError]] = []
    pending: list[type[CairoCoderError]] = [CairoCoderError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


__all__ = [
    "CairoCoderError",
    "ClientDisconnected",
    "ConfigError",
    "IngestError",
    "InvalidRequestError",
    "SourceUnavailableError",
    "all_error_classes",
    "as_error",
]
