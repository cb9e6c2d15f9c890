"""Prometheus metrics (prometheus-client), served at ``/metrics``.

Names follow Prometheus conventions (``cairo_coder_`` prefix, base units, ``_total`` counters); every label has
bounded values: route templates (an unknown path is ``other``), declared agents, configured models and their
providers, error kinds of the error tree, search modes, registry sources. With ``serve --workers N`` the
workers write their samples to a shared directory (prometheus-client's multiprocess mode, switched on by
``PROMETHEUS_MULTIPROC_DIR`` before the workers start), so one scrape of any worker sees all of them.

The request metrics are taken from the request's record (observe.py) when it ends, in one place
(:func:`record_request`); the others where they happen (LLM calls, search, ingestion, the concurrency slots).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from cairo_coder.observe import RequestRecord

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
COUNT_BUCKETS = (0, 1, 2, 3, 5, 8, 10, 15, 20, 30, 50)

HTTP_REQUESTS = Counter(
    "cairo_coder_http_requests", "HTTP requests by route template, method and status.", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "cairo_coder_http_request_duration_seconds",
    "Time from a request's arrival to its last byte, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "cairo_coder_requests",
    "Answering requests (every transport) by agent, mode and outcome.",
    ["agent", "mode", "status"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "cairo_coder_time_to_first_token_seconds",
    "Time from a request's arrival to the first piece of its answer.",
    ["agent", "mode"],
    buckets=LATENCY_BUCKETS,
)
STAGE_DURATION = Histogram(
    "cairo_coder_stage_duration_seconds",
    "Duration of each pipeline stage.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
DOCUMENTS = Histogram(
    "cairo_coder_documents_retrieved", "Documents given to an answer (or returned in MCP mode).", buckets=COUNT_BUCKETS
)
LLM_TOKENS = Counter("cairo_coder_llm_tokens", "Language-model tokens by model and kind.", ["model", "kind"])
LLM_CALLS = Counter(
    "cairo_coder_llm_calls", "Language-model calls by provider and outcome (ok or error).", ["provider", "outcome"]
)
LLM_ERRORS = Counter(
    "cairo_coder_llm_errors", "Language-model failures by provider and error kind.", ["provider", "error"]
)
LLM_RETRIES = Counter("cairo_coder_llm_retries", "Language-model calls retried, by provider.", ["provider"])
IN_FLIGHT = Gauge(
    "cairo_coder_requests_in_flight", "Answering requests holding a concurrency slot.", multiprocess_mode="livesum"
)
DB_POOL_SIZE = Gauge(
    "cairo_coder_db_pool_connections", "Connections of the database pool.", ["state"], multiprocess_mode="livesum"
)
SEARCH_DURATION = Histogram(
    "cairo_coder_search_duration_seconds", "Store searches by mode.", ["mode"], buckets=FAST_BUCKETS
)
LLM_CIRCUIT_OPEN = Gauge(
    "cairo_coder_llm_circuit_open",
    "1 while the provider's circuit breaker is open (its calls paused after repeated failures), else 0.",
    ["provider"],
    multiprocess_mode="livemax",
)
DATABASE_UP = Gauge(
    "cairo_coder_database_up",
    "1 when the last database check of a scrape succeeded, 0 when PostgreSQL was unreachable.",
    multiprocess_mode="livemostrecent",
)
STORE_DOCUMENTS = Gauge(
    "cairo_coder_store_documents",
    "Documents (chunks) in the store, counted at each scrape.",
    multiprocess_mode="livemostrecent",
)
INGEST_PAGES = Counter(
    "cairo_coder_ingest_pages",
    "Pages ingested, by source and outcome (new, updated, unchanged, deleted, failed).",
    ["source", "outcome"],
)
INGEST_CHUNKS = Counter("cairo_coder_ingest_chunks", "Chunks embedded and written, by source.", ["source"])
INGEST_FAILURES = Counter(
    "cairo_coder_ingest_failures", "Sources whose ingestion failed or was skipped, by source.", ["source"]
)


def bounded(value: str | None, allowed: Collection[str], other: str = "other") -> str:
    """``value`` if it is one of ``allowed``, else ``other``: a label never takes a client's free text."""
    return value if value is not None and value in allowed else other


def provider_label(model: str | None) -> str:
    from cairo_coder.config import provider_of

    return provider_of(model) if model else "none"


def record_request(record: RequestRecord, agents: Collection[str]) -> None:
    """The metrics of an answering request that ended (any transport): outcome, stages, tokens, documents."""
    agent = bounded(record.agent, agents)
    mode = record.mode or "answer"
    REQUESTS.labels(agent, mode, record.status or "cancelled").inc()
    if record.first_token_ms is not None:
        TIME_TO_FIRST_TOKEN.labels(agent, mode).observe(record.first_token_ms / 1000)
    if record.documents is not None:
        DOCUMENTS.observe(record.documents)
    for name, stage in record.stages.items():
        STAGE_DURATION.labels(name).observe(stage.duration_ms / 1000)
        if stage.model:
            if stage.prompt_tokens:
                LLM_TOKENS.labels(stage.model, "prompt").inc(stage.prompt_tokens)
            if stage.completion_tokens:
                LLM_TOKENS.labels(stage.model, "completion").inc(stage.completion_tokens)


@contextmanager
def llm_call(model: str) -> Iterator[None]:
    """One LLM call: its outcome, and its error kind when it failed."""
    from cairo_coder.llm_errors import translate_error

    provider = provider_label(model)
    try:
        yield
    except Exception as exc:
        translated = translate_error(exc)
        LLM_CALLS.labels(provider, "error").inc()
        LLM_ERRORS.labels(provider, translated.kind if translated is not None else "other").inc()
        raise
    LLM_CALLS.labels(provider, "ok").inc()


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_DURATION.labels(route).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process, or of every worker in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_VARIABLE)
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
