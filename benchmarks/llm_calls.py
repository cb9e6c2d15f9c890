"""What one language-model or embedding call costs this process, per DSPy engine: CPU and wall time per call.

    uv run --extra local python benchmarks/llm_calls.py [--calls 200] [--model openai/gpt-4o-mini]

The fake OpenAI-compatible server (tests/fake_openai.py, its own process, answering instantly) stands in for the
provider, so the figures are the client side only: DSPy (adapter formatting and parsing, callbacks, usage) and the
engine underneath, LiteLLM (``llm.engine = "litellm"``, the default) or DSPy's native lm15 client
(``"lm15"``), against the floor of the official OpenAI SDK and of a bare httpx request. Each row is one call
type, one request at a time: a bare ``dspy.LM`` call; the query processor (a ``dspy.Predict``); streamed
generation (``dspy.streamify`` with a StreamListener on ``answer``, the fake streaming 12-character chunks); one
query embedding (``RemoteEmbedder``, always LiteLLM). A full answer makes one query-processing call, one
embedding call and one streamed generation; MCP mode the first two. These rows bound what the server can do on
one core: see the server benchmark (benchmarks/server.py) for the whole request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy
import httpx
import openai
from dspy.streaming import StreamListener

from cairo_coder.config import EmbeddingSettings, LLMSettings
from cairo_coder.embeddings import RemoteEmbedder
from cairo_coder.programs.adapter import ADAPTER
from cairo_coder.programs.generation import GenerationProgram
from cairo_coder.programs.query_processor import QueryProcessorProgram
from common import fake_openai_server

QUESTION = "How do I declare a storage mapping in a Starknet contract and read it from a view function?"
CONTEXT = "[1] Contract Storage\nStorage variables are declared in a `#[storage]` struct ...\n" * 20


async def measure(label: str, calls: int, call: Callable[[], Awaitable[object]]) -> None:
    for _ in range(10):  # warm-up: connection pools, lazy imports
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    cpu_ms = (time.process_time() - cpu) * 1000 / calls
    wall_ms = (time.perf_counter() - wall) * 1000 / calls
    print(f"{label:<44} CPU {cpu_ms:6.2f} ms/call   wall {wall_ms:6.2f} ms/call", flush=True)


async def bench(args: argparse.Namespace, base_url: str) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    for engine in ("litellm", "lm15"):
        lm = dspy.LM(
            args.model,
            api_base=base_url,
            api_key="sk-bench",
            cache=False,
            num_retries=0,
            engine=engine,
            **({"max_retries": 0} if engine == "litellm" else {}),
        )
        print(f"\n== engine {engine} ({args.model})")
        await measure("bare dspy.LM call (a prompt string)", args.calls, lambda lm=lm: lm.acall(QUESTION))
        processor = QueryProcessorProgram()

        async def process(lm: dspy.LM = lm, processor: QueryProcessorProgram = processor) -> object:
            with dspy.context(lm=lm, adapter=ADAPTER, disable_history=True, trace=None):
                return await processor.acall(query=QUESTION, chat_history="")

        await measure("query processing (dspy.Predict)", args.calls, process)
        generation = GenerationProgram()

        async def generate(lm: dspy.LM = lm, generation: GenerationProgram = generation) -> object:
            program = dspy.streamify(
                generation, stream_listeners=[StreamListener(signature_field_name="answer")], is_async_program=True
            )
            with dspy.context(lm=lm, disable_history=True, trace=None):
                return [value async for value in program(query=QUESTION, context=CONTEXT, chat_history="")]

        await measure("streamed generation (streamify + listener)", args.calls, generate)
    embedder = RemoteEmbedder(
        EmbeddingSettings(provider="remote", api_base=base_url), LLMSettings(openai_api_key="sk-bench")
    )
    print("\n== embeddings and floors")
    await measure("query embedding (LiteLLM, 1536-d, base64)", args.calls, lambda: embedder.embed_query(QUESTION))
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    await measure(
        "OpenAI SDK chat call (floor)",
        args.calls,
        lambda: sdk.chat.completions.create(model=args.model.split("/", 1)[-1], messages=messages),
    )
    async with httpx.AsyncClient(base_url=base_url) as http:

        async def bare() -> object:
            response = await http.post("/chat/completions", json={"model": "m", "messages": messages})
            return response.json()

        await measure("bare httpx chat request (floor)", args.calls, bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--model",
        default="openai/gpt-4o-mini",
        help="model string sent to the fake server (a known name: DSPy looks up its metadata)",
    )
    args = parser.parse_args()
    with fake_openai_server() as base_url:
        asyncio.run(bench(args, base_url))


if __name__ == "__main__":
    main()
