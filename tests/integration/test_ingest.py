"""Ingestion on a real PostgreSQL: idempotent, incremental, resumable; bad files skipped; git sources."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.ingest.loader import Ingester, SourceUnavailableError
from cairo_coder.store import DocumentStore
from cairo_coder.types import DocumentSource
from tests.conftest import make_settings
from tests.helpers import run_cli
from tests.integration.mini_corpus import write_mini_corpus

BOOK, SCARB = DocumentSource.CAIRO_BOOK, DocumentSource.SCARB_DOCS


async def row_writes(url: str) -> int:
    """Rows inserted, updated or deleted in our tables, from PostgreSQL's own statistics."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
                "WHERE relname IN ('documents', 'pages', 'lexical_postings', 'lexical_terms', 'store_info')"
            )
        )
    finally:
        await conn.close()


async def vacuums(url: str) -> tuple[int, bool]:
    """Manual VACUUMs of the postings table so far, and whether all its pages are marked all-visible."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        count = await conn.fetchval("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'lexical_postings'")
        visible = await conn.fetchval(
            "SELECT relallvisible = relpages AND relpages > 0 FROM pg_class WHERE relname = 'lexical_postings'"
        )
        return int(count), bool(visible)
    finally:
        await conn.close()


class CountingEmbedder(LocalEmbedder):
    """The real local embedder, failing on demand after a number of calls (to interrupt a run)."""

    def __init__(self, inner: LocalEmbedder, fail_after: int | None = None) -> None:
        super().__init__(inner.settings)
        self._model = inner._load()
        self.fail_after = fail_after

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        return await super().embed(texts)


async def test_ingest_resolves_includes_skips_bad_pages_and_is_idempotent(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(db_url)
    corpus = write_mini_corpus(tmp_path / "corpus")
    embedder = CountingEmbedder(local_embedder)
    async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
        ingester = Ingester(settings, store)
        report = await ingester.ingest_source(BOOK, corpus)
        assert (report.pages, report.new, report.updated, report.deleted) == (3, 3, 0, 0)
        assert [f.path for f in report.failed] == ["ch03-broken.md"]
        assert "no closing '---'" in report.failed[0].reason
        assert any("ch04-missing.md" in w and "nowhere/src/lib.cairo" in w for w in report.warnings)
        assert report.commit is None
        conn = await asyncpg.connect(db_url)
        contents = [r["content"] for r in await conn.fetch("SELECT content FROM documents")]
        await conn.close()
        assert any("counter: u128," in c for c in contents)
        assert not any("{{#" in c or "ANCHOR" in c for c in contents)
        # A source that changed is vacuumed: index-only scans of its postings need not visit the table.
        vacuumed, all_visible = await vacuums(db_url)
        assert vacuumed >= 1 and all_visible

        calls, writes = embedder.calls, await row_writes(db_url)
        again = await ingester.ingest_source(BOOK, corpus)
        assert (again.unchanged, again.new, again.updated, again.deleted) == (3, 0, 0, 0)
        assert embedder.calls == calls, "a re-run with nothing changed must not embed"
        assert await row_writes(db_url) == writes, "a re-run with nothing changed must not write rows"
        assert (await vacuums(db_url))[0] == vacuumed, "nor vacuum"

        # Change one page, delete another: only those are touched.
        page = corpus / "cairo_book" / "ch01-storage.md"
        page.write_text(page.read_text() + "\n## Storage Nodes\n\nNested structs in storage are storage nodes.\n")
        (corpus / "cairo_book" / "ch02-arrays.md").unlink()
        texts = embedder.texts_embedded
        changed = await ingester.ingest_source(BOOK, corpus)
        assert (changed.updated, changed.deleted, changed.unchanged, changed.new) == (1, 1, 1, 0)
        assert embedder.texts_embedded - texts == 1, "only the changed chunk of the changed page is embedded"
        assert (await vacuums(db_url))[0] == vacuumed + 1
        hits = await store.search("nested structs storage nodes", k=3)
        assert "Nested structs in storage are storage nodes." in hits[0].document.content
        assert not [
            h for h in await store.search("append to an array", k=10) if h.document.metadata.path == "ch02-arrays.md"
        ]


async def test_interrupted_run_resumes_without_redoing_written_pages(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(db_url, CAIRO_CODER_INGEST__WRITE_BATCH_SIZE="1")  # one batch per page
    corpus = write_mini_corpus(tmp_path / "corpus")
    crashing = CountingEmbedder(local_embedder, fail_after=1)
    async with await DocumentStore.open(settings.database, crashing, settings.search, for_writing=True) as store:
        with pytest.raises(RuntimeError, match="simulated crash"):
            await Ingester(settings, store).ingest_source(BOOK, corpus)
        assert len(await store.page_hashes("cairo_book")) == 1
    healthy = CountingEmbedder(local_embedder)
    async with await DocumentStore.open(settings.database, healthy, settings.search, for_writing=True) as store:
        report = await Ingester(settings, store).ingest_source(BOOK, corpus)
        assert (report.unchanged, report.new) == (1, 2)
        assert len(await store.page_hashes("cairo_book")) == 3


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


async def test_ingest_clones_the_repository_and_records_its_commit(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    repo = tmp_path / "scarb-repo"
    docs = repo / "website" / "docs"
    write_mini_corpus(tmp_path / "corpus")
    docs.mkdir(parents=True)
    for page in (tmp_path / "corpus" / "scarb_docs").rglob("*.md"):
        target = docs / page.relative_to(tmp_path / "corpus" / "scarb_docs")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page.read_text())
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "docs", cwd=repo)
    head = _git("rev-parse", "HEAD", cwd=repo)
    settings = make_settings(
        db_url,
        CAIRO_CODER_SOURCES__SCARB_DOCS__REPOSITORY=str(repo),
        CAIRO_CODER_INGEST__CACHE_DIR=str(tmp_path / "cache"),
    )
    async with await DocumentStore.open(settings.database, local_embedder, settings.search, for_writing=True) as store:
        report = await Ingester(settings, store).ingest_source(SCARB)
        assert (report.pages, report.commit) == (2, head)
        assert (tmp_path / "cache" / "repos" / "scarb_docs" / ".git").is_dir()
        status = await store.status()
        assert status["sources"]["scarb_docs"]["commit"] == head
        top = (await store.search("edition key", k=1))[0]
        assert top.document.metadata.url.startswith("https://docs.swmansion.com/scarb/docs/reference/manifest.html#")


async def test_offline_without_local_tree_says_how_to_point_at_one(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        db_url,
        CAIRO_CODER_SOURCES__SCARB_DOCS__REPOSITORY=str(tmp_path / "no-such-repo"),
        CAIRO_CODER_INGEST__CACHE_DIR=str(tmp_path / "cache"),
    )
    from cairo_coder.embeddings import NoEmbedder

    async with await DocumentStore.open(settings.database, NoEmbedder(), settings.search, for_writing=True) as store:
        with pytest.raises(SourceUnavailableError) as info:
            await Ingester(settings, store).ingest_source(SCARB)
        message = str(info.value)
        assert "cannot fetch" in message and "--from DIR" in message and "CAIRO_CODER_CORPUS" in message


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"DATABASE_URL": db_url, "CAIRO_CODER_EMBEDDINGS__PROVIDER": "none"})


def test_cli_ingest_summary_rerun_and_reindex(db_url: str, tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    first = _cli(db_url, "ingest", "scarb_docs", "--from", str(corpus), "--json")
    assert first.returncode == 0, first.stderr
    [report] = json.loads(first.stdout)
    assert (report["source"], report["pages"], report["new"], report["unchanged"]) == ("scarb_docs", 2, 2, 0)
    again = _cli(db_url, "ingest", "scarb_docs", "--from", str(corpus))
    assert again.returncode == 0, again.stderr
    assert "Ingestion summary" in again.stdout
    row = next(line for line in again.stdout.splitlines() if "scarb_docs" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]][:7] == ["scarb_docs", "2", "2", "0", "0", "0", "2"]
    reindexed = json.loads(_cli(db_url, "ingest", "scarb_docs", "--from", str(corpus), "--reindex", "--json").stdout)
    assert (reindexed[0]["new"], reindexed[0]["unchanged"]) == (2, 0)
    bad = _cli(db_url, "ingest", "no_such_source")
    assert bad.returncode == 2 and "unknown source 'no_such_source'" in bad.stderr and "Traceback" not in bad.stderr


async def test_written_chunks_carry_their_prompt_tokens_and_older_rows_are_left_alone(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    from cairo_coder.rendering import format_for_agent
    from cairo_coder.tokens import count_tokens

    settings = make_settings(db_url)
    corpus = write_mini_corpus(tmp_path / "corpus")
    store = await DocumentStore.open(settings.database, local_embedder, settings.search, for_writing=True)
    conn = await asyncpg.connect(db_url)
    try:
        ingester = Ingester(settings, store)
        await ingester.ingest_source(BOOK, corpus)
        rows = await conn.fetch("SELECT content, prompt_tokens FROM documents")
        assert rows and all(r["prompt_tokens"] == count_tokens(r["content"].strip()) for r in rows)
        hit = (await store.search("storage counter", k=1))[0]
        assert hit.document.metadata.prompt_tokens == count_tokens(hit.document.content.strip())

        # Rows written before schema 4 have no count. A re-run does not rewrite them (that would move every row);
        # they are counted when used, within the same budget.
        await conn.execute("UPDATE documents SET prompt_tokens = NULL")
        writes = await row_writes(db_url)
        again = await ingester.ingest_source(BOOK, corpus)
        assert again.unchanged == 3 and await row_writes(db_url) == writes
        old = await store.search("storage counter", k=5)
        assert old and all(h.document.metadata.prompt_tokens is None for h in old)
        assert count_tokens(format_for_agent(old, 120)) <= 120
        # A page written again gets its counts.
        page = corpus / "cairo_book" / "ch01-storage.md"
        page.write_text(page.read_text() + "\n## Storage Nodes\n\nNested structs in storage are storage nodes.\n")
        await ingester.ingest_source(BOOK, corpus)
        counted = await conn.fetch("SELECT prompt_tokens FROM documents WHERE path = 'ch01-storage.md'")
        assert counted and all(r["prompt_tokens"] is not None for r in counted)
    finally:
        await conn.close()
        await store.close()


LONG_PAGE = (
    "# Storage Internals\n\n"
    + " ".join(
        f"Storage variable number {i} keeps its value in the contract state between transactions." for i in range(30)
    )
    + (
        "\n\nHashing a span: to hash a whole span of felts at once, call the Poseidon hash function on the span. "
        "Poseidon gives one digest for all of the felts in the span, which is cheaper than hashing them one by one. "
        "The digest is a felt252.\n"
    )
)
CORELIB_FILE = """//! Info about the execution.

