"""The API server as OpenAI clients see it: the official `openai` client against uvicorn on 127.0.0.1, raw SSE,
agent base URLs, model discovery, MCP mode, per-request answers under concurrency, query insights."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from cairo_coder.embeddings import LocalEmbedder
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"
ADMIN = "admin-secret"


@pytest.fixture(scope="module")
def server(kb_url: str, fake: FakeOpenAI, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    settings = llm_settings(
        kb_url, fake, CAIRO_CODER_SERVER__ADMIN_KEY=ADMIN, CAIRO_CODER_SERVER__MAX_CONCURRENT_REQUESTS="200"
    )
    live = LiveServer(settings, local_embedder).start()
    yield live
    live.stop()


def client(server: LiveServer, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + base, api_key="unused", max_retries=0)


def test_non_streaming_answer_is_a_chat_completion_with_usage_and_sources(server: LiveServer) -> None:
    completion = client(server).chat.completions.create(
        model="cairo-coder", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "cairo-coder"
    message = completion.choices[0].message
    assert message.role == "assistant" and message.content.startswith(f"ANSWER<{QUESTION}>")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    sources = completion.model_extra["sources"]  # type: ignore[index]
    assert sources[0]["title"] == "Contract Storage" and sources[0]["url"].startswith("https://book.cairo-lang.org/")
    assert completion.model_extra["citations"] == [1]  # type: ignore[index]  # the answer cites [1]


def test_streaming_with_the_openai_client_gives_the_same_answer(server: LiveServer) -> None:
    oai = client(server)
    whole = oai.chat.completions.create(model="cairo-coder", messages=[{"role": "user", "content": QUESTION}])
    stream = oai.chat.completions.create(
        model="cairo-coder",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == whole.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1, "streamed in pieces"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].usage.total_tokens > 0  # type: ignore[union-attr]


def test_raw_sse_stream_has_own_events_then_chunks_then_done(server: LiveServer) -> None:
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        timeout=30,
        json={"messages": [{"role": "user", "content": QUESTION}], "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines.get("event"), lines["data"]))
    assert events[-1] == (None, "[DONE]")
    named = [name for name, _ in events if name]
    assert named == ["processing", "processing", "sources", "final_response"]
    data = {name: json.loads(body) for name, body in events if name}
    assert data["sources"]["choices"] == [] and data["sources"]["object"] == "chat.completion.chunk"
    assert data["sources"]["cairo_coder"]["data"][0]["title"] == "Contract Storage"
    final = data["final_response"]["cairo_coder"]["data"]
    content = "".join(
        json.loads(body)["choices"][0]["delta"].get("content") or ""
        for name, body in events[:-1]
        if name is None and json.loads(body)["choices"]
    )
    assert final["answer"] == content.strip() and final["usage"]["total_tokens"] > 0
    assert final["citations"] == [1] and final["unknown_citations"] == []


def test_agent_base_urls_and_model_names_select_the_agent(server: LiveServer, fake: FakeOpenAI) -> None:
    question = "How do I add a dependency in Scarb.toml?"
    scarb = client(server, "/v1/agents/scarb-assistant").chat.completions.create(
        model="anything", messages=[{"role": "user", "content": question}]
    )
    assert scarb.model == "scarb-assistant"
    by_model = client(server).chat.completions.create(
        model="scarb-assistant", messages=[{"role": "user", "content": question}]
    )
    assert by_model.model == "scarb-assistant"
    legacy = client(server, "").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": question}]
    )
    assert legacy.model == "cairo-coder"
    for completion in (scarb, by_model):
        sources = completion.model_extra["sources"]  # type: ignore[index]
        assert sources and {s["source"] for s in sources} == {"scarb_docs"}
    with pytest.raises(openai.NotFoundError) as caught:
        client(server, "/v1/agents/nope").chat.completions.create(
            model="x", messages=[{"role": "user", "content": question}]
        )
    assert "unknown agent 'nope'" in caught.value.message and caught.value.code == "unknown_agent"


def test_models_and_agents_are_discoverable(server: LiveServer) -> None:
    models = [m.id for m in client(server).models.list()]
    assert models == ["cairo-coder", "scarb-assistant", "starknet-agent"]
    agents = httpx.get(server.url + "/v1/agents").json()["data"]
    by_id = {a["id"]: a for a in agents}
    assert by_id["scarb-assistant"]["sources"] == ["scarb_docs"] and by_id["cairo-coder"]["default"] is True


def test_history_is_the_earlier_messages_and_system_prompts_are_accepted(server: LiveServer, fake: FakeOpenAI) -> None:
    messages: list[Any] = [{"role": "system", "content": "You are terse."}]
    for i in range(14):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn-{i}"})
    messages.append({"role": "user", "content": [{"type": "text", "text": QUESTION}]})
    completion = client(server).chat.completions.create(
        model="cairo-coder", messages=messages, temperature=0.3, max_tokens=500
    )
    assert completion.choices[0].message.content.startswith(f"ANSWER<{QUESTION}>")
    generation = fake.chat_requests()[-1]["body"]
    prompt = generation["messages"][-1]["content"]
    assert "turn-13" in prompt and "turn-4" in prompt and "turn-3" not in prompt, "the last 10 messages are kept"
    assert generation["temperature"] == 0.3 and generation["max_tokens"] == 500


@pytest.mark.parametrize("header", ["x-mcp-mode", "mcp"])
def test_mcp_mode_header_returns_documentation_without_generation(
    server: LiveServer, fake: FakeOpenAI, header: str
) -> None:
    response = httpx.post(
        server.url + "/v1/chat/completions",
        headers={header: "true"},
        timeout=30,
        json={"messages": [{"role": "user", "content": QUESTION}]},
    )
    assert response.status_code == 200
    content = response.json()["choices"][0]["message"]["content"]
    assert "Contract Storage" in content and "https://book.cairo-lang.org/" in content
    assert not any(r["body"].get("stream") for r in fake.chat_requests()), "no generation call in MCP mode"
    off = httpx.post(
        server.url + "/v1/chat/completions",
        headers={header: "No"},
        timeout=30,
        json={"messages": [{"role": "user", "content": QUESTION}]},
    )
    assert off.json()["choices"][0]["message"]["content"].startswith("ANSWER<")


async def test_fifty_concurrent_streaming_clients_each_get_their_own_answer(
    server: LiveServer, fake: FakeOpenAI
) -> None:
    fake.chunk_size = 6
    oai = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)

    async def ask(i: int) -> tuple[str, str]:
        question = f"How do I write test number {i} for a contract?"
        stream = await oai.chat.completions.create(
            model="cairo-coder", stream=True, messages=[{"role": "user", "content": question}]
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return question, text

    results = await asyncio.gather(*(ask(i) for i in range(50)))
    await oai.close()
    for question, text in results:
        assert text.strip().startswith(f"ANSWER<{question}>"), (question, text[:80])
    assert len({text for _, text in results}) == 50


def test_answered_requests_are_recorded_in_query_insights(server: LiveServer) -> None:
    conversation = uuid.uuid4().hex
    for i in range(3):
        client(server).chat.completions.create(
            model="cairo-coder",
            messages=[{"role": "user", "content": f"{QUESTION} ({i})"}],
            extra_headers={"x-conversation-id": conversation, "x-user-id": "alice"},
        )
    asyncio.run_coroutine_threadsafe(server.services.insights.flush(), _loop(server)).result(10)
    admin = {"x-admin-key": ADMIN}
    page = httpx.get(
        server.url + "/v1/insights/queries", headers=admin, params={"conversation_id": conversation, "limit": 2}
    ).json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    record = page["data"][0]
    assert record["query"] == f"{QUESTION} (2)" and record["agent_id"] == "cairo-coder"
    assert record["answer"].startswith("ANSWER<") and record["sources"] and record["usage"]["total_tokens"] > 0
    assert record["status"] == "ok" and record["duration_ms"] > 0
    assert record["user_hash"] and "alice" not in json.dumps(record)
    rest = httpx.get(
        server.url + "/v1/insights/queries",
        headers=admin,
        params={"conversation_id": conversation, "cursor": page["next_cursor"]},
    ).json()
    assert [r["query"] for r in rest["data"]] == [f"{QUESTION} (0)"] and rest["has_more"] is False
    by_user = httpx.get(
        server.url + "/v1/insights/queries", headers=admin, params={"user": "alice", "text": "(1)"}
    ).json()
    assert [r["conversation_id"] for r in by_user["data"]] == [conversation]
    by_date = httpx.get(
        server.url + "/v1/insights/queries",
        headers=admin,
        params={"conversation_id": conversation, "since": "2100-01-01T00:00:00Z"},
    ).json()
    assert by_date["data"] == []
    assert httpx.get(server.url + "/v1/insights/queries").status_code == 401
    wrong = httpx.get(server.url + "/v1/insights/queries", headers={"x-admin-key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_key"
    too_many = httpx.get(server.url + "/v1/insights/queries", headers=admin, params={"limit": 1000})
    assert too_many.status_code == 400


def test_suggestions_come_from_a_small_program(server: LiveServer, fake: FakeOpenAI) -> None:
    response = httpx.post(
        server.url + "/v1/suggestions",
        timeout=30,
        json={
            "chat_history": [
                {"role": "user", "content": "How do I write an ERC20?"},
                {"role": "assistant", "content": "Use the OpenZeppelin component."},
            ]
        },
    )
    assert response.status_code == 200
    suggestions = response.json()["suggestions"]
    assert 1 <= len(suggestions) <= 5 and all(isinstance(s, str) and s for s in suggestions)
    assert "ERC20" in fake.chat_requests()[-1]["body"]["messages"][-1]["content"]


def test_health_ready_and_docs(server: LiveServer) -> None:
    assert httpx.get(server.url + "/").json()["status"] == "ok"
    assert httpx.get(server.url + "/health").status_code == 200
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 200
    assert ready.json() | {"problems": []} == {
        "status": "ready",
        "database": True,
        "documents": ready.json()["documents"],
        "llm_configured": True,
        "problems": [],
    }
    assert ready.json()["documents"] > 0
    assert httpx.get(server.url + "/docs").status_code == 200
    schema = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"] and "/agents/process" in schema["paths"]


def _loop(server: LiveServer) -> asyncio.AbstractEventLoop:
    loop = server.services.store.pool._loop
    assert isinstance(loop, asyncio.AbstractEventLoop)
    return loop


def test_the_lm15_engine_answers_streams_and_maps_errors(
    kb_url: str, fake: FakeOpenAI, local_embedder: LocalEmbedder
) -> None:
    live = LiveServer(
        llm_settings(kb_url, fake, CAIRO_CODER_LLM__ENGINE="lm15", CAIRO_CODER_LLM__RETRIES="0"), local_embedder
    ).start()
    try:
        oai = client(live)
        whole = oai.chat.completions.create(model="cairo-coder", messages=[{"role": "user", "content": QUESTION}])
        assert whole.choices[0].message.content.startswith(f"ANSWER<{QUESTION}>")
        assert whole.usage is not None and whole.usage.total_tokens > 0
        chunks = list(
            oai.chat.completions.create(
                model="cairo-coder", stream=True, messages=[{"role": "user", "content": QUESTION}]
            )
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
            == whole.choices[0].message.content
        )
        fake.chat_failures.extend([429])
        with pytest.raises(openai.RateLimitError):
            oai.chat.completions.create(model="cairo-coder", messages=[{"role": "user", "content": QUESTION}])
    finally:
        live.stop()
