"""Errors and limits: every status in the OpenAI envelope (never a stack trace), strict headers, body/message
limits, concurrency limit, API keys, LLM failures before and during a stream, no LLM configured."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"
KEY = "client-key-1"


@pytest.fixture(scope="module")
def server(start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI) -> LiveServer:
    return start(
        llm_settings(
            kb_url,
            fake,
            CAIRO_CODER_SERVER__MAX_BODY_BYTES="20000",
            CAIRO_CODER_SERVER__MAX_MESSAGES="5",
            CAIRO_CODER_SERVER__MAX_MESSAGE_CHARS="2000",
            CAIRO_CODER_LLM__RETRIES="1",
        )
    )


def post(server: LiveServer, body: Any, path: str = "/v1/chat/completions", **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30, **kwargs)


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"] and "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def ask(content: str = QUESTION) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def test_validation_errors_are_400(server: LiveServer) -> None:
    bad_json = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"{not json",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert_envelope(bad_json, 400, "invalid_json")
    error = assert_envelope(post(server, {**ask(), "temperature": 9}), 400, "invalid_value")
    assert error["param"] == "temperature" and error["type"] == "invalid_request_error"
    assert_envelope(post(server, {**ask(), "stream": "sometimes"}), 400)
    bad_header = post(server, ask(), headers={"x-mcp-mode": "maybe"})
    assert assert_envelope(bad_header, 400, "invalid_header")["param"] == "x-mcp-mode"
    assert_envelope(post(server, ask(), headers={"mcp": "2"}), 400, "invalid_header")


def test_bad_messages_are_422(server: LiveServer) -> None:
    assert_envelope(post(server, {"messages": []}), 422)
    assert_envelope(post(server, {"messages": [{"role": "wizard", "content": "hi"}]}), 422)
    last_assistant = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert assert_envelope(post(server, last_assistant), 422, "last_message_not_user")["param"] == "messages.1.role"
    too_many = {"messages": [{"role": "user", "content": "q"}] * 6}
    assert_envelope(post(server, too_many), 422, "too_many_messages")
    long = assert_envelope(post(server, ask("x" * 2001)), 422, "message_too_long")
    assert long["param"] == "messages.0.content" and "messages.0.content is 2001 characters" in long["message"]
    history = [{"role": "user", "content": "short"}, {"role": "assistant", "content": "x" * 2001}]
    for path, body, param in (
        ("/agents/process", {"query": "q", "chat_history": history}, "chat_history.1.content"),
        ("/agents/process", {"query": "x" * 2001}, "query"),
        ("/v1/suggestions", {"chat_history": history}, "chat_history.1.content"),
    ):
        assert assert_envelope(post(server, body, path), 422, "message_too_long")["param"] == param, path
    assert_envelope(post(server, ask("   ")), 422, "empty_question")


def test_unknown_agent_and_unknown_route_are_404(server: LiveServer) -> None:
    assert_envelope(post(server, ask(), "/v1/agents/ghost/chat/completions"), 404, "unknown_agent")
    assert_envelope(httpx.get(server.url + "/v2/nothing"), 404, "not_found")
    assert_envelope(post(server, {"query": "q", "agent_id": "ghost"}, "/agents/process"), 404, "unknown_agent")


def test_large_bodies_are_413_by_length_and_while_streaming_in(server: LiveServer) -> None:
    assert_envelope(post(server, ask("x" * 30000)), 413, "body_too_large")

    def chunked() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    response = httpx.post(
        server.url + "/v1/chat/completions", content=chunked(), timeout=10, headers={"content-type": "application/json"}
    )
    assert_envelope(response, 413)


def test_persistent_upstream_rate_limit_is_429_and_outage_is_503(server: LiveServer, fake: FakeOpenAI) -> None:
    fake.chat_failures.extend([429] * 10)
    with pytest.raises(openai.RateLimitError) as caught:
        openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0).chat.completions.create(
            model="cairo-coder", messages=[{"role": "user", "content": QUESTION}]
        )
    assert caught.value.code == "llm_rate_limited"
    assert caught.value.response.headers.get("retry-after")
    fake.chat_failures.clear()
    fake.chat_failures.extend([503] * 10)
    assert_envelope(post(server, ask()), 503, "llm_unavailable")


def test_unparseable_model_output_is_502_without_echoing_it(server: LiveServer, fake: FakeOpenAI) -> None:
    fake.fields["search_queries"] = {"not": "a list"}
    try:
        error = assert_envelope(post(server, ask()), 502, "llm_bad_output")
    finally:
        fake.fields.clear()
    assert error["type"] == "server_error"
    assert "not" not in error["message"].replace("did not", "") and "a list" not in error["message"]


def test_an_error_inside_a_stream_is_an_error_event_and_the_stream_ends(server: LiveServer, fake: FakeOpenAI) -> None:
    # Query processing succeeds, the streamed generation call keeps failing.
    fake.chat_failures.extend([0, 500, 500, 500])
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json={**ask(), "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    blocks = raw.strip().split("\n\n")
    assert blocks[-1] == "data: [DONE]"
    assert blocks[-2].startswith("event: error\ndata: ")
    assert '"code":"llm_unavailable"' in blocks[-2] and "Traceback" not in raw
    fake.chat_failures.extend([0, 500, 500, 500])
    stream = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0).chat.completions.create(
        model="cairo-coder", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    with pytest.raises(openai.APIError, match="unavailable"):
        list(stream)
    # The server is fine afterwards: one failed request does not break the next.
    assert post(server, ask()).status_code == 200


def test_concurrency_limit_is_429(start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI) -> None:
    limited = start(llm_settings(kb_url, fake, CAIRO_CODER_SERVER__MAX_CONCURRENT_REQUESTS="2"))
    fake.chat_delay = 0.5
    results: list[int] = []

    def one() -> None:
        results.append(post(limited, ask()).status_code)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10  # both slots taken (not a fixed sleep: a loaded machine is slower)
    while limited.services.limiter.in_flight < 2:
        assert time.monotonic() < deadline, "the two requests did not take their slots"
        time.sleep(0.01)
    refused = post(limited, ask())
    stream_refused = post(limited, {**ask(), "stream": True})
    for thread in threads:
        thread.join()
    assert results == [200, 200]
    assert_envelope(refused, 429, "concurrency_limit")
    assert_envelope(stream_refused, 429, "concurrency_limit")
    assert refused.headers["retry-after"] == "1"
    assert limited.services.limiter.in_flight == 0, "slots are given back"
    fake.chat_delay = 0.0
    assert post(limited, ask()).status_code == 200


def test_api_keys_when_configured(start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI) -> None:
    keyed = start(llm_settings(kb_url, fake, CAIRO_CODER_SERVER__API_KEYS=f'["{KEY}", "other"]'))
    assert_envelope(post(keyed, ask()), 401, "invalid_api_key")
    assert_envelope(post(keyed, ask(), headers={"authorization": "Bearer wrong"}), 401)
    assert post(keyed, ask(), headers={"x-api-key": KEY}).status_code == 200
    oai = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    assert oai.chat.completions.create(model="cairo-coder", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope", max_retries=0).models.list()
    assert_envelope(httpx.post(keyed.url + "/mcp", json={}, timeout=10), 401, "invalid_api_key")
    # A WebSocket handshake without the key is answered 401 with the envelope (not a bare close), so a client
    # can tell a wrong key from a refused origin; with the key it opens.
    ws_uri = keyed.url.replace("http://", "ws://") + "/agents/process/ws"
    with pytest.raises(InvalidStatus) as refused_ws:
        ws_connect(ws_uri, open_timeout=10)
    assert refused_ws.value.response.status_code == 401
    assert json.loads(refused_ws.value.response.body or b"{}")["error"]["code"] == "invalid_api_key"
    with ws_connect(ws_uri, open_timeout=10, additional_headers={"x-api-key": KEY}) as ws:
        ws.send(json.dumps({"query": QUESTION, "mcp_mode": True}))
        assert json.loads(ws.recv(timeout=30))["type"] == "sources"
    assert httpx.get(keyed.url + "/health").status_code == 200, "health needs no key"
    assert httpx.get(keyed.url + "/ready").status_code == 200
    # Insights are off without an admin key.
    assert_envelope(httpx.get(keyed.url + "/v1/insights/queries", headers={"x-api-key": KEY}), 403)


def test_without_an_llm_answers_are_503_and_mcp_mode_still_works(start: Callable[..., LiveServer], kb_url: str) -> None:
    bare = start(make_settings(kb_url))
    error = assert_envelope(post(bare, ask()), 503, "llm_not_configured")
    assert "CAIRO_CODER_MODEL" in error["message"]
    # Streams fail before the first byte: a status the client can act on, not an error event.
    assert_envelope(post(bare, {**ask(), "stream": True}), 503, "llm_not_configured")
    assert_envelope(post(bare, {"query": QUESTION}, "/agents/process"), 503, "llm_not_configured")
    process_mcp = post(bare, {"query": QUESTION, "mcp_mode": True}, "/agents/process")
    assert process_mcp.status_code == 200 and '"type":"end"' in process_mcp.text
    mcp = post(bare, ask(), headers={"x-mcp-mode": "1"})
    assert mcp.status_code == 200 and "Contract Storage" in mcp.json()["choices"][0]["message"]["content"]
    ready = httpx.get(bare.url + "/ready")
    assert ready.status_code == 200 and ready.json()["llm_configured"] is False
    assert_envelope(post(bare, {"chat_history": [{"role": "user", "content": "hi"}]}, "/v1/suggestions"), 503)


async def test_ready_is_503_on_an_empty_store(start: Callable[..., LiveServer], db_url: str) -> None:
    empty = await asyncio.to_thread(start, make_settings(db_url))
    response = await asyncio.to_thread(httpx.get, empty.url + "/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready" and response.json()["documents"] == 0
    await asyncio.to_thread(empty.stop)
