"""Scale-out on one shared PostgreSQL, for real: two `cairo-coder serve` processes started at the same moment on
one empty database migrate it and ingest the documentation exactly once; then an ingestion of changed files runs
while both serve searches under load, and no search fails or sees a half-written page."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from pathlib import Path

import asyncpg
import httpx

from tests.integration.mini_corpus import write_mini_corpus
from tests.integration.test_cli_serve import launch, serve_env, stop, wait_healthy

# A page whose every section carries its version: a search that saw a half-written page would return sections of
# both versions at once.
TOPIC = "Zephyr vaults"


def vault_page(version: str, sections: int) -> str:
    body = "".join(
        f"\n## {TOPIC} part {i}\n\n{TOPIC} keep snapshots of storage ({version}). Section {i} of the zephyr vault "
        f"guide explains sealing, {version} marker, and how zephyr vaults rotate keys.\n"
        for i in range(sections)
    )
    return f"# {TOPIC}\n\nThe zephyr vault guide ({version}).\n{body}"


def ingested_pages(base: str) -> dict[str, int]:
    """Pages this process's ingestions handled, by outcome (its own /metrics: `serve` ingests in-process). An
    ingestion that ran, even one that found nothing to change, counts its pages as unchanged."""
    text = httpx.get(base + "/metrics", timeout=10).text
    found: dict[str, int] = {}
    for outcome, value in re.findall(r'^cairo_coder_ingest_pages_total\{outcome="(\w+)",.*\} (\S+)$', text, re.M):
        found[outcome] = found.get(outcome, 0) + int(float(value))
    return found


def search(base: str, query: str) -> httpx.Response:
    return httpx.post(
        base + "/v1/chat/completions",
        headers={"x-mcp-mode": "true"},
        json={"messages": [{"role": "user", "content": query}]},
        timeout=30,
    )


async def test_two_replicas_on_one_empty_database_then_an_ingestion_under_load(db_url: str, tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    vault = corpus / "cairo_book" / "ch05-vaults.md"
    vault.write_text(vault_page("VERSION-A", 6))
    env = serve_env(db_url, corpus)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    servers = [launch(env, log) for log in logs]  # at the same moment, on an empty database
    try:
        for (process, base), log in zip(servers, logs, strict=True):
            wait_healthy(process, base, log)
        handled = sorted((ingested_pages(base) for _, base in servers), key=lambda h: sum(h.values()))
        # Exactly one ingestion ran: the other process found the store filled and did not read the corpus again.
        assert sum(handled[0].values()) == 0 and handled[1].get("new", 0) > 0, handled
        new_pages = [handled[1]["new"]]
        conn = await asyncpg.connect(db_url)
        try:
            migrations = await conn.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
            pages = await conn.fetchval("SELECT count(*) FROM pages")
            duplicates = await conn.fetchval(
                "SELECT count(*) FROM (SELECT source, path, chunk_number FROM documents "
                "GROUP BY 1, 2, 3 HAVING count(*) > 1) d"
            )
        finally:
            await conn.close()
        assert migrations and all(row["n"] == 1 for row in migrations)
        assert pages == max(new_pages) and duplicates == 0

        # Changed files: the vault page rewritten (more sections), a page added, a page removed.
        vault.write_text(vault_page("VERSION-B", 9))
        (corpus / "cairo_book" / "ch06-new.md").write_text("# Fresh page\n\nZephyr vaults also have a fresh page.\n")
        (corpus / "cairo_book" / "ch02-arrays.md").unlink()
        failures: list[str] = []
        mixed: list[str] = []
        seen: set[str] = set()
        done = threading.Event()
        counts = [0]

        def load(base: str) -> None:
            while not done.is_set():
                response = search(base, f"How do {TOPIC} rotate keys and seal snapshots?")
                counts[0] += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                text = response.text
                versions = {v for v in ("VERSION-A", "VERSION-B") if v in text}
                seen.update(versions)
                if len(versions) > 1:
                    mixed.append(text[:300])

        threads = [threading.Thread(target=load, args=(base,)) for _, base in servers for _ in range(2)]
        for thread in threads:
            thread.start()
        await asyncio.sleep(0.5)
        ingest = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cairo_coder", "ingest"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        await asyncio.sleep(0.5)
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        assert ingest.returncode == 0, ingest.stderr
        assert not failures, failures[:3]
        assert not mixed, mixed[:2]
        assert counts[0] > 20 and seen == {"VERSION-A", "VERSION-B"}, (counts, seen)
        after = search(servers[0][1], f"{TOPIC} fresh page")
        assert after.status_code == 200 and "VERSION-A" not in after.text
    finally:
        for (process, _), log in zip(servers, logs, strict=True):
            stop(process, log)
