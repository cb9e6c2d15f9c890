"""`cairo-coder serve` as users run it: a fresh store is filled on first start (with progress), then the API
answers; a second start does not ingest again; insights can be turned off."""

from __future__ import annotations

import asyncio
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


def serve_env(db_url: str, corpus: Path) -> dict[str, str]:
    """The environment of a `cairo-coder` subprocess on ``db_url`` and the mini corpus: no model, no embedder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))}
    env.update(
        {
            "DATABASE_URL": db_url,
            "CAIRO_CODER_CORPUS": str(corpus),
            "CAIRO_CODER_EMBEDDINGS__PROVIDER": "none",
            "CAIRO_CODER_SERVER__INSIGHTS": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
    )
    return env


def launch(
    env: dict[str, str], log: Path, *options: str, config: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`cairo-coder serve` on a free port, not waited for (several can start at the same moment)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "cairo_coder",
        *(["--config", str(config)] if config else []),
        "serve",
        "--port",
        str(port),
        *options,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not start: {log.read_text()}")


def start(
    db_url: str, corpus: Path, log: Path, *options: str, config: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    process, base = launch(serve_env(db_url, corpus), log, *options, config=config)
    wait_healthy(process, base, log)
    return process, base


def stop(process: subprocess.Popen[bytes], log: Path, lifespans: int = 1) -> None:
    process.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM).
    assert process.wait(timeout=30) in (0, -15)
    closed = log.read_text().count("Application shutdown complete")
    assert closed == lifespans, f"a graceful shutdown (lifespan closed) in each of {lifespans} process(es)"


def wait_for_workers(process: subprocess.Popen[bytes], log: Path, count: int) -> list[int]:
    """The worker processes' ids, once ``count`` of them have completed their startup (lifespan opened)."""
    deadline = time.monotonic() + 60
    while log.read_text().count("Application startup complete") < count:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    pids = [int(c) for c in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
    return [pid for pid in pids if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]


async def test_serve_ingests_on_first_start_then_serves(db_url: str, tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    process, base = start(db_url, corpus, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            ready = (await http.get("/ready")).json()
            response = await http.post(
                "/v1/chat/completions",
                headers={"x-mcp-mode": "yes"},
                json={"messages": [{"role": "user", "content": "How do I declare storage?"}]},
            )
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


async def test_serve_with_workers_shares_the_configuration(db_url: str, tmp_path: Path) -> None:
    """`serve --workers 2`: two worker processes, each built from the same config file and options, each
    serving (connections are spread by the kernel), all shut down gracefully."""
    corpus = write_mini_corpus(tmp_path / "corpus")
    config = tmp_path / "cairo-coder.toml"
    config.write_text('[agents.book-only]\nname = "Book only"\nsources = ["cairo_book"]\n')
    process, base = start(db_url, corpus, tmp_path / "first.log", config=config)  # ingests, in one process
    stop(process, tmp_path / "first.log")
    log = tmp_path / "workers.log"
    process, base = start(db_url, corpus, log, "--workers", "2", "--no-ingest", config=config)
    try:
        assert len(wait_for_workers(process, log, 2)) == 2
        question = {"messages": [{"role": "user", "content": "How do I declare storage?"}]}

        async def ask(http: httpx.AsyncClient) -> tuple[list[str], str]:
            agents = (await http.get("/v1/agents")).json()["data"]
            answer = await http.post("/v1/chat/completions", headers={"x-mcp-mode": "true"}, json=question)
            assert answer.status_code == 200, answer.text
            return [a["id"] for a in agents], answer.json()["choices"][0]["message"]["content"]

        # New connections each time, so that both workers take some of them.
        results = []
        for _ in range(3):
            clients = [httpx.AsyncClient(base_url=base, timeout=30) for _ in range(8)]
            results += await asyncio.gather(*(ask(http) for http in clients))
            for http in clients:
                await http.aclose()
        assert all("book-only" in ids for ids, _ in results), "the workers built their settings from the file"
        assert all("Contract Storage" in text for _, text in results)
        # One scrape sees every worker's samples (multiprocess mode): 24 answers, whichever worker took them.
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(4):  # each scrape lands on either worker
                scraped = (await http.get("/metrics")).text
                answered = [
                    float(line.rsplit(" ", 1)[1])
                    for line in scraped.splitlines()
                    if line.startswith('cairo_coder_requests_total{agent="cairo-coder",mode="mcp",status="ok"}')
                ]
                assert answered == [24.0], answered
    finally:
        stop(process, log, lifespans=2)
