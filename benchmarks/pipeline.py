"""The RAG pipeline's own overhead: everything but language-model (and embedding-provider) time.

    uv run --extra local python benchmarks/pipeline.py [--requests 140] [--embeddings remote|none|local]

A fake OpenAI-compatible server (tests/fake_openai.py, in a process of its own so that its work does not share
our GIL) answers chat completions and embeddings instantly. The shared corpus is ingested into an embedded
PostgreSQL under .bench/ (once; re-runs are no-ops), then the eval set's questions are asked through
AgentFactory → RagPipeline, streaming, in full-answer mode and in MCP mode, one request at a time.

For each request: total time; time inside dspy.LM calls (DSPy callback: LiteLLM client + HTTP + the fake
server); time inside the embedder. Overhead = total − LM − embedding. Targets: overhead p50 < 25 ms for a full
answer, < 15 ms in MCP mode. With ``--embeddings local`` the MiniLM query embedding runs in this process and
is reported apart (it is model time, on CPU, not provider time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy
from dspy.utils.callback import BaseCallback

from cairo_coder.agents import AgentFactory
from cairo_coder.embeddings import create_embedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.llm import LLMRouter
from cairo_coder.store import DocumentStore
from common import BENCH_MODEL, CORPUS, DATASET, bench_settings, describe, fake_openai_server


class LMTimer(BaseCallback):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.total = 0.0
        self.calls = 0

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.started[call_id] = time.perf_counter()

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        self.total += time.perf_counter() - self.started.pop(call_id, time.perf_counter())
        self.calls += 1


class TimedEmbedder:
    """Wraps an embedder and adds up the time spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.total = 0.0

    @property
    def id(self) -> str:
        return str(self.inner.id)

    @property
    def dimensions(self) -> int:
        return int(self.inner.dimensions)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return list(await self.inner.embed(texts))
        finally:
            self.total += time.perf_counter() - started

    async def embed_query(self, text: str) -> list[float]:
        started = time.perf_counter()
        try:
            return list(await self.inner.embed_query(text))
        finally:
            self.total += time.perf_counter() - started


async def run_mode(
    factory: AgentFactory, questions: list[str], count: int, mcp: bool, timer: LMTimer, embedder: TimedEmbedder
) -> None:
    totals, lms, embeds, overheads = [], [], [], []
    for question in questions[:5]:  # warm-up: pools, caches, imports
        await factory.create_agent().run(question, mcp_mode=mcp)
    for i in range(count):
        question = questions[i % len(questions)]
        timer.total = 0.0
        embedder.total = 0.0
        started = time.perf_counter()
        events = [e async for e in factory.create_agent().stream(question, mcp_mode=mcp)]
        total = time.perf_counter() - started
        if events[-1].type != "end":
            raise SystemExit(f"request failed: {events[-1]}")
        totals.append(total * 1000)
        lms.append(timer.total * 1000)
        embeds.append(embedder.total * 1000)
        overheads.append((total - timer.total - embedder.total) * 1000)
    label = "MCP mode" if mcp else "full answer"
    print(f"\n== {label}: {count} requests")
    print(f"{'total':<26} {describe(totals)}")
    print(f"{'LLM calls':<26} {describe(lms)}")
    print(f"{'embedding calls':<26} {describe(embeds)}")
    print(f"{'pipeline overhead':<26} {describe(overheads)}   target p50 < {15 if mcp else 25} ms")


async def bench(args: argparse.Namespace, base_url: str) -> None:
    env = {
        "CAIRO_CODER_MODEL": BENCH_MODEL,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "sk-bench",
        "CAIRO_CODER_EMBEDDINGS__PROVIDER": args.embeddings,
    }
    if args.embeddings == "remote":
        env |= {"CAIRO_CODER_EMBEDDINGS__API_BASE": base_url}
    settings = bench_settings(f"pipeline-{args.embeddings}", **env)
    inner = create_embedder(settings.embeddings, settings.llm)
    embedder = TimedEmbedder(inner)
    async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
        started = time.perf_counter()
        ingester = Ingester(settings, store)
        for source in sorted(settings.sources):
            if (CORPUS / source).is_dir():
                await ingester.ingest_source(source, CORPUS)
        chunks = await store.pool.fetchval("SELECT count(*) FROM documents")
        print(
            f"store: {chunks} chunks, embeddings={args.embeddings} ({embedder.id}); "
            f"ingest/check {time.perf_counter() - started:.1f} s"
        )
        questions = [json.loads(line)["query"] for line in DATASET.read_text().splitlines() if line.strip()]
        timer = LMTimer()
        dspy.configure(callbacks=[timer])
        factory = AgentFactory(settings, store, embedder, LLMRouter(settings.llm, environ=env))
        await run_mode(factory, questions, args.requests, False, timer, embedder)
        await run_mode(factory, questions, args.requests, True, timer, embedder)
        print(
            f"\nLLM calls per full answer: 2 (query processing, streamed generation); "
            f"MCP mode: 1 (query processing). Total LM calls measured: {timer.calls}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=140)
    parser.add_argument("--embeddings", choices=("remote", "none", "local"), default="remote")
    args = parser.parse_args()
    with fake_openai_server() as base_url:
        asyncio.run(bench(args, base_url))


if __name__ == "__main__":
    main()
