"""The database going away under a running server (requests in flight), and client text that PostgreSQL
cannot hold. A PostgreSQL of its own (pgserver) is stopped and restarted here; the session's server is not."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.sanitize import clean_json, clean_text
from cairo_coder.store.insights import InsightEntry, InsightsRecorder
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import build_kb, llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR is not set")
    import pgserver


class OwnPostgres:
    """A pgserver instance that a test may stop (its Unix socket disappears) and start again."""

    def __init__(self, data_dir: Path) -> None:
        self.server: Any = pgserver.get_server(data_dir, cleanup_mode="stop")

    def uri(self, database: str) -> str:
        return str(self.server.get_uri(database))

    def stop(self) -> None:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    pg = OwnPostgres(tmp_path_factory.mktemp("own_pg"))
    yield pg
    pg.start()
    pg.server.cleanup()


@pytest.fixture(scope="module")
async def own_kb(
    own_pg: OwnPostgres, tmp_path_factory: pytest.TempPathFactory, local_embedder: LocalEmbedder
) -> AsyncIterator[str]:
    admin = await asyncpg.connect(own_pg.uri("postgres"))
    await admin.execute('CREATE DATABASE "kb"')
    await admin.close()
    url = own_pg.uri("kb")
    await build_kb(url, tmp_path_factory.mktemp("own_corpus"), local_embedder)
    yield url


def post(server: LiveServer, body: Any, path: str = "/v1/chat/completions", **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def ask(mcp: bool = False, stream: bool = False) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": QUESTION}], "stream": stream}


async def mcp_tool(server: LiveServer, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    async with streamable_http_client(server.url + "/mcp") as (read, write, *_), ClientSession(read, write) as s:
        await s.initialize()
        result = await s.call_tool(name, arguments)
        return bool(result.is_error), "".join(getattr(c, "text", "") for c in result.content)


async def test_database_gone_is_503_everywhere_and_the_first_request_after_it_returns_succeeds(
    own_pg: OwnPostgres, own_kb: str, local_embedder: LocalEmbedder, fake: FakeOpenAI
) -> None:
    server = LiveServer(llm_settings(own_kb, fake, CAIRO_CODER_DATABASE__RETRY_SECONDS="1"), local_embedder).start()
    try:
        assert post(server, ask()).status_code == 200
        mcp_mode = {"x-mcp-mode": "true"}

        # Requests in flight when the database goes: they wait at the LLM, then need the database.
        fake.chat_delay = 1.5
        in_flight: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: in_flight.append(post(server, ask()))) for _ in range(3)]
        for thread in threads:
            thread.start()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_pg.stop)
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in in_flight] == [503] * 3, [r.text for r in in_flight]
        assert all(r.json()["error"]["code"] == "database_unavailable" for r in in_flight)
        fake.chat_delay = 0

        down = post(server, ask(), headers=mcp_mode)
        assert down.status_code == 503 and down.json()["error"]["code"] == "database_unavailable"
        assert "FileNotFoundError" not in down.text and down.headers.get("retry-after")
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=ask(stream=True), timeout=60) as r:
            raw = r.read().decode()
        assert "event: error" in raw and '"code":"database_unavailable"' in raw and raw.endswith("[DONE]\n\n")
        lines = [
            json.loads(line)
            for line in post(server, {"query": QUESTION, "mcp_mode": True}, "/agents/process").text.splitlines()
        ]
        assert lines[-1]["type"] == "error" and lines[-1]["data"]["status"] == 503
        for tool, arguments in (
            ("search_cairo_docs", {"query": "storage"}),
            ("get_cairo_doc_page", {"url": "https://www.starknet.io/cairo-book/x.html"}),
        ):
            is_error, text = await mcp_tool(server, tool, arguments)
            assert is_error and "database_unavailable" in text and "retry shortly" in text
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.json()["database"] is False
            assert (await client.get("/health")).status_code == 200

        await asyncio.to_thread(own_pg.start)
        assert post(server, ask(), headers=mcp_mode).status_code == 200, "the first request after the return"
        assert post(server, ask()).status_code == 200
        is_error, _ = await mcp_tool(server, "search_cairo_docs", {"query": "storage"})
        assert not is_error

        # No record lost: the outage's requests (recorded as errors) reach query insights once it is back.
        recorder = server.services.insights
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            conn = await asyncpg.connect(own_kb)
            try:
                errors = await conn.fetchval("SELECT count(*) FROM query_insights WHERE status = 'error'")
            finally:
                await conn.close()
            if errors >= 5:
                break
            await asyncio.sleep(0.5)
        assert errors >= 5 and recorder.failed == 0
    finally:
        fake.chat_delay = 0
        server.stop()


UNSTORABLE = ["\ud800", "a\udfffb", "\x00", "\ud83d\ude00 joined pair", "\\u0000", "ok \u2028 \U0001f600"]


def test_unstorable_client_text_is_answered_and_recorded(
    start_own: Callable[..., LiveServer], own_kb: str, fake: FakeOpenAI
) -> None:
    server = start_own()
    marker = f"u{time.monotonic_ns()}"
    for text in UNSTORABLE:
        raw = json.dumps({"messages": [{"role": "user", "content": f"storage {text}"}]})  # \ud800 escapes
        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=raw,
            timeout=60,
            headers={"content-type": "application/json", "x-mcp-mode": "true", "x-conversation-id": marker},
        )
        assert response.status_code == 200, response.text
    stored = asyncio.run(_wait_for_records(own_kb, marker, len(UNSTORABLE)))
    assert sorted(s.strip() for s in stored) == sorted(clean_text(f"storage {t}").strip() for t in UNSTORABLE)
    assert server.services.insights.failed == 0


async def _wait_for_records(url: str, conversation_id: str, count: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 20
        while True:
            rows = await conn.fetch("SELECT query FROM query_insights WHERE conversation_id = $1", conversation_id)
            if len(rows) >= count or time.monotonic() > deadline:
                return [r["query"] for r in rows]
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def start_own(own_kb: str, local_embedder: LocalEmbedder, fake: FakeOpenAI) -> Iterator[Callable[[], LiveServer]]:
    servers: list[LiveServer] = []

    def run() -> LiveServer:
        live = LiveServer(llm_settings(own_kb, fake), local_embedder).start()
        servers.append(live)
        return live

    yield run
    for live in servers:
        live.stop()


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=8))
def test_any_unicode_text_is_stored_and_one_record_never_fails_a_batch(own_kb: str, texts: list[str]) -> None:
    """Property: whatever text a client sends (lone surrogates, NUL, escapes...), a batch of records holding it
    is stored whole, the cleaned text is valid UTF-8, and valid text is stored unchanged."""
    for text in texts:
        cleaned = clean_text(text)
        cleaned.encode("utf-8")  # never raises
        if not any(0xD800 <= ord(c) <= 0xDFFF or c == "\x00" for c in text):
            assert cleaned == text
    asyncio.run(_write_batch(own_kb, texts))


async def _write_batch(url: str, texts: list[str]) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    try:
        recorder = InsightsRecorder(pool)
        recorder.start()
        marker = f"prop-{time.monotonic_ns()}"
        for text in texts:
            recorder.record(
                InsightEntry(
                    agent_id="cairo-coder",
                    query=text,
                    answer=text,
                    conversation_id=marker,
                    chat_history=[{"role": "user", "content": text, text: text}],
                    sources=[{"title": text}],
                    error=text,
                )
            )
        await recorder.flush()
        stored = await pool.fetch("SELECT query, chat_history FROM query_insights WHERE conversation_id = $1", marker)
        await recorder.aclose()
        assert recorder.failed == 0 and len(stored) == len(texts)
        assert sorted(r["query"] for r in stored) == sorted(clean_text(t) for t in texts)
        assert all(
            json.loads(r["chat_history"]) == clean_json([{"role": "user", "content": t, t: t}])
            for r, t in zip(sorted(stored, key=lambda r: r["query"]), sorted(texts, key=clean_text), strict=True)
        )
    finally:
        await pool.close()
