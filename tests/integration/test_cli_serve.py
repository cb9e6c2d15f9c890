"""`cairo-coder serve` as users run it: a fresh store is filled on first start (with progress), then the API
answers; a second start does not ingest again; insights can be turned off."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from tests.integration.mini_corpus import write_mini_corpus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(db_url: str, corpus: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))}
    env.update({"DATABASE_URL": db_url, "CAIRO_CODER_CORPUS": str(corpus), "CAIRO_CODER_EMBEDDINGS__PROVIDER": "none",
                "CAIRO_CODER_SERVER__INSIGHTS": "false", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    process = subprocess.Popen([sys.executable, "-m", "cairo_coder", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not start: {log.read_text()}")


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM).
    assert process.wait(timeout=30) in (0, -15)
    assert "Application shutdown complete" in log.read_text(), "a graceful shutdown (lifespan closed)"


async def test_serve_ingests_on_first_start_then_serves(db_url: str, tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    process, base = start(db_url, corpus, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            ready = (await http.get("/ready")).json()
            response = await http.post("/v1/chat/completions", headers={"x-mcp-mode": "yes"},
                                       json={"messages": [{"role": "user", "content": "How do I declare storage?"}]})
        assert ready["status"] == "ready" and ready["documents"] > 0 and ready["llm_configured"] is False
        assert response.status_code == 200 and "Contract Storage" in response.text
    finally:
        stop(process, tmp_path / "first.log")
    first_log = (tmp_path / "first.log").read_text()
    assert "ingesting the documentation first" in first_log and "cairo_book" in first_log
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM query_insights") == 0, "insights turned off"
        indexed = await conn.fetchval("SELECT max(indexed_at) FROM pages")
    finally:
        await conn.close()
    process, base = start(db_url, corpus, tmp_path / "second.log")
    stop(process, tmp_path / "second.log")
    assert "ingesting" not in (tmp_path / "second.log").read_text()
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT max(indexed_at) FROM pages") == indexed, "nothing re-ingested"
    finally:
        await conn.close()
