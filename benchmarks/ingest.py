"""Ingestion throughput on the whole shared corpus with the configured embedder (offline default: local).

    uv run --extra local python benchmarks/ingest.py [--embeddings local|none]

Prints per-source and total pages, chunks, seconds and chunks/s for a full ingest into an empty store, then the
time of a re-run with nothing changed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cairo_coder.embeddings import create_embedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.store import DocumentStore
from common import CORPUS, bench_settings


async def run(embeddings: str) -> None:
    name = f"ingest-{embeddings}"
    settings = bench_settings(name, CAIRO_CODER_EMBEDDINGS__PROVIDER=embeddings)
    shutil.rmtree(settings.database.resolved_data_dir(), ignore_errors=True)
    started = time.perf_counter()
    embedder = create_embedder(settings.embeddings)
    async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
        sources = [s for s in settings.sources if (CORPUS / s).is_dir()]
        for label in ("full ingest", "re-run, nothing changed"):
            pass_started = time.perf_counter()
            ingester = Ingester(settings, store)
            total_chunks = 0
            print(f"\n== {label} ({embedder.id})")
            for source in sources:
                report = await ingester.ingest_source(source, CORPUS)
                total_chunks += report.chunks
                rate = report.chunks / report.seconds if report.seconds else 0.0
                print(
                    f"{report.source:<18} pages {report.pages:5d}  chunks {report.chunks:5d}  written "
                    f"{report.new + report.updated:5d}  {report.seconds:6.1f} s  {rate:7.1f} chunks/s"
                )
            seconds = time.perf_counter() - pass_started
            print(f"{'total':<18} chunks {total_chunks:5d}  {seconds:6.1f} s  {total_chunks / seconds:7.1f} chunks/s")
        print(f"\nwall time including store start and model load: {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", default="local", choices=["local", "none"])
    asyncio.run(run(parser.parse_args().embeddings))


if __name__ == "__main__":
    main()
