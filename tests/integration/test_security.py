"""Cross-site use of a local server: a page from another origin (or a rebound DNS name) cannot use the API or
the WebSocket, while the server's own pages and configured origins can; the MCP tool that spends LLM calls
shares the server's concurrency limit.

Browsers always send ``Origin`` on cross-origin requests and WebSocket handshakes, and cannot forge it or the
``Host`` a rebound name resolves with: these requests carry exactly what such a page's browser would send."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from cairo_coder.config import ServerSettings
from cairo_coder.server.security import allowed_host_names, host_name
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"
ATTACKER = "http://attacker.example"


def chat(server: LiveServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        timeout=30,
        headers=headers,
        json={"messages": [{"role": "user", "content": QUESTION}]},
    )


def ws_answer(server: LiveServer, origin: str | None) -> str:
    """The type of the last event of one WebSocket request sent with ``origin``."""
    with connect(server.url.replace("http", "ws") + "/agents/process/ws", origin=origin) as ws:  # type: ignore[arg-type]
        ws.send('{"query": "storage variables", "mcp_mode": true}')
        kind = ""
        while kind not in ("end", "error"):
            kind = json.loads(ws.recv(timeout=30))["type"]
        return kind


def test_pages_of_other_origins_cannot_use_the_api_or_the_websocket(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    server = start(llm_settings(kb_url, fake))
    own = server.url  # the server's own page: its Origin is the server's origin
    assert chat(server, {}).status_code == 200  # not a browser: no Origin
    assert chat(server, {"origin": own}).status_code == 200
    fake.reset()
    refused = chat(server, {"origin": ATTACKER})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    assert chat(server, {"origin": "null"}).status_code == 403  # sandboxed frames, file:// pages
    other_local = "http://localhost:8080"  # another local dev server's page is another site
    assert chat(server, {"origin": other_local}).status_code == 403
    process = httpx.post(
        server.url + "/agents/process",
        json={"query": QUESTION, "mcp_mode": True},
        headers={"origin": ATTACKER},
        timeout=30,
    )
    assert process.status_code == 403
    assert fake.chat_requests() == [], "a refused page must not spend a single LLM call"

    assert ws_answer(server, own) == "end"
    with pytest.raises(InvalidStatus) as refused_ws:
        ws_answer(server, ATTACKER)
    assert refused_ws.value.response.status_code == 403

    # DNS rebinding: the attacker's name resolving to 127.0.0.1 reaches the server with its own Host.
    rebound = chat(server, {"host": "attacker.example"})
    assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "invalid_host"
    refused_handshake = raw_handshake(server, "attacker.example")
    assert refused_handshake.startswith("HTTP/1.1 421") and "invalid_host" in refused_handshake
    assert raw_handshake(server, "127.0.0.1").startswith("HTTP/1.1 101")


def raw_handshake(server: LiveServer, host: str) -> str:
    """The status line of a WebSocket handshake sent with ``host`` (a rebound name's browser sends its own)."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET /agents/process/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return sock.recv(2000).decode(errors="replace")


def test_configured_origins_and_names_are_allowed(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    server = start(
        llm_settings(
            kb_url,
            fake,
            CAIRO_CODER_SERVER__CORS_ORIGINS='["https://app.example.com"]',
            CAIRO_CODER_SERVER__ALLOWED_HOSTS='["docs.example.com"]',
        )
    )
    allowed = chat(server, {"origin": "https://app.example.com"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert chat(server, {"origin": ATTACKER}).status_code == 403
    assert chat(server, {"host": "docs.example.com"}).status_code == 200
    assert chat(server, {"host": "docs.example.com", "origin": "https://docs.example.com"}).status_code == 200
    assert chat(server, {"host": "evil.example.com"}).status_code == 421
    assert ws_answer(server, "https://app.example.com") == "end"
    # Health probes come with the pod's address as Host: answered.
    assert httpx.get(server.url + "/health", headers={"host": "10.1.2.3:3001"}, timeout=10).status_code == 200


def test_host_rules() -> None:
    assert host_name("127.0.0.1:3001") == "127.0.0.1" and host_name("[::1]:80") == "[::1]"
    assert host_name("Docs.Example.com:*") == "docs.example.com"
    loopback = allowed_host_names(ServerSettings())
    assert loopback is not None and "localhost" in loopback and "evil.example" not in loopback
    assert allowed_host_names(ServerSettings(host="0.0.0.0")) is None  # public names unknown: not checked
    named = allowed_host_names(ServerSettings(host="0.0.0.0", allowed_hosts=["docs.example.com"]))
    assert named is not None and "docs.example.com" in named
    assert allowed_host_names(ServerSettings(allowed_hosts=["*"])) is None


async def test_mcp_ask_shares_the_concurrency_limit(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI
) -> None:
    server = start(llm_settings(kb_url, fake, CAIRO_CODER_SERVER__MAX_CONCURRENT_REQUESTS="2"))
    fake.chat_delay = 0.5

    async def ask_once() -> tuple[bool, str]:
        async with (
            streamable_http_client(server.url + "/mcp") as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("ask_cairo_coder", {"query": QUESTION})
            text = "".join(getattr(c, "text", "") for c in result.content)
            return result.is_error, text

    results = await asyncio.gather(*(ask_once() for _ in range(6)))
    refused = [text for is_error, text in results if is_error]
    assert 2 <= len(results) - len(refused) <= 2 + 2  # a call may finish before the last ones start
    assert refused and all("concurrency_limit" in text for text in refused)
    assert server.services.limiter.in_flight == 0
