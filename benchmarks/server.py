"""The API server under load: requests/s, latency, time to first byte, memory.

    uv run --extra local python benchmarks/server.py [--embeddings remote|none|local] [--soak 10000]
    uv run --extra local python benchmarks/server.py --observability-ab 6 --sequential 100 --concurrent 300

Three processes, as in production: the fake OpenAI-compatible LLM/embedding server (tests/fake_openai.py,
answering instantly), `cairo-coder serve` (one uvicorn worker, embedded PostgreSQL under .bench/, the shared
corpus ingested on its first start), and this load generator (httpx, N concurrent clients). For each mode
(non-streaming full answers, streaming full answers with time to first byte, MCP mode) at 1 and 32 concurrent
clients: requests/s, p50/p99 latency. Then the server's RSS after 1,000 and after --soak requests, and 32
clients with the fake LLM delaying every call by 100 ms (nothing may block the event loop).

Targets (2 cores, one worker): >= 60 full-answer and >= 150 MCP-mode requests/s at 32 clients with p99 < 500 ms;
sequential full-answer p50 < 30 ms; RSS after 10,000 requests within 10 % of RSS after 1,000; >= 50 requests/s
at 32 clients with 100 ms LLM calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_MODEL, CORPUS, DATASET, REPO, describe, fake_openai_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    def __init__(self, base: str, questions: list[str]) -> None:
        self.base = base
        self.questions = questions
        self.sent = 0
        self.client = httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )

    def body(self, stream: bool = False) -> dict[str, Any]:
        question = self.questions[self.sent % len(self.questions)]
        self.sent += 1
        return {"model": "cairo-coder", "messages": [{"role": "user", "content": question}], "stream": stream}

    async def one(self, mode: str) -> tuple[float, float]:
        """(latency ms, time to first content byte ms) of one request."""
        started = time.perf_counter()
        headers = {"x-mcp-mode": "true"} if mode == "mcp" else {}
        if mode != "stream":
            response = await self.client.post("/v1/chat/completions", json=self.body(), headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"request failed: {response.status_code} {response.text[:300]}")
            elapsed = (time.perf_counter() - started) * 1000
            return elapsed, elapsed
        first = 0.0
        async with self.client.stream("POST", "/v1/chat/completions", json=self.body(True)) as response:
            async for line in response.aiter_lines():
                if not first and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    first = (time.perf_counter() - started) * 1000
                if line.startswith("event: error"):
                    raise SystemExit("stream failed")
        return (time.perf_counter() - started) * 1000, first

    async def run(self, mode: str, clients: int, requests: int) -> dict[str, Any]:
        latencies: list[float] = []
        firsts: list[float] = []
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latency, first = await self.one(mode)
                latencies.append(latency)
                firsts.append(first)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        return {"rps": len(latencies) / elapsed, "latencies": latencies, "firsts": firsts}


def report(label: str, result: dict[str, Any], target: str = "") -> None:
    print(f"{label:<34} {result['rps']:7.1f} req/s   {describe(result['latencies'])}  {target}")
    if "stream" in label:
        print(f"{'  time to first answer byte':<34} {'':>13}   {describe(result['firsts'])}")


async def bench(args: argparse.Namespace, server: subprocess.Popen[str], base: str, fake_url: str) -> None:
    questions = [json.loads(line)["query"] for line in DATASET.read_text().splitlines() if line.strip()]
    load = Load(base, questions)
    async with httpx.AsyncClient() as control:
        await control.post(fake_url.removesuffix("/v1") + "/control", json={"chat_delay": 0, "log": False})
    for mode in ("full", "stream", "mcp"):  # warm-up: pools, caches, lazy imports
        await load.run(mode, 4, 20)
    print(f"\n== {args.embeddings} embeddings, one worker, fake LLM answering instantly")
    for clients, count in ((1, args.sequential), (32, args.concurrent)):
        report(
            f"full answer, {clients} client(s)",
            await load.run("full", clients, count),
            "target p50 < 30 ms" if clients == 1 else "target >= 60 req/s, p99 < 500 ms",
        )
        report(f"full answer stream, {clients} client(s)", await load.run("stream", clients, count))
        report(
            f"MCP mode, {clients} client(s)",
            await load.run("mcp", clients, count),
            "" if clients == 1 else "target >= 150 req/s, p99 < 500 ms",
        )
    print("\n== memory (server RSS)")
    modes = ("full", "stream", "mcp")
    while load.sent < 1000:
        await load.run(modes[load.sent % 3], 32, min(300, 1000 - load.sent))
    rss_1k = rss_mb(server.pid)
    print(f"after {load.sent:>6} requests: {rss_1k:7.1f} MB")
    while load.sent < args.soak:
        await load.run(modes[(load.sent // 300) % 3], 32, min(300, args.soak - load.sent))
    rss_end = rss_mb(server.pid)
    print(
        f"after {load.sent:>6} requests: {rss_end:7.1f} MB   ({(rss_end / rss_1k - 1) * 100:+.1f} %, "
        "target within 10 %)"
    )
    print("\n== fake LLM delaying every call by 100 ms")
    async with httpx.AsyncClient() as control:
        await control.post(fake_url.removesuffix("/v1") + "/control", json={"chat_delay": 0.1})
    result = await load.run("full", 32, args.concurrent)
    report("full answer, 32 clients", result, "target >= 50 req/s")
    await load.client.aclose()


async def observability_ab(args: argparse.Namespace, bases: dict[str, str], fake_url: str) -> None:
    """The same load on two servers of one store, in alternating order: "on" (metrics, logs at INFO, tracing
    off, as shipped) and "off" (server.metrics = false, logs at WARNING: no per-request work)."""
    questions = [json.loads(line)["query"] for line in DATASET.read_text().splitlines() if line.strip()]
    loads = {name: Load(base, questions) for name, base in bases.items()}
    async with httpx.AsyncClient() as control:
        await control.post(fake_url.removesuffix("/v1") + "/control", json={"chat_delay": 0, "log": False})
    for load in loads.values():
        await load.run("full", 4, 40)
    p50s: dict[str, list[float]] = {name: [] for name in loads}
    rps: dict[str, list[float]] = {name: [] for name in loads}
    for round_ in range(args.ab_rounds):
        order = list(loads) if round_ % 2 == 0 else list(reversed(loads))
        for name in order:
            sequential = await loads[name].run("full", 1, args.sequential)
            p50s[name].append(sorted(sequential["latencies"])[len(sequential["latencies"]) // 2])
            rps[name].append((await loads[name].run("full", 32, args.concurrent))["rps"])
    print(f"\n== observability on vs off, {args.ab_rounds} alternating rounds (medians of the rounds)")
    median = {name: (statistics.median(p50s[name]), statistics.median(rps[name])) for name in loads}
    for name, (p50, throughput) in median.items():
        print(f"{name:<4} full answer p50 (1 client) {p50:6.1f} ms   32 clients {throughput:6.1f} req/s")
    on, off = median["on"], median["off"]
    print(
        f"on - off: p50 {on[0] - off[0]:+.1f} ms (target <= +2 ms), throughput {(on[1] / off[1] - 1) * 100:+.1f} % "
        "(target >= -5 %)"
    )
    for load in loads.values():
        await load.client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", choices=("remote", "none", "local"), default="remote")
    parser.add_argument("--sequential", type=int, default=200, help="requests per mode with one client")
    parser.add_argument("--concurrent", type=int, default=1000, help="requests per mode with 32 clients")
    parser.add_argument("--soak", type=int, default=10_000, help="total requests before the last RSS reading")
    parser.add_argument("--log-level", default="INFO", help="the server's log.level (WARNING: no per-request line)")
    parser.add_argument(
        "--observability-ab",
        dest="ab_rounds",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="instead: compare metrics + INFO logs against neither, on two servers in alternating rounds",
    )
    args = parser.parse_args()
    with fake_openai_server() as fake_url:
        run_server(args, fake_url)


def run_server(args: argparse.Namespace, fake_url: str) -> None:
    root = Path(os.environ.get("CAIRO_CODER_BENCH_DIR") or REPO / ".bench")
    env = {
        **os.environ,
        "CAIRO_CODER_MODEL": BENCH_MODEL,
        "OPENAI_BASE_URL": fake_url,
        "OPENAI_API_KEY": "sk-bench",
        "CAIRO_CODER_EMBEDDINGS__PROVIDER": args.embeddings,
        "CAIRO_CODER_DATABASE__DATA_DIR": str(root / f"pipeline-{args.embeddings}"),
        "CAIRO_CODER_CORPUS": str(CORPUS),
        "CAIRO_CODER_SERVER__MAX_CONCURRENT_REQUESTS": "256",
        "CAIRO_CODER_SERVER__INSIGHTS": "true",
        "HF_HUB_OFFLINE": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "CAIRO_CODER_LOG__LEVEL": args.log_level,  # INFO: one line per request, as in production
        "CAIRO_CODER_LOG__FORMAT": "json",
    }
    root.mkdir(parents=True, exist_ok=True)
    if args.embeddings == "remote":
        env["CAIRO_CODER_EMBEDDINGS__API_BASE"] = fake_url
    if not args.ab_rounds:
        server, base = start_server(env, root / "server.log")
        try:
            asyncio.run(bench(args, server, base, fake_url))
        finally:
            server.terminate()
            server.wait(timeout=30)
        return
    off = {**env, "CAIRO_CODER_SERVER__METRICS": "false", "CAIRO_CODER_LOG__LEVEL": "WARNING"}
    servers = {"on": start_server(env, root / "server-on.log")}
    servers["off"] = start_server(off, root / "server-off.log")  # the store is filled: no second ingestion
    try:
        asyncio.run(observability_ab(args, {name: base for name, (_, base) in servers.items()}, fake_url))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)


def start_server(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """`cairo-coder serve` on a free port, logging to a file (never an undrained pipe: a full pipe would stall
    the server), once it is ready."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cairo_coder", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("w"),
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 1800  # first start ingests the corpus
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise SystemExit("the server did not become ready")
        time.sleep(0.5)
    print(f"server ready: {httpx.get(base + '/ready').json()['documents']} chunks")
    return server, base


if __name__ == "__main__":
    main()
