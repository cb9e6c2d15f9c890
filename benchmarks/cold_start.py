"""Cold start: time from `cairo-coder serve` to listening and to ready, and the first requests after ready.

    uv run --extra local python benchmarks/cold_start.py [--runs 3] [--clients 32]

Each run starts `cairo-coder serve` (one worker, the benchmark's embedded PostgreSQL under .bench/server, the
shared corpus ingested once before the first run, not timed) with the fake OpenAI-compatible LLM, polls /health and
/ready every 50 ms, and as soon as /ready answers 200 sends --clients concurrent full-answer requests (the
first requests after ready), then the same burst again (warm). Prints, per run and as medians: seconds to
listening, seconds to ready, and the median latency of the first and of the warm burst, with their ratio.

Target (issue 14): ready means able: the first burst after ready within 2x of the warm burst's median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_MODEL, CORPUS, REPO, fake_openai_server
from server import free_port

QUESTION = "How do I declare a storage variable in a Starknet contract?"


async def burst(url: str, clients: int) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(i: int) -> float:
            started = time.perf_counter()
            response = await client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": f"{QUESTION} ({i})"}]}
            )
            response.raise_for_status()
            return time.perf_counter() - started

        return list(await asyncio.gather(*(one(i) for i in range(clients))))


def wait_for(url: str, path: str, deadline: float, process: subprocess.Popen[bytes]) -> float:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not answer 200 in time")


def one_run(env: dict[str, str], clients: int, ingest: bool = False) -> tuple[float, float, float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cairo_coder", "serve", "--port", str(port)]
    if not ingest:
        command.append("--no-ingest")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = started + (1800 if ingest else 300)
        listening = wait_for(url, "/health", deadline, process) - started
        ready = wait_for(url, "/ready", deadline, process) - started
        first = statistics.median(asyncio.run(burst(url, clients)))
        warm = statistics.median(asyncio.run(burst(url, clients)))
        return listening, ready, first, warm
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("CAIRO_CODER_BENCH_DIR") or REPO / ".bench") / "server"
    with fake_openai_server() as base_url:
        env = {
            **os.environ,
            "CAIRO_CODER_DATABASE__DATA_DIR": os.environ.get("CAIRO_CODER_DATABASE__DATA_DIR", str(data_dir)),
            "CAIRO_CODER_CORPUS": str(CORPUS),
            "CAIRO_CODER_MODEL": BENCH_MODEL,
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "sk-bench",
            "CAIRO_CODER_SERVER__MAX_CONCURRENT_REQUESTS": "256",
            "CAIRO_CODER_SERVER__INSIGHTS": "false",
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # measure what a user gets: the server's own default
        one_run(env, 1, ingest=True)  # the store is built (once) and the page cache warm: not measured
        rows = []
        for run in range(args.runs):
            listening, ready, first, warm = one_run(env, args.clients)
            rows.append((listening, ready, first, warm))
            print(
                f"run {run + 1}: listening {listening:6.2f} s  ready {ready:6.2f} s  first {args.clients} "
                f"requests median {first * 1000:8.1f} ms  warm {warm * 1000:8.1f} ms  ratio {first / warm:5.2f}",
                flush=True,
            )
    med = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(
        f"median: listening {med[0]:.2f} s, ready {med[1]:.2f} s, first burst {med[2] * 1000:.1f} ms, warm "
        f"{med[3] * 1000:.1f} ms, ratio {med[2] / med[3]:.2f} (target <= 2)"
    )


if __name__ == "__main__":
    main()
