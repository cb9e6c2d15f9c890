"""OpenTelemetry spans of a running server, exported to the SDK's in-memory exporter: a span per request (a child
of the caller's W3C traceparent), per pipeline stage, per LLM call, per embedding call and per database statement
group, nested, each carrying the request id, and no user text."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cairo_coder import tracing
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    yield memory
    tracing.install(None)
    provider.shutdown()


@pytest.fixture(scope="module")
def server(
    exporter: InMemorySpanExporter, start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> LiveServer:
    return start(llm_settings(kb_url, fake))


def spans_of(exporter: InMemorySpanExporter, request_id: str) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if (s.attributes or {}).get("cairo_coder.request_id") == request_id
    ]


def test_a_request_is_one_trace_of_nested_spans_under_the_callers_traceparent(
    server: LiveServer, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}]},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01", "x-request-id": "trace-req-1"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    spans = spans_of(exporter, "trace-req-1")
    by_name = {s.name: s for s in spans}
    root = by_name["POST /v1/chat/completions"]
    assert root.context is not None and f"{root.context.trace_id:032x}" == TRACE_ID  # the caller's trace
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT
    assert all(s.context is not None and s.context.trace_id == root.context.trace_id for s in spans)
    attrs = root.attributes or {}
    assert attrs["http.route"] == "/v1/chat/completions" and attrs["http.response.status_code"] == 200
    assert attrs["cairo_coder.agent"] == "cairo-coder" and attrs["cairo_coder.status"] == "ok"
    for stage in ("stage query_processing", "stage retrieval", "stage generation"):
        assert stage in by_name, sorted(by_name)
        parent = by_name[stage].parent
        assert parent is not None and parent.span_id == root.context.span_id  # stages nest in the request
    llm_calls = [s for s in spans if s.name == "llm.call"]
    assert len(llm_calls) >= 2
    stage_ids = {by_name[n].context.span_id for n in ("stage query_processing", "stage generation")}  # type: ignore[union-attr]
    assert all(c.parent is not None and c.parent.span_id in stage_ids for c in llm_calls)
    assert all((c.attributes or {})["gen_ai.request.model"] == "openai/fake-model" for c in llm_calls)
    generation = by_name["stage generation"].attributes or {}
    assert generation["gen_ai.usage.output_tokens"] > 0
    retrieval = by_name["stage retrieval"]
    assert (retrieval.attributes or {})["cairo_coder.documents"] > 0
    below_retrieval = [s for s in spans if s.parent is not None and s.parent.span_id == retrieval.context.span_id]  # type: ignore[union-attr]
    names = {s.name for s in below_retrieval}
    assert "db search" in names and "embedding" in names, names
    db = next(s for s in below_retrieval if s.name == "db search")
    assert (db.attributes or {})["db.system.name"] == "postgresql" and (db.attributes or {})[
        "db.response.returned_rows"
    ] > 0
    # No user text in any span.
    for found in spans:
        assert QUESTION not in str(dict(found.attributes or {})) and "storage variables" not in found.name
    assert response.headers["x-request-id"] == "trace-req-1"


def test_a_request_without_traceparent_starts_its_own_trace_and_errors_are_marked(
    server: LiveServer, exporter: InMemorySpanExporter, fake: FakeOpenAI
) -> None:
    exporter.clear()
    fake.down_models.add("fake-model")
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}]},
        headers={"x-request-id": "trace-req-2"},
        timeout=60,
    )
    assert response.status_code == 503
    spans = spans_of(exporter, "trace-req-2")
    root = next(s for s in spans if s.name == "POST /v1/chat/completions")
    assert root.parent is None and root.status.status_code.name == "ERROR"
    failed = [s for s in spans if s.name == "llm.call"]
    assert failed and all(s.status.status_code.name == "ERROR" for s in failed)


def test_each_websocket_message_is_a_span_of_its_own(server: LiveServer, exporter: InMemorySpanExporter) -> None:
    import json

    from websockets.sync.client import connect

    exporter.clear()
    ids = []
    with connect(server.url.replace("http", "ws") + "/agents/process/ws") as ws:
        for n in range(2):
            ws.send(json.dumps({"id": n, "query": QUESTION, "mcp_mode": True}))
            while True:
                event = json.loads(ws.recv(timeout=30))
                if "request_id" in event:
                    ids.append(event["request_id"])
                if event["type"] in ("end", "error"):
                    break
    assert len(set(ids)) == 2, ids
    for request_id in ids:
        spans = spans_of(exporter, request_id)
        root = next(s for s in spans if s.name == "WS message /agents/process/ws")
        retrieval = next(s for s in spans if s.name == "stage retrieval")
        assert retrieval.parent is not None and root.context is not None
        assert retrieval.parent.span_id == root.context.span_id
        assert (root.attributes or {})["cairo_coder.mode"] == "mcp"
