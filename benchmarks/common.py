"""Helpers shared by the benchmarks: a throwaway embedded PostgreSQL and the shared corpus location."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from cairo_coder.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("CAIRO_CODER_CORPUS") or REPO.parent / "shared" / "corpus")
# The model name the benchmarks send to the fake server: a real one, as deployments use. DSPy and LiteLLM look up
# a model's metadata (prices, capabilities) on every call, and an unknown name costs a scan of their whole table.
BENCH_MODEL = os.environ.get("CAIRO_CODER_BENCH_MODEL", "openai/gpt-4o-mini")
DATASET = Path(os.environ.get("CAIRO_CODER_EVAL_DATASET") or REPO.parent / "shared" / "eval" / "retrieval_dev.jsonl")


@contextmanager
def fake_openai_server() -> Iterator[str]:
    """tests/fake_openai.py in a process of its own (its work does not share our GIL); yields its /v1 URL."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert fake.stdout is not None and fake.stdin is not None
    try:
        yield fake.stdout.readline().strip()
    finally:
        fake.stdin.close()  # the fake server exits when its stdin closes
        fake.wait(timeout=10)


def bench_settings(name: str, **env: str) -> Settings:
    """Settings on an embedded PostgreSQL in a benchmark-specific data dir (kept between runs under .bench/)."""
    root = Path(os.environ.get("CAIRO_CODER_BENCH_DIR") or REPO / ".bench")
    root.mkdir(exist_ok=True)
    return load_settings(
        environ={
            **{k: v for k, v in os.environ.items() if k.startswith("CAIRO_CODER_")},
            "CAIRO_CODER_DATABASE__DATA_DIR": str(root / name),
            **env,
        }
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(values_ms: list[float]) -> str:
    return (
        f"p50 {percentile(values_ms, 50):7.2f} ms  p99 {percentile(values_ms, 99):7.2f} ms  "
        f"mean {statistics.fmean(values_ms):7.2f} ms  (n={len(values_ms)})"
    )


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cairo-coder-bench-"))
