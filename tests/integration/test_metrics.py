"""Prometheus metrics at /metrics on a real server (fake LLM provider): each family moves when it should, names
follow Prometheus conventions, and label values stay bounded whatever clients send."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.store import DocumentStore
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer
from tests.integration.mini_corpus import write_mini_corpus

QUESTION = "How do I declare storage variables in a contract?"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> tuple[Samples, list[str]]:
    response = httpx.get(base + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    families = []
    for family in text_string_to_metric_families(response.text):
        families.append(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_follow_requests_llm_calls_and_searches(
    start: Callable[..., LiveServer], fake: FakeOpenAI, kb_url: str
) -> None:
    server = start(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="1"))
    before, _ = scrape(server.url)
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]
    client.chat.completions.create(model="cairo-coder", messages=messages)  # type: ignore[arg-type]
    for _ in client.chat.completions.create(model="cairo-coder", messages=messages, stream=True):  # type: ignore[arg-type]
        pass
    httpx.post(
        server.url + "/v1/chat/completions", json={"messages": messages}, headers={"x-mcp-mode": "1"}, timeout=60
    )
    fake.chat_failures.extend([429])  # retried once, then fine
    client.chat.completions.create(model="cairo-coder", messages=messages)  # type: ignore[arg-type]
    fake.chat_failures.extend([500] * 4)  # fails after its retry
    failed = httpx.post(server.url + "/v1/chat/completions", json={"messages": messages}, timeout=60)
    assert failed.status_code == 503
    fake.chat_failures.clear()
    # Client-chosen names must not become label values.
    assert (
        httpx.post(server.url + "/v1/agents/evil-agent-name/chat/completions", json={"messages": messages}).status_code
        == 404
    )
    assert httpx.get(server.url + "/some/unknown/path-xyz").status_code == 404
    after, families = scrape(server.url)

    assert delta(before, after, "cairo_coder_requests_total", agent="cairo-coder", mode="answer", status="ok") == 3
    assert delta(before, after, "cairo_coder_requests_total", agent="cairo-coder", mode="mcp", status="ok") == 1
    assert delta(before, after, "cairo_coder_requests_total", agent="cairo-coder", mode="answer", status="error") == 1
    assert (
        delta(
            before, after, "cairo_coder_http_requests_total", route="/v1/chat/completions", method="POST", status="200"
        )
        == 4
    )
    assert (
        delta(
            before, after, "cairo_coder_http_requests_total", route="/v1/chat/completions", method="POST", status="503"
        )
        == 1
    )
    assert (
        delta(
            before,
            after,
            "cairo_coder_http_requests_total",
            route="/v1/agents/{agent_id}/chat/completions",
            method="POST",
            status="404",
        )
        == 1
    )
    assert delta(before, after, "cairo_coder_http_requests_total", route="other", method="GET", status="404") == 1
    assert (
        delta(before, after, "cairo_coder_time_to_first_token_seconds_count", agent="cairo-coder", mode="answer") == 3
    )
    for stage in ("query_processing", "retrieval", "generation"):
        assert delta(before, after, "cairo_coder_stage_duration_seconds_count", stage=stage) >= 3
    assert delta(before, after, "cairo_coder_llm_tokens_total", model="openai/fake-model", kind="prompt") > 0
    assert delta(before, after, "cairo_coder_llm_tokens_total", model="openai/fake-model", kind="completion") > 0
    assert delta(before, after, "cairo_coder_llm_calls_total", provider="openai", outcome="ok") >= 7
    assert delta(before, after, "cairo_coder_llm_errors_total", provider="openai", error="llm_rate_limited") == 1
    assert delta(before, after, "cairo_coder_llm_errors_total", provider="openai", error="llm_unavailable") == 2
    assert delta(before, after, "cairo_coder_llm_retries_total", provider="openai") == 2
    assert delta(before, after, "cairo_coder_documents_retrieved_count") == 4
    assert delta(before, after, "cairo_coder_search_duration_seconds_count", mode="hybrid") >= 4
    # A process-wide gauge (other servers of this test process count too): compare with this test's start.
    assert delta(before, after, "cairo_coder_requests_in_flight") == 0
    fake.chat_delay = 1.0
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, server.url + "/v1/chat/completions", json={"messages": messages}, timeout=60)
        time.sleep(0.4)
        during, _ = scrape(server.url)
        assert slow.result().status_code == 200
    fake.chat_delay = 0.0
    assert delta(before, during, "cairo_coder_requests_in_flight") == 1
    assert delta(before, scrape(server.url)[0], "cairo_coder_requests_in_flight") == 0
    assert value(after, "cairo_coder_db_pool_connections", state="open") >= 1
    assert value(after, "cairo_coder_database_up") == 1 and value(after, "cairo_coder_store_documents") > 0

    text = httpx.get(server.url + "/metrics").text
    assert "evil-agent-name" not in text and "path-xyz" not in text and QUESTION not in text
    # Every family is documented for operators (docs/OPERATIONS.md), and every documented one exists.
    ours = {name for name in families if name.startswith("cairo_coder_") and not name.endswith("_created")}
    table = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    documented = {name.removesuffix("_total") for name in re.findall(r"^\| `(cairo_coder_\w+)`", table, re.M)}
    assert ours == documented and len(ours) == 19
    # Every metric the alert rules and the Grafana dashboard query (deploy/) is one this server exports.
    from tests.unit.test_deploy import queried_metrics, sample_names

    exported = sample_names([(f.name, f.type) for f in text_string_to_metric_families(text)])
    for where, names in queried_metrics().items():
        assert names and names <= exported, f"{where} queries {names - exported}, which /metrics lacks"


def test_metrics_can_be_turned_off(start: Callable[..., LiveServer], kb_url: str) -> None:
    """Off, /metrics is 404 and requests record nothing (the benchmark's "without metrics" side)."""
    server = start(make_settings(kb_url, CAIRO_CODER_SERVER__METRICS="false"))
    assert httpx.get(server.url + "/metrics").status_code == 404
    from prometheus_client import REGISTRY

    def health_count() -> float:
        found = REGISTRY.get_sample_value(
            "cairo_coder_http_requests_total", {"route": "/health", "method": "GET", "status": "200"}
        )
        return found or 0.0

    before = health_count()
    assert httpx.get(server.url + "/health").status_code == 200
    assert health_count() == before


async def test_ingestion_counts_pages_and_chunks_per_source(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    from prometheus_client import REGISTRY

    def pages(outcome: str) -> float:
        return (
            REGISTRY.get_sample_value("cairo_coder_ingest_pages_total", {"source": "scarb_docs", "outcome": outcome})
            or 0.0
        )

    corpus = write_mini_corpus(tmp_path / "corpus")
    settings = make_settings(db_url)
    new, unchanged = pages("new"), pages("unchanged")
    chunks = REGISTRY.get_sample_value("cairo_coder_ingest_chunks_total", {"source": "scarb_docs"}) or 0.0
    async with await DocumentStore.open(settings.database, local_embedder, settings.search, for_writing=True) as store:
        report = await Ingester(settings, store).ingest_source("scarb_docs", corpus)
        await Ingester(settings, store).ingest_source("scarb_docs", corpus)
    assert pages("new") - new == report.new > 0
    assert pages("unchanged") - unchanged == report.new, "the second run found every page unchanged"
    assert (REGISTRY.get_sample_value("cairo_coder_ingest_chunks_total", {"source": "scarb_docs"}) or 0) - chunks > 0
