"""Failure recovery under a running server, against the fake OpenAI-compatible server: the circuit breaker of a
failing provider (503 at once while open, a probe closes it), the fallback model used while the primary is down,
and the request deadline that bounds retries. (Database loss and reconnection: test_outage_and_text.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from cairo_coder.config import Settings
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.live_server import LiveServer

QUESTION = {"messages": [{"role": "user", "content": "How do I declare storage variables in a contract?"}]}


def settings_for(kb_url: str, fake: FakeOpenAI, **env: str) -> Settings:
    return make_settings(
        kb_url,
        CAIRO_CODER_LLM__MODEL="openai/fake-model",
        CAIRO_CODER_LLM__API_BASE=fake.base_url,
        OPENAI_API_KEY="sk-test",
        **env,
    )


def chat_models(fake: FakeOpenAI) -> list[str]:
    return [r["body"].get("model") for r in fake.requests if "chat/completions" in r["path"]]


def circuit_gauge(server: LiveServer, provider: str) -> float | None:
    for line in httpx.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(f'cairo_coder_llm_circuit_open{{provider="{provider}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_breaker_answers_503_at_once_while_open_and_a_probe_closes_it(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    server = start(
        settings_for(
            kb_url,
            fake,
            CAIRO_CODER_LLM__RETRIES="0",
            CAIRO_CODER_LLM__BREAKER_FAILURES="2",
            CAIRO_CODER_LLM__BREAKER_COOLDOWN="1.5",
        )
    )
    fake.down_models.add("fake-model")
    for _ in range(2):  # two failures in a row: the provider's calls are paused
        response = httpx.post(server.url + "/v1/chat/completions", json=QUESTION, timeout=30)
        assert response.status_code == 503 and response.json()["error"]["code"] == "llm_unavailable"
    assert circuit_gauge(server, "openai") == 1
    calls = len(chat_models(fake))
    started = time.perf_counter()
    refused = httpx.post(server.url + "/v1/chat/completions", json=QUESTION, timeout=30)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "llm_circuit_open"
    assert "openai" in refused.json()["error"]["message"] and int(refused.headers["retry-after"]) >= 1
    assert len(chat_models(fake)) == calls  # answered without calling the provider
    assert time.perf_counter() - started < 1.0
    # Search keeps working without the provider (MCP mode needs no model).
    mcp = httpx.post(server.url + "/v1/chat/completions", json=QUESTION, headers={"x-mcp-mode": "true"}, timeout=30)
    assert mcp.status_code == 200, mcp.text
    fake.down_models.clear()  # the provider is back
    time.sleep(1.6)  # the cooldown: the next call is the probe
    for _ in range(2):
        ok = httpx.post(server.url + "/v1/chat/completions", json=QUESTION, timeout=30)
        assert ok.status_code == 200, ok.text
    assert circuit_gauge(server, "openai") == 0
    assert server.services.router.breakers.states()["openai"] == "closed"


def test_the_fallback_model_answers_while_the_primary_is_down(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    server = start(
        settings_for(
            kb_url,
            fake,
            CAIRO_CODER_LLM__RETRIES="0",
            CAIRO_CODER_LLM__BREAKER_FAILURES="1",
            CAIRO_CODER_LLM__BREAKER_COOLDOWN="60",
            # Another provider (its own breaker) on the same fake endpoint.
            CAIRO_CODER_LLM__FALLBACK_MODEL="hosted_vllm/fake-fallback",
        )
    )
    fake.down_models.add("fake-model")
    for stream in (False, True):
        response = httpx.post(server.url + "/v1/chat/completions", json={**QUESTION, "stream": stream}, timeout=30)
        assert response.status_code == 200, response.text
        assert "error" not in response.text
    models = chat_models(fake)
    assert models[0] == "fake-model" and "fake-fallback" in models
    assert models.count("fake-model") == 1  # after the first failure the primary is not called again
    states = server.services.router.breakers.states()
    assert states["openai"] == "open" and states["hosted_vllm"] == "closed"


def test_retries_stop_at_the_request_deadline(start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI) -> None:
    server = start(
        settings_for(
            kb_url,
            fake,
            CAIRO_CODER_LLM__RETRIES="10",
            CAIRO_CODER_LLM__MAX_RETRY_WAIT="10",
            CAIRO_CODER_LLM__REQUEST_DEADLINE="2.5",
            CAIRO_CODER_LLM__BREAKER_FAILURES="0",
        )
    )
    fake.retry_after = None  # jittered exponential backoff: ~1 s, ~2 s, ~4 s ...
    fake.down_models.add("fake-model")
    started = time.perf_counter()
    response = httpx.post(server.url + "/v1/chat/completions", json=QUESTION, timeout=60)
    elapsed = time.perf_counter() - started
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "llm_unavailable" and "request deadline" in error["message"], error
    # Ten retries would take minutes; the deadline stops them (2.5 s, plus one call's time at most).
    assert elapsed < 4.5, elapsed
    assert 1 < len(chat_models(fake)) < 5


@pytest.mark.parametrize("deadline", ["0", "-1", "7200"])
def test_the_deadline_is_validated(deadline: str, kb_url: str) -> None:
    from cairo_coder.errors import ConfigError

    with pytest.raises(ConfigError, match=r"llm\.request_deadline"):
        make_settings(kb_url, CAIRO_CODER_LLM__REQUEST_DEADLINE=deadline)
