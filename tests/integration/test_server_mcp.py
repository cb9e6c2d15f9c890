"""The MCP documentation server, through the official `mcp` client: streamable HTTP at /mcp and stdio
(`cairo-coder mcp` as a subprocess)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.tokens import count_tokens
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

QUESTION = "How do I declare storage variables in a contract?"


@pytest.fixture(scope="module")
def server(kb_url: str, fake: FakeOpenAI, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    live = LiveServer(llm_settings(kb_url, fake), local_embedder).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def bare_server(kb_url: str, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    live = LiveServer(make_settings(kb_url), local_embedder).start()
    yield live
    live.stop()


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def check_documentation_tools(client: Client) -> None:
    found = await client.call_tool("search_cairo_docs", {"query": QUESTION})
    assert not found.is_error
    text = text_of(found)
    assert text.startswith("## [1] Contract Storage") and "https://book.cairo-lang.org/" in text
    assert "Source: cairo_book" in text
    small = text_of(await client.call_tool("search_cairo_docs", {"query": QUESTION, "max_tokens": 100}))
    assert count_tokens(small) <= 100 and len(small) < len(text) and small.startswith("## [1] Contract Storage")
    scarb = text_of(await client.call_tool("search_cairo_docs", {"query": "dependencies", "sources": ["scarb_docs"]}))
    assert "Source: scarb_docs" in scarb and "Source: cairo_book" not in scarb
    bad = await client.call_tool("search_cairo_docs", {"query": "x", "sources": ["nope"]})
    assert bad.is_error and "unknown source 'nope'; known sources: cairo_book" in text_of(bad)
    url = text.split("Source: cairo_book", 1)[1].split("— ", 1)[1].split("\n", 1)[0].split("#", 1)[0]
    page = await client.call_tool("get_cairo_doc_page", {"url": url})
    assert not page.is_error and text_of(page).startswith("# Contract Storage")
    missing = await client.call_tool("get_cairo_doc_page", {"url": "https://example.com/none"})
    assert missing.is_error and "search_cairo_docs" in text_of(missing)


async def test_streamable_http_tools_with_an_llm(server: LiveServer, fake: FakeOpenAI) -> None:
    async with Client(server.url + "/mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"search_cairo_docs", "get_cairo_doc_page", "ask_cairo_coder"}
        assert "before relying on memory" in (tools["search_cairo_docs"].description or "")
        assert set(tools["search_cairo_docs"].input_schema["properties"]) == {"query", "sources", "max_tokens"}
        assert set(tools["ask_cairo_coder"].input_schema["properties"]) == {"query", "history", "code_snippets"}
        await check_documentation_tools(client)
        answer = await client.call_tool(
            "ask_cairo_coder", {"query": QUESTION, "history": ["hi", "hello"], "code_snippets": ["fn main() {}"]}
        )
        text = text_of(answer)
        assert not answer.is_error and text.startswith(f"ANSWER<{QUESTION}")
        assert "Sources:\n[1] Contract Storage" in text  # nothing cited (the [1] is inside the quoted code)
        assert "not cited" not in text
        fake.fields["answer"] = "Declare them in the `#[storage]` struct [2]."
        text = text_of(await client.call_tool("ask_cairo_coder", {"query": QUESTION}))
        assert text.startswith("Declare them in the `#[storage]` struct [2].\n\nSources:\n[2] ")
        assert "\n\nAlso retrieved, not cited:\n[1] Contract Storage" in text


async def test_without_an_llm_only_documentation_tools_are_offered(bare_server: LiveServer) -> None:
    async with Client(bare_server.url + "/mcp") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"search_cairo_docs", "get_cairo_doc_page"}


async def test_stdio_transport(kb_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))}
    env.update({"DATABASE_URL": kb_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"})
    params = StdioServerParameters(command=sys.executable, args=["-m", "cairo_coder", "mcp"], env=env)
    async with Client(params, read_timeout_seconds=120) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"search_cairo_docs", "get_cairo_doc_page"}
        await check_documentation_tools(client)


def initialize(server: LiveServer, host: str, origin: str | None = None) -> int:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"host": host, "accept": "application/json, text/event-stream"} | ({"origin": origin} if origin else {})
    return httpx.post(server.url + "/mcp", json=body, headers=headers, timeout=30).status_code


def test_dns_rebinding_protection_and_allowed_hosts(
    kb_url: str, local_embedder: LocalEmbedder, bare_server: LiveServer
) -> None:
    """Loopback bind: only localhost Host headers (the SDK's default). A proxied public name is accepted once
    it is listed in server.allowed_hosts, with or without a port; other names and foreign origins are not."""
    port = bare_server.url.rsplit(":", 1)[1]
    assert initialize(bare_server, f"127.0.0.1:{port}") == 200
    assert initialize(bare_server, "docs.example.com") == 421
    live = LiveServer(
        make_settings(kb_url, CAIRO_CODER_SERVER__ALLOWED_HOSTS='["docs.example.com"]'), local_embedder
    ).start()
    try:
        assert initialize(live, "docs.example.com") == 200
        assert initialize(live, "docs.example.com:8443", origin="https://docs.example.com") == 200
        assert initialize(live, f"localhost:{port}") == 200
        assert initialize(live, "evil.example.com") == 421
        assert initialize(live, "docs.example.com", origin="https://evil.example.com") == 403
    finally:
        live.stop()