/// Returns the address of the contract being executed.
pub fn get_contract_address() -> ContractAddress {
    0
}

/// Utilities for spans.
#[generate_trait]
pub impl SpanUtilImpl of SpanUtilTrait {
    /// Returns the smaller of two values.
    fn smallest(a: u8, b: u8) -> u8 { a }
}
"""


async def test_whole_chunks_are_embedded_by_windows_and_api_items_by_their_descriptions(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    """A chunk longer than the embedder's input gets windows over the rest of its text; a core library item and
    each documented method get a description vector. Dense search scores a chunk by its head and its best
    vector, so a passage deep in a long chunk is found; vectors are reused when nothing changed."""
    settings = make_settings(db_url)
    corpus = tmp_path / "corpus"
    (corpus / "cairo_book").mkdir(parents=True)
    (corpus / "cairo_book" / "ch05-internals.md").write_text(LONG_PAGE)
    (corpus / "cairo_book" / "ch06-short.md").write_text("# Short\n\nInstall the toolchain with starkup.\n")
    (corpus / "corelib_docs" / "src").mkdir(parents=True)
    (corpus / "corelib_docs" / "src" / "info.cairo").write_text(CORELIB_FILE)
    embedder = CountingEmbedder(local_embedder)
    async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
        ingester = Ingester(settings, store)
        book = await ingester.ingest_source(BOOK, corpus)
        corelib = await ingester.ingest_source(DocumentSource.CORELIB_DOCS, corpus)
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch(
                """SELECT d.path, v.kind, count(*) AS n FROM chunk_vectors v JOIN documents d ON d.id = v.doc_id
                   GROUP BY d.path, v.kind ORDER BY d.path, v.kind"""
            )
        finally:
            await conn.close()
        found = {(r["path"], r["kind"]): r["n"] for r in rows}
        assert found[("ch05-internals.md", "window")] >= 3, found  # ~700 word pieces, 128 per window
        assert ("ch06-short.md", "window") not in found, "a chunk that fits is its head alone"
        assert found[("core::info::get_contract_address", "summary")] == 1
        assert found[("core::info::SpanUtilTrait", "summary")] == 2  # the trait and its one method
        assert ("core::info::SpanUtilImpl", "summary") not in found, "an impl's methods are the trait's"
        windows = found[("ch05-internals.md", "window")]
        # Heads (2 pages; the module, the function, the impl and the trait) and the further texts.
        assert book.embedded_chunks == 2 + windows and corelib.embedded_chunks == 4 + 3

        # The passage at the end of the long chunk: beyond its head, found through a window.
        question = "one digest for a whole span of felts with Poseidon"
        head_only = (await local_embedder.embed([f"Storage Internals\n{LONG_PAGE.split(chr(10), 2)[2]}"]))[0]
        query = await local_embedder.embed_query(question)
        best = (await store.search(question, k=1, mode="dense", sources=["cairo_book"]))[0]
        assert best.document.metadata.path == "ch05-internals.md"
        assert best.score > sum(a * b for a, b in zip(head_only, query, strict=True)) + 0.05
        # A question in words finds the API item by its description (no shared identifier).
        item = (
            await store.search(
                "the address of the contract being executed", k=1, mode="dense", sources=["corelib_docs"]
            )
        )[0]
        assert item.document.metadata.path == "core::info::get_contract_address"

        calls = embedder.calls
        again = await ingester.ingest_source(BOOK, corpus)
        assert again.unchanged == 2 and embedder.calls == calls, "unchanged pages: no embedding at all"


async def test_a_store_from_before_windows_migrates_and_is_filled_by_the_next_ingest(
    db_url: str, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    """A store built before schema 5 (head vectors only, no chunk_vectors) opens, searches by its heads, and the
    next ingest adds the windows while reusing every head vector."""
    settings = make_settings(db_url)
    corpus = tmp_path / "corpus"
    (corpus / "cairo_book").mkdir(parents=True)
    (corpus / "cairo_book" / "ch05-internals.md").write_text(LONG_PAGE)
    embedder = CountingEmbedder(local_embedder)
    store = await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True)
    await Ingester(settings, store).ingest_source(BOOK, corpus)
    await store.close()
    conn = await asyncpg.connect(db_url)
    try:  # back to schema 4, as an older cairo-coder left it (and an older index version in the page hashes)
        await conn.execute(
            "DROP TABLE chunk_vectors; DELETE FROM schema_migrations WHERE version = 5; "
            "UPDATE pages SET page_hash = 'from-schema-4'"
        )
    finally:
        await conn.close()
    async with await DocumentStore.open(settings.database, embedder, settings.search) as store:
        assert store.schema_version == 5
        hits = await store.search("storage variable value between transactions", k=1, mode="dense")
        assert hits and hits[0].document.metadata.path == "ch05-internals.md"  # by its head alone
    async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
        texts = embedder.texts_embedded
        report = await Ingester(settings, store).ingest_source(BOOK, corpus)
        assert report.updated == 1
        windows = await store.pool.fetchval("SELECT count(*) FROM chunk_vectors WHERE kind = 'window'")
        assert windows >= 3 and embedder.texts_embedded - texts == windows, "the head vector is reused"
        # A second run embeds nothing.
        texts = embedder.texts_embedded
        await Ingester(settings, store).ingest_source(BOOK, corpus)
        assert embedder.texts_embedded == texts
