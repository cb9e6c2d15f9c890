"""Tracing's switch: off unless the standard OTEL_* variables ask for it; clear errors for what cannot work."""

from __future__ import annotations

import pytest

from cairo_coder import tracing
from cairo_coder.errors import ConfigError


def test_tracing_is_off_unless_the_otel_variables_ask_for_it() -> None:
    assert tracing.exporter_name({}) is None
    assert tracing.exporter_name({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.exporter_name({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert tracing.exporter_name({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "otlp"
    assert tracing.exporter_name({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}) is None
    with pytest.raises(ConfigError, match="not supported"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="http/protobuf"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:  # the test environment does not install the optional extra: the message names it
        with pytest.raises(ConfigError, match=r"cairo-coder\[otlp\]"):
            tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing.enabled()
    assert tracing.configure({"OTEL_TRACES_EXPORTER": "console"}) and tracing.enabled()
    tracing.shutdown()
    tracing.install(None)
