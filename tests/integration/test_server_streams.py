"""The agent process interface (NDJSON and WebSocket), and cancellation: a client that leaves stops its
generation (the fake LLM sees its stream aborted, no tokens are produced for nobody)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets

from cairo_coder.embeddings import LocalEmbedder
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"


@pytest.fixture(scope="module")
def server(kb_url: str, fake: FakeOpenAI, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    live = LiveServer(llm_settings(kb_url, fake, CAIRO_CODER_SERVER__ADMIN_KEY="admin"), local_embedder).start()
    yield live
    live.stop()


def slow_answers(fake: FakeOpenAI) -> None:
    fake.chunk_size = 2
    fake.chunk_delay = 0.05  # about 3 s per answer


def wait_for_outcome(fake: FakeOpenAI, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while not fake.stream_outcomes and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(fake.stream_outcomes)


def test_process_streams_json_events(server: LiveServer) -> None:
    body = {
        "query": QUESTION,
        "chat_history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    }
    with httpx.stream("POST", server.url + "/agents/process", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in response.iter_lines() if line]
    types = [e["type"] for e in events]
    assert types[0] == "sources" and types[-1] == "end" and set(types[1:-1]) == {"response"}
    assert events[0]["data"][0]["title"] == "Contract Storage"
    answer = "".join(e["data"] for e in events if e["type"] == "response")
    assert answer.strip().startswith(f"ANSWER<{QUESTION}>")
    assert events[-1]["data"]["usage"]["total_tokens"] > 0


def test_process_in_mcp_mode_returns_documentation(server: LiveServer, fake: FakeOpenAI) -> None:
    response = httpx.post(
        server.url + "/agents/process",
        json={"query": QUESTION, "mcp_mode": True, "agent_id": "cairo-coder"},
        timeout=30,
    )
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [e["type"] for e in events] == ["sources", "response", "end"]
    assert "Contract Storage" in events[1]["data"]
    assert not any(r["body"].get("stream") for r in fake.chat_requests())


async def test_websocket_requests_events_and_cancel(server: LiveServer, fake: FakeOpenAI) -> None:
    uri = server.url.replace("http://", "ws://") + "/agents/process/ws"
    async with websockets.connect(uri) as ws:
        await ws.send(json.dumps({"id": "r1", "query": QUESTION}))
        events = await _until_end(ws)
        assert events[0]["type"] == "sources" and events[-1]["type"] == "end"
        assert all(e["id"] == "r1" for e in events)
        answer = "".join(e["data"] for e in events if e["type"] == "response")
        assert answer.strip().startswith(f"ANSWER<{QUESTION}>")
        # Bad messages get an error event and the connection stays usable.
        await ws.send("not json")
        assert json.loads(await ws.recv())["data"]["type"] == "invalid_json"
        await ws.send(json.dumps({"id": "r2", "query": QUESTION, "agent_id": "ghost"}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["data"]["status"] == 404 and error["id"] == "r2"
        await ws.send(json.dumps({"id": "r3"}))
        assert json.loads(await ws.recv())["data"]["type"] == "invalid_request"
        # Cancel a request in flight.
        slow_answers(fake)
        fake.stream_outcomes.clear()
        await ws.send(json.dumps({"id": "r4", "query": "How do I write a component?"}))
        first = await _until(ws, "response")
        assert first["id"] == "r4"
        await ws.send(json.dumps({"type": "cancel"}))
        end = await _until(ws, "end")
        assert end["data"] == {"cancelled": True} and end["id"] == "r4"
        assert await asyncio.to_thread(wait_for_outcome, fake) == ["aborted"]
        fake.chunk_delay = 0.0
        await ws.send(json.dumps({"id": "r5", "query": QUESTION, "mcp_mode": True}))
        assert (await _until_end(ws))[-1]["type"] == "end"


async def test_websocket_multiplexes_requests_by_id(server: LiveServer, fake: FakeOpenAI) -> None:
    """Several requests in flight on one connection, each with its own id and its own answer; one is cancelled
    by its id while the others go on; an id already in flight is refused."""
    uri = server.url.replace("http://", "ws://") + "/agents/process/ws"
    questions = {f"q{i}": f"How do I use storage variable number {i}?" for i in range(6)}
    async with websockets.connect(uri) as ws:
        fake.chunk_size = 4
        fake.chunk_delay = 0.02
        for request_id, question in questions.items():
            await ws.send(json.dumps({"id": request_id, "query": question}))
        await ws.send(json.dumps({"id": "q0", "query": "a second q0"}))
        await ws.send(json.dumps({"type": "cancel", "id": "q5"}))
        events: dict[str, list[dict[str, Any]]] = {}
        while len([r for r, e in events.items() if e and e[-1]["type"] in ("end", "error")]) < len(questions):
            event = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if event["type"] == "error" and event["data"]["type"] == "busy":
                assert event["id"] == "q0" and "q0" in event["data"]["message"]
                continue
            events.setdefault(event["id"], []).append(event)
    assert events["q5"][-1] == {"type": "end", "data": {"cancelled": True}, "id": "q5"}
    for request_id in list(questions)[:5]:
        answer = "".join(e["data"] for e in events[request_id] if e["type"] == "response")
        assert answer.strip().startswith(f"ANSWER<{questions[request_id]}>"), request_id
        assert events[request_id][-1]["type"] == "end" and "usage" in events[request_id][-1]["data"]
    assert await asyncio.to_thread(wait_idle, server) == 0


def wait_idle(server: LiveServer) -> int:
    """The server's requests in flight, once none are left or after 5 s."""
    deadline = time.monotonic() + 5
    while server.services.limiter.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(server.services.limiter.in_flight)


