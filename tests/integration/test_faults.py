"""Fault injection on real parts: the fake LLM scripted to fail in every way a provider fails, the embedded
PostgreSQL stopped and restarted under a running server, clients that trickle bytes or send binary frames.

Each case asserts the status, the OpenAI envelope (never a 500, never a traceback) and that the next request
succeeds (one failure never breaks another)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from websockets.sync.client import connect

from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"


@pytest.fixture(scope="module")
def server(start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI) -> LiveServer:
    return start(
        llm_settings(
            kb_url,
            fake,
            CAIRO_CODER_LLM__RETRIES="1",
            CAIRO_CODER_LLM__TIMEOUT="2",
            CAIRO_CODER_LLM__MAX_RETRY_WAIT="5",
            CAIRO_CODER_SERVER__READ_TIMEOUT="1",
            CAIRO_CODER_SERVER__MAX_BODY_BYTES="20000",
            CAIRO_CODER_SERVER__ADMIN_KEY="admin-secret",
        )
    )


def ask(stream: bool = False) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": QUESTION}], "stream": stream}


def post(server: LiveServer, body: Any, path: str = "/v1/chat/completions", **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30, **kwargs)


def envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["code"] == code, error
    for leak in ("Traceback", "litellm", "LiteLLM", "lm15", "OpenAIException", "RateLimitError"):
        assert leak not in error["message"], error["message"]
    return dict(error)


def sse_error(server: LiveServer) -> dict[str, Any] | None:
    """The error event of a streamed answer, or None when it finished; it always ends with [DONE]."""
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=ask(stream=True), timeout=30) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    blocks = raw.strip().split("\n\n")
    assert blocks[-1] == "data: [DONE]" and "Traceback" not in raw
    if blocks[-2].startswith("event: error\n"):
        return dict(json.loads(blocks[-2].split("data: ", 1)[1])["error"])
    return None


def recovers(server: LiveServer, fake: FakeOpenAI) -> None:
    fake.reset()
    response = post(server, ask())
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "stop"


# (script of chat faults or statuses, expected status, expected code). Faults repeat for every attempt.
LLM_FAULTS = [
    (["garbage"], 503, "llm_unavailable"),
    (["reset"], 503, "llm_unavailable"),
    (["hang"], 503, "llm_unavailable"),
    (["empty_choices"], 502, "llm_bad_output"),
    (["empty"], 502, "llm_bad_output"),
    ([401], 503, "llm_auth"),
    ([403], 503, "llm_auth"),
    ([404], 400, "llm_bad_request"),
    ([429], 429, "llm_rate_limited"),
    ([500], 503, "llm_unavailable"),
    ([502], 503, "llm_unavailable"),
    ([503], 503, "llm_unavailable"),
]


@pytest.mark.parametrize(("script", "status", "code"), LLM_FAULTS, ids=lambda v: str(v))
def test_every_llm_failure_is_mapped_and_the_next_request_succeeds(
    server: LiveServer, fake: FakeOpenAI, script: list[Any], status: int, code: str
) -> None:
    fake.hang_seconds = 4  # past llm.timeout (2 s)

    def arm() -> None:
        fake.reset()
        fake.hang_seconds = 4
        for item in script * 4:  # every attempt of every stage fails the same way
            (fake.chat_faults if isinstance(item, str) else fake.chat_failures).append(item)

    arm()
    envelope(post(server, ask()), status, code)
    arm()
    error = sse_error(server)
    assert error is not None and error["code"] == code
    recovers(server, fake)


def test_retry_after_is_honoured_and_a_long_one_is_passed_on(server: LiveServer, fake: FakeOpenAI) -> None:
    fake.retry_after = "1"
    fake.chat_failures.append(429)
    assert post(server, ask()).status_code == 200
    first, second = fake.chat_requests()[:2]
    assert second["time"] - first["time"] >= 0.95, "retried before the provider's Retry-After"

    fake.reset()
    fake.retry_after = "120"  # longer than llm.max_retry_wait (5 s): no waiting, the client learns when
    fake.chat_failures.extend([429] * 3)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0).chat.completions.create(
            model="cairo-coder", messages=[{"role": "user", "content": QUESTION}]
        )
    assert time.monotonic() - started < 5 and len(fake.chat_requests()) == 1
    assert caught.value.response.headers["retry-after"] == "120"

    fake.reset()
    fake.chat_failures.extend([429] * 3)  # Retry-After 0: retried once (llm.retries = 1), then reported
    error = envelope(post(server, ask()), 429, "llm_rate_limited")
    assert "gave up after 2 attempts" in error["message"] and len(fake.chat_requests()) == 2


def test_an_answer_cut_at_max_tokens_is_reported_as_length(server: LiveServer, fake: FakeOpenAI) -> None:
    fake.chat_faults.extend(["", "length"])  # query processing fine, generation stops at max_tokens
    body = post(server, ask()).json()
    assert body["choices"][0]["finish_reason"] == "length"
    fake.reset()
    fake.chat_faults.extend(["", "length"])
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=ask(stream=True), timeout=30) as response:
        chunks = [
            json.loads(line[6:])
            for line in response.iter_lines()
            if line.startswith("data: {") and '"choices":[{' in line
        ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    fake.reset()
    fake.chat_faults.extend(["", "length"])
    lines = [
        json.loads(line)
        for line in httpx.post(server.url + "/agents/process", json={"query": QUESTION}, timeout=30).text.splitlines()
    ]
    assert lines[-1]["type"] == "end" and lines[-1]["data"]["finish_reason"] == "length"
    recovers(server, fake)


def test_a_stream_cut_mid_answer_is_an_error_never_stop(server: LiveServer, fake: FakeOpenAI) -> None:
    fake.chunk_size = 4
    fake.stream_faults.append("cut")
    error = sse_error(server)
    seen = [(bool(r["body"].get("stream")), round(r["time"], 2)) for r in fake.chat_requests()]
    assert error is not None and error["code"] == "llm_incomplete", (error, seen, fake.stream_outcomes)
    fake.reset()
    fake.chunk_size = 4
    fake.stream_faults.append("cut")
    envelope(post(server, ask()), 502, "llm_incomplete")
    recovers(server, fake)


def test_slow_clients_are_cut_off(server: LiveServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as half_headers:
        half_headers.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        started = time.monotonic()
        assert half_headers.recv(1000) == b"", "a half-sent request must be closed"
        assert time.monotonic() - started < 8
    with socket.create_connection(("127.0.0.1", port), timeout=10) as half_body:
        half_body.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"messages"'
        )
        answer = half_body.recv(4000).decode()
        assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer


def test_oversize_chunked_bodies_get_the_json_413_everywhere(server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b" " * 1000

    for path in ("/v1/chat/completions", "/mcp"):
        response = httpx.post(
            server.url + path,
            content=chunks(),
            timeout=30,
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        envelope(response, 413, "body_too_large")


def test_websocket_binary_frames_get_an_error_event_and_the_connection_lives(server: LiveServer) -> None:
    with connect(server.url.replace("http", "ws") + "/agents/process/ws") as ws:
        ws.send(b"\x00\x01binary")
        event = json.loads(ws.recv(timeout=10))
        assert event["type"] == "error" and event["data"]["type"] == "unsupported_frame"
        ws.send(json.dumps({"query": QUESTION, "mcp_mode": True, "id": 7}))
        types = []
        while not types or types[-1] not in ("end", "error"):
            types.append(json.loads(ws.recv(timeout=30))["type"])
        assert types[-1] == "end"


def test_small_protocol_details(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    assert httpx.head(server.url + "/health", timeout=10).status_code == 200
    assert httpx.head(server.url + "/ready", timeout=10).status_code in (200, 503)
    get_mcp = httpx.get(server.url + "/mcp", headers={"accept": "text/event-stream"}, timeout=10)
    envelope(get_mcp, 405, "method_not_allowed")
    admin = {"x-admin-key": "admin-secret"}
    envelope(
        httpx.get(server.url + "/v1/insights/queries", params={"cursor": 2**63}, headers=admin, timeout=10),
        400,
        "invalid_value",
    )
    assert (
        httpx.get(
            server.url + "/v1/insights/queries", params={"cursor": 2**63 - 1}, headers=admin, timeout=10
        ).status_code
        == 200
    )
    with caplog.at_level("INFO"):
        caplog.clear()
        envelope(post(server, ask(), "/v1/agents/nope/chat/completions"), 404, "unknown_agent")
    assert not [r for r in caplog.records if r.exc_info], "a client's 404 must not log a traceback"


def test_the_admin_key_is_not_a_client_key(start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI) -> None:
    live = start(
        llm_settings(
            kb_url, fake, CAIRO_CODER_SERVER__API_KEYS='["client-key"]', CAIRO_CODER_SERVER__ADMIN_KEY="admin-key"
        )
    )
    as_admin = {"authorization": "Bearer admin-key"}
    envelope(post(live, ask(), headers=as_admin), 401, "invalid_api_key")
    assert (
        httpx.get(live.url + "/v1/insights/queries", headers={"x-admin-key": "admin-key"}, timeout=10).status_code
        == 200
    )
    assert post(live, ask(), headers={"authorization": "Bearer client-key"}).status_code == 200


def test_ready_says_warming_until_the_model_is_loaded(server: LiveServer) -> None:
    deadline = time.monotonic() + 60
    while not server.services.warm and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(server.url + "/ready", timeout=10).json()["status"] == "ready"
    server.services.warm = False
    try:
        body = httpx.get(server.url + "/ready", timeout=10)
        assert body.status_code == 503 and body.json()["status"] == "warming"
        assert any("warming" in p for p in body.json()["problems"])
    finally:
        server.services.warm = True


def test_the_lm15_engine_reports_length_and_detects_an_unframed_cut(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    """DSPy's native engine checks that a stream ends with its completion event, so it also catches a cut that
    HTTP cannot show (a body delimited by the connection's end, no [DONE]); LiteLLM reports that one as
    complete (docs/api.md)."""
    live = start(llm_settings(kb_url, fake, CAIRO_CODER_LLM__ENGINE="lm15", CAIRO_CODER_LLM__RETRIES="0"))
    fake.chunk_size = 4
    fake.stream_faults.append("cut_eof")
    error = sse_error(live)
    assert error is not None and error["code"] == "llm_incomplete", error
    fake.reset()
    fake.chat_faults.extend(["", "length"])
    assert post(live, ask()).json()["choices"][0]["finish_reason"] == "length"
    recovers(live, fake)
