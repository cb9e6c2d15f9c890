"""Logs and request ids on a real server (fake LLM provider): one JSON line per request with its stages, ids in
headers, first stream events and every log line of the request, DEBUG detail, and no secret anywhere."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from cairo_coder.logs import setup_logging
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"
CLIENT_KEY = "ck-client-secret-0123456789"
PROVIDER_KEY = "sk-provider-secret-0123456789"


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler: logging.Handler | None = None

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def for_request(self, request_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("request_id") == request_id]

    def request_line(self, request_id: str) -> dict[str, Any]:
        (line,) = [x for x in self.for_request(request_id) if x["logger"] == "cairo_coder.request"]
        return line


@pytest.fixture
def captured() -> Iterator[Callable[[str, list[str]], Captured]]:
    root = logging.getLogger()
    level = root.level
    made: list[Captured] = []

    def install(level_name: str, secrets: list[str]) -> Captured:
        capture = Captured()
        capture.handler = setup_logging(level_name, "json", secrets=secrets, stream=capture.stream)
        made.append(capture)
        return capture

    yield install
    for capture in made:
        root.removeHandler(capture.handler)  # type: ignore[arg-type]
    root.setLevel(level)


@pytest.fixture
def server(start: Callable[..., LiveServer], fake: FakeOpenAI, kb_url: str) -> LiveServer:
    return start(
        llm_settings(
            kb_url,
            fake,
            CAIRO_CODER_SERVER__API_KEYS=f'["{CLIENT_KEY}"]',
            CAIRO_CODER_LLM__OPENAI_API_KEY=PROVIDER_KEY,
        )
    )


def ask_openai(server: LiveServer, **headers: str) -> Any:
    """One answer through the official client (raw response: its headers), authenticated with the client key."""
    client = OpenAI(base_url=server.url + "/v1", api_key=CLIENT_KEY)
    return client.chat.completions.with_raw_response.create(
        model="cairo-coder", messages=[{"role": "user", "content": QUESTION}], extra_headers=headers
    )


def test_one_info_line_per_request_with_stages_tokens_and_models(
    server: LiveServer, captured: Callable[[str, list[str]], Captured]
) -> None:
    logs = captured("INFO", server.settings.secrets())
    raw = ask_openai(server, **{"X-Request-ID": "req-42.abc"})
    assert raw.headers["x-request-id"] == "req-42.abc", "a sane incoming id is kept"
    line = logs.request_line("req-42.abc")
    assert line["level"] == "info" and line["route"] == "/v1/chat/completions" and line["http_status"] == 200
    assert (line["agent"], line["mode"], line["status"]) == ("cairo-coder", "answer", "ok")
    assert line["documents"] > 0 and line["duration_ms"] > 0
    stages = line["stages"]
    assert list(stages) == ["query_processing", "retrieval", "generation"]
    for name in ("query_processing", "generation"):
        assert stages[name]["model"] and stages[name]["prompt_tokens"] > 0 and stages[name]["duration_ms"] > 0
    assert "model" not in stages["retrieval"]
    text = logs.stream.getvalue()
    assert QUESTION not in text, "user text is DEBUG detail only"
    assert CLIENT_KEY not in text and PROVIDER_KEY not in text


def test_ids_are_generated_when_missing_or_not_sane_and_open_every_stream(
    server: LiveServer, captured: Callable[[str, list[str]], Captured]
) -> None:
    logs = captured("INFO", server.settings.secrets())
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        for bad in ("has space", "x" * 200, 'quote"d', "", "-leading-dash"):
            got = http.get("/v1/agents", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert got != bad and len(got) == 32 and int(got, 16) >= 0
        body = {"model": "cairo-coder", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            data = [line for line in response.iter_lines() if line.startswith("data: ")]
            assert json.loads(data[0][6:])["request_id"] == response.headers["x-request-id"]
            assert data[-1] == "data: [DONE]" and all("request_id" not in line for line in data[1:])
        sse_id = response.headers["x-request-id"]
        with http.stream("POST", "/agents/process", json={"query": QUESTION}) as response:
            events = [json.loads(line) for line in response.iter_lines() if line]
        assert events[0]["request_id"] == response.headers["x-request-id"]
        assert all("request_id" not in e for e in events[1:])
    assert logs.request_line(sse_id)["status"] == "ok"
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            next(response.iter_lines())  # the client leaves after the first line
        left = response.headers["x-request-id"]
    for _ in range(100):  # the server notices on its next write
        if any(x["logger"] == "cairo_coder.request" for x in logs.for_request(left)):
            break
        time.sleep(0.05)
    assert logs.request_line(left)["status"] == "cancelled"
    # 401: a refused request has an id and a line too.
    refused = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer wrong-key-123456"})
    assert refused.status_code == 401
    line = logs.request_line(refused.headers["x-request-id"])
    assert line["http_status"] == 401 and line["error"] == "invalid_api_key"
    assert "wrong-key-123456" not in logs.stream.getvalue()


async def test_websocket_requests_get_their_own_ids_and_lines(
    server: LiveServer, captured: Callable[[str, list[str]], Captured]
) -> None:
    from websockets.asyncio.client import connect

    logs = captured("INFO", server.settings.secrets())
    url = server.url.replace("http", "ws") + "/agents/process/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as ws:
        ids = []
        for n in range(2):
            await ws.send(json.dumps({"query": QUESTION, "id": n}))
            first = json.loads(await ws.recv())
            ids.append(first["request_id"])
            while json.loads(await ws.recv())["type"] != "end":
                pass
    assert len(set(ids)) == 2
    for request_id in ids:
        line = logs.request_line(request_id)
        assert line["route"] == "/agents/process/ws" and line["status"] == "ok" and "generation" in line["stages"]


def test_debug_shows_the_stage_detail_under_the_request_id_and_still_no_secret(
    server: LiveServer, captured: Callable[[str, list[str]], Captured]
) -> None:
    logs = captured("DEBUG", server.settings.secrets())
    request_id = ask_openai(server).headers["x-request-id"]
    retrieval = next(x for x in logs.for_request(request_id) if x["message"] == "retrieval")
    assert retrieval["question"] == QUESTION and retrieval["search_queries"] and retrieval["sources"]
    assert all({"source", "url", "score"} <= set(d) for d in retrieval["documents"])
    text = logs.stream.getvalue()
    assert CLIENT_KEY not in text and PROVIDER_KEY not in text, "DEBUG, provider calls included, masks secrets"


def test_a_failing_request_logs_its_error_kind_and_the_client_gets_no_traceback(
    server: LiveServer, fake: FakeOpenAI, captured: Callable[[str, list[str]], Captured]
) -> None:
    logs = captured("INFO", server.settings.secrets())
    fake.chat_failures.extend([401] * 10)
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "cairo-coder", "messages": [{"role": "user", "content": QUESTION}]},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        timeout=60,
    )
    fake.chat_failures.clear()
    assert response.status_code == 503 and "Traceback" not in response.text
    line = logs.request_line(response.headers["x-request-id"])
    assert (line["status"], line["error"], line["http_status"]) == ("error", "llm_auth", 503)
