"""How long `eval generation` and `optimize` take with an instant LLM (the fake OpenAI-compatible server): what
the tooling itself costs, LLM time excluded.

    uv run --extra local python benchmarks/eval_generation.py [--dataset datasets/generation/v1.jsonl]

The store is the shared corpus in an embedded PostgreSQL under .bench/eval-generation (ingested with the local
embedder on the first run). It times `cairo-coder eval generation` on the whole dataset (no scarb here: the
compile check is skipped), and `cairo-coder optimize generation` with each optimizer on a tiny split (4 items
to train on, 2 to score).

Targets: eval generation on 60 items under 60 s; each optimizer on the tiny dataset under 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_MODEL, CORPUS, REPO, bench_settings, fake_openai_server


def run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cairo_coder", *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return time.perf_counter() - started, done


def last_line(stdout: str) -> str:
    """The command's summary ("validation score A -> B (N LM calls); saved ..."), without DSPy's progress."""
    return next((line for line in stdout.splitlines() if line.startswith("validation score")), stdout.strip()[-200:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=REPO / "datasets" / "generation" / "v1.jsonl")
    options = parser.parse_args()
    settings = bench_settings("eval-generation")
    with fake_openai_server() as fake_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))},
            "CAIRO_CODER_DATABASE__DATA_DIR": settings.database.data_dir,
            "CAIRO_CODER_CORPUS": str(CORPUS),
            "CAIRO_CODER_MODEL": BENCH_MODEL,
            "OPENAI_BASE_URL": fake_url,
            "OPENAI_API_KEY": "sk-bench",
            "HF_HUB_OFFLINE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        seconds, done = run(["ingest", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        print(f"ingest (incremental): {seconds:.1f} s")
        items = [json.loads(line) for line in options.dataset.read_text().splitlines() if line.strip()]
        seconds, done = run(["eval", "generation", "-d", str(options.dataset), "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        summary = json.loads(done.stdout)["summary"]
        score, errors = summary["score"], summary["errors"]
        print(f"eval generation, {len(items)} items: {seconds:.1f} s (score {score}, {errors} errors)")
        with tempfile.TemporaryDirectory() as tmp:
            train, val = Path(tmp) / "train.jsonl", Path(tmp) / "val.jsonl"
            code = [i for i in items if i["agent"] == "cairo-coder" and i["code_expected"]]
            train.write_text("".join(json.dumps(i) + "\n" for i in code[:4]))
            val.write_text("".join(json.dumps(i) + "\n" for i in code[4:6]))
            for optimizer in ("bootstrap-rs", "mipro", "gepa"):
                seconds, done = run(
                    [
                        "optimize",
                        "generation",
                        "--optimizer",
                        optimizer,
                        "--trainset",
                        str(train),
                        "--valset",
                        str(val),
                        "--out",
                        str(Path(tmp) / f"{optimizer}.json"),
                        "--candidates",
                        "2",
                        "--max-metric-calls",
                        "16",
                        "--yes",
                    ],
                    env,
                )
                assert done.returncode == 0, done.stderr[-2000:]
                summary_line = last_line(done.stdout)
                print(f"optimize generation --optimizer {optimizer}, 4+2 items: {seconds:.1f} s ({summary_line})")


if __name__ == "__main__":
    main()
