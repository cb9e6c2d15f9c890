"""OpenTelemetry traces: a span for each request, pipeline stage, LLM call, embedding call and database statement
group, with the request id on every span.

Off unless the standard variables ask for it (:func:`configure`): ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``; ``none`` or unset: off) or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, which implies ``otlp``); ``OTEL_SDK_DISABLED=true`` wins over both. The
SDK itself reads the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, the
exporter's headers and timeouts). The OTLP exporter is the optional extra ``cairo-coder[otlp]``.

Off, :func:`span` costs one global read: no tracer, no context objects, nothing allocated per request. The
tracer provider is this module's own (not OpenTelemetry's global one), so that tests can install an in-memory
exporter and remove it again. Spans carry no user text: names, counts, models, tokens and the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cairo_coder import observe
from cairo_coder.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)
INSTRUMENTATION = "cairo_coder"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def exporter_name(environ: Mapping[str, str]) -> str | None:
    """The exporter the variables ask for (``otlp``, ``console``), or None: tracing off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name:
        first = name.split(",")[0].strip()
        return None if first == "none" else first
    return "otlp" if any(environ.get(v, "").strip() for v in ENDPOINT_VARIABLES) else None


def configure(environ: Mapping[str, str]) -> bool:
    """Start tracing when the ``OTEL_*`` variables ask for it (idempotent); True when spans are exported.

    Raises :class:`ConfigError` for an unknown exporter, or ``otlp`` without the ``otlp`` extra installed."""
    if _provider is not None:
        return True
    name = exporter_name(environ)
    if name is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if name == "console":
        exporter = ConsoleSpanExporter()
    elif name == "otlp":
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol != "http/protobuf":
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: cairo-coder exports OTLP over "
                "http/protobuf (port 4318 of a collector)"
            )
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT ask for OTLP traces, but the exporter is not "
                "installed: pip install 'cairo-coder[otlp]' (or unset the OTEL_* variables)"
            ) from exc
        exporter = OTLPSpanExporter()
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp, console or none")
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "cairo-coder"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    logger.info("tracing on: %s exporter", name)
    return True


def install(provider: TracerProvider | None) -> None:
    """Use ``provider`` for every span from now on (None: tracing off). Tests install one with an in-memory
    exporter."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None


def shutdown() -> None:
    """Flush the spans still queued and stop (at process exit)."""
    if _provider is not None:
        _provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    attributes = {key: value for key, value in values.items() if value is not None}
    request_id = observe.current_request_id()
    if request_id is not None:
        attributes["cairo_coder.request_id"] = request_id
    return attributes


@contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: Context | None = None
) -> Iterator[Span | None]:
    """A span around the block (None when tracing is off); an exception marks it as an error and is re-raised."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, context=parent, attributes=_attributes(attributes or {})) as current:
        yield current


def set_attributes(target: Span | None, attributes: Mapping[str, Any]) -> None:
    """Attributes known only at the end of a span (counts, tokens, status); no-op when tracing is off."""
    if target is not None:
        target.set_attributes({key: value for key, value in attributes.items() if value is not None})


def mark_error(target: Span | None, description: str) -> None:
    """The span's operation failed (a request answered with an error that was not raised through the span)."""
    if target is not None:
        from opentelemetry.trace import Status, StatusCode

        target.set_status(Status(StatusCode.ERROR, description))


def incoming_context(headers: Mapping[str, str]) -> Context | None:
    """The caller's trace context from a W3C ``traceparent`` (and ``tracestate``) header, or None."""
    if _tracer is None or "traceparent" not in headers:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier=dict(headers))


def trace_id(target: Span | None) -> str | None:
    """The 32-hex trace id of ``target`` (for the request's log line), or None."""
    if target is None:
        return None
    context = target.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


__all__ = [
    "configure",
    "enabled",
    "exporter_name",
    "incoming_context",
    "install",
    "mark_error",
    "set_attributes",
    "shutdown",
    "span",
    "trace_id",
]