async def test_websocket_in_flight_limit_and_source_content(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    limited = start(llm_settings(kb_url, fake, CAIRO_CODER_SERVER__WS_MAX_IN_FLIGHT="1"))
    uri = limited.url.replace("http://", "ws://") + "/agents/process/ws"
    slow_answers(fake)
    async with websockets.connect(uri) as ws:
        await ws.send(json.dumps({"id": 1, "query": QUESTION}))
        await ws.send(json.dumps({"id": 2, "query": QUESTION}))
        refused = await _until(ws, "error")
        assert refused["id"] == 2 and refused["data"]["type"] == "busy" and refused["data"]["status"] == 409
        assert "server.ws_max_in_flight" in refused["data"]["message"]
        await ws.send(json.dumps({"type": "cancel"}))
        assert (await _until(ws, "end"))["data"] == {"cancelled": True}
        fake.chunk_delay = 0.0
        await ws.send(json.dumps({"id": 3, "query": QUESTION, "mcp_mode": True, "include_content": True}))
        sources = (await _until(ws, "sources"))["data"]
        assert sources[0]["title"] == "Contract Storage" and "storage" in sources[0]["content"].lower()


def test_process_sources_carry_their_text_only_when_asked(server: LiveServer) -> None:
    response = httpx.post(server.url + "/agents/process", json={"query": QUESTION, "mcp_mode": True}, timeout=30)
    first = json.loads(response.text.splitlines()[0])
    assert first["type"] == "sources" and "content" not in first["data"][0]
    response = httpx.post(
        server.url + "/agents/process", json={"query": QUESTION, "mcp_mode": True, "include_content": True}, timeout=30
    )
    assert "Contract Storage" in json.loads(response.text.splitlines()[0])["data"][0]["content"]


async def test_websocket_disconnect_cancels_generation(server: LiveServer, fake: FakeOpenAI) -> None:
    slow_answers(fake)
    uri = server.url.replace("http://", "ws://") + "/agents/process/ws"
    async with websockets.connect(uri) as ws:
        await ws.send(json.dumps({"query": QUESTION}))
        await _until(ws, "response")
    assert await asyncio.to_thread(wait_for_outcome, fake) == ["aborted"]


def test_sse_client_disconnect_cancels_generation(server: LiveServer, fake: FakeOpenAI) -> None:
    slow_answers(fake)
    conversation = "disconnect-test-sse"
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        timeout=30,
        headers={"x-conversation-id": conversation},
        json={"messages": [{"role": "user", "content": QUESTION}], "stream": True},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                break  # the first piece of the answer: leave now
    assert wait_for_outcome(fake) == ["aborted"]
    _assert_recorded_cancelled(server, conversation)


def test_non_streaming_client_disconnect_cancels_generation(server: LiveServer, fake: FakeOpenAI) -> None:
    slow_answers(fake)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/chat/completions",
            timeout=httpx.Timeout(10, read=1.5),
            json={"messages": [{"role": "user", "content": QUESTION}]},
        )
    assert wait_for_outcome(fake) == ["aborted"]
    deadline = time.monotonic() + 5
    while server.services.limiter.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.services.limiter.in_flight == 0


def _assert_recorded_cancelled(server: LiveServer, conversation: str) -> None:
    deadline = time.monotonic() + 5
    records: list[Any] = []
    while time.monotonic() < deadline:
        records = httpx.get(
            server.url + "/v1/insights/queries",
            headers={"x-admin-key": "admin"},
            params={"conversation_id": conversation},
        ).json()["data"]
        if records:
            break
        time.sleep(0.1)
    assert [r["status"] for r in records] == ["cancelled"]


async def _until(ws: Any, event_type: str) -> dict[str, Any]:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if event["type"] == event_type:
            return dict(event)


async def _until_end(ws: Any) -> list[dict[str, Any]]:
    events = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 30))
        events.append(event)
        if event["type"] in ("end", "error"):
            return events
