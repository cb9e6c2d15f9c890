"""Incremental, idempotent, resumable ingestion of documentation sources into the store.

A page is written only when its hash (content, URLs, chunking version, embedder) changed; pages that vanished
are deleted; a re-run with nothing changed makes no embedding call and no row write. Each page is written in
its own transaction with its ``pages`` row last, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairo_coder import metrics
from cairo_coder.config import Settings, SourceConfig
from cairo_coder.embeddings import chunk_windows
from cairo_coder.errors import SourceUnavailableError
from cairo_coder.ingest.includes import IncludeResolver
from cairo_coder.ingest.pages import (
    PageFailure,
    PageRecord,
    discover,
    embedding_context,
    read_corelib_file,
    read_page,
)
from cairo_coder.ingest.readers import BadPageError
from cairo_coder.store.documents import DocumentStore
from cairo_coder.store.writes import ChunkRecord

logger = logging.getLogger(__name__)


@dataclass
class SourceReport:
    source: str
    pages: int = 0
    chunks: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[PageFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    embedded_chunks: int = 0
    seconds: float = 0.0
    commit: str | None = None
    skipped_reason: str | None = None


ProgressCallback = Callable[[str, int, int], None]  # (source, done, total)


@dataclass
class SourceTree:
    root: Path
    include_roots: dict[str, str]
    commit: str | None


def locate_local(corpus: Path, source: SourceConfig) -> SourceTree | None:
    root = corpus / source.id
    if not root.is_dir():
        return None
    commit = None
    manifest = corpus / "MANIFEST.json"
    if manifest.is_file():
        try:
            entry = json.loads(manifest.read_text(encoding="utf-8")).get("sources", {}).get(source.id, {})
            commit = entry.get("commit")
        except (OSError, ValueError):
            commit = None
    return SourceTree(root, dict(source.include_roots), commit)


def locate_folder(source: SourceConfig) -> SourceTree:
    """The tree of a source declared with ``path`` (a local folder); its version is the folder's git commit when
    it is a git checkout, else none (pages are still re-indexed only when their content changes)."""
    folder = Path(source.path).expanduser()
    docs = folder / source.docs_root
    if not docs.is_dir():
        raise SourceUnavailableError(
            f"{source.id}: the folder {docs} does not exist (sources.{source.id}.path"
            + (f" and docs_root {source.docs_root!r})" if source.docs_root not in ("", ".") else ")")
        )
    commit: str | None = None
    try:
        commit = _git(["rev-parse", "HEAD"], folder).strip() or None
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        commit = None
    depth = len([p for p in Path(source.docs_root).parts if p not in (".", "")])
    return SourceTree(docs, {"~/": "../" * depth, **source.include_roots}, commit)


def fetch_source(source: SourceConfig, cache_dir: Path) -> SourceTree:
    """Shallow-clone (or update) the source's repository into the cache; return its docs tree and commit."""
    if not source.repository:
        raise SourceUnavailableError(f"{source.id}: no repository is configured for this source")
    target = cache_dir / "repos" / source.id
    branch = ["--branch", source.branch] if source.branch else []
    try:
        if (target / ".git").is_dir():
            ref = source.branch or "HEAD"
            _git(["fetch", "--depth", "1", "origin", ref], target)
            _git(["reset", "--hard", "FETCH_HEAD"], target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _git(["clone", "--depth", "1", *branch, source.repository, str(target)], None)
        commit = _git(["rev-parse", "HEAD"], target).strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
        raise SourceUnavailableError(
            f"{source.id}: cannot fetch {source.repository} ({detail.splitlines()[-1] if detail else 'git failed'}). "
            "If this machine is offline, point at a local tree laid out like the shared corpus with "
            "`cairo-coder ingest --from DIR` or CAIRO_CODER_CORPUS=DIR."
        ) from exc
    docs = target / source.docs_root
    depth = len([p for p in Path(source.docs_root).parts if p not in (".", "")])
    return SourceTree(docs, {"~/": "../" * depth}, commit)


def _git(args: list[str], cwd: Path | None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=600)
    return result.stdout


def _count(report: SourceReport) -> None:
    """An ingested source in the metrics (labels: registry ids only)."""
    for outcome in ("new", "updated", "unchanged", "deleted"):
        if value := getattr(report, outcome):
            metrics.INGEST_PAGES.labels(report.source, outcome).inc(value)
    if report.failed:
        metrics.INGEST_PAGES.labels(report.source, "failed").inc(len(report.failed))
    if report.embedded_chunks:
        metrics.INGEST_CHUNKS.labels(report.source).inc(report.embedded_chunks)


class Ingester:
    """Ingests sources into a store; embedder and store are injected (the store owns the embedder)."""

    def __init__(self, settings: Settings, store: DocumentStore, progress: ProgressCallback | None = None) -> None:
        self.settings = settings
        self.store = store
        self.progress = progress

    def tree_for(self, source: SourceConfig, from_dir: Path | None) -> SourceTree:
        if source.path:  # a source declared on a local folder is read from there, online or not
            return locate_folder(source)
        corpus = from_dir or (Path(self.settings.ingest.corpus).expanduser() if self.settings.ingest.corpus else None)
        if corpus is not None:
            tree = locate_local(corpus, source)
            if tree is None:
                raise SourceUnavailableError(f"{source.id}: no folder {corpus / source.id} in the local tree")
            return tree
        return fetch_source(source, self.settings.ingest.resolved_cache_dir())

    async def ingest_source(self, source_id: str, from_dir: Path | None = None) -> SourceReport:
        source = self.settings.source(source_id)
        report = SourceReport(source.id)
        started = time.perf_counter()
        try:
            tree = self.tree_for(source, from_dir)
        except SourceUnavailableError:
            metrics.INGEST_FAILURES.labels(source.id).inc()
            raise
        report.commit = tree.commit
        writer = _Writer()
        try:
            await self._ingest_tree(source, tree, report, writer)
        except asyncio.CancelledError:
            writer.cancel()
            raise
        except BaseException:
            # A later batch failed: the one being written still completes, so that a re-run resumes after it.
            await writer.settle()
            metrics.INGEST_FAILURES.labels(source.id).inc()
            raise
        report.seconds = time.perf_counter() - started
        _count(report)
        return report

    async def _ingest_tree(self, source: SourceConfig, tree: SourceTree, report: SourceReport, writer: _Writer) -> None:
        stored = await self.store.page_hashes(source.id)
        files = discover(tree.root, source)
        seen: set[str] = set()
        pending: list[PageRecord] = []
        resolver = IncludeResolver(tree.root, tree.include_roots)
        embedder_id = self.store.embedder.id
        for done, rel in enumerate(files, start=1):
            try:
                if source.url_style == "corelib":
                    records = list(read_corelib_file(tree.root, rel, source, self.settings.ingest, embedder_id))
                else:
                    records = [read_page(tree.root, rel, source, resolver, self.settings.ingest, embedder_id)]
            except BadPageError as exc:
                report.failed.append(PageFailure(rel, str(exc)))
                seen.add(rel)  # keep what was indexed before rather than deleting it
                logger.warning("skipped %s/%s: %s", source.id, rel, exc)
                continue
            for record in records:
                seen.add(record.path)
                report.pages += 1
                report.chunks += len(record.chunks)
                report.warnings.extend(record.warnings)
                if stored.get(record.path) == record.page_hash:
                    report.unchanged += 1
                    continue
                if record.path in stored:
                    report.updated += 1
                else:
                    report.new += 1
                pending.append(record)
            if sum(len(p.chunks) for p in pending) >= self.settings.ingest.write_batch_size:
                report.embedded_chunks += await self._embed(source.id, pending)
                # The batch is written while the next one is read and embedded (the embedder runs in a worker
                # thread): the database's time hides behind the model's. One write in flight at a time.
                await writer.wait()
                writer.start(self._write(source.id, pending, tree.commit))
                pending = []
            if self.progress:
                self.progress(source.id, done, len(files))
        report.embedded_chunks += await self._embed(source.id, pending)
        await writer.wait()
        await self._write(source.id, pending, tree.commit)
        gone = sorted(set(stored) - seen)
        if gone:
            await self.store.delete_pages(source.id, gone)
            report.deleted = len(gone)
        if report.new or report.updated or report.deleted:
            await self.store.vacuum()  # fresh visibility map and statistics for the searches that follow

    async def _embed(self, source: str, pages: list[PageRecord]) -> int:
        """Embed the chunks of changed pages, reusing unchanged chunks' vectors; returns the texts embedded.

        Each chunk gets its head vector and further vectors: windows over the text its head does not reach, and
        the descriptions of the API items it documents (see embeddings.chunk_windows)."""
        embedded = 0
        embedder = self.store.embedder
        if pages and embedder.dimensions:
            known = await self.store.chunk_embeddings(source, [page.path for page in pages])
            texts: list[str] = []
            # record, index of its first text, whether that text is its head, the kinds of its further vectors
            wanted: list[tuple[ChunkRecord, int, bool, list[str]]] = []
            for page in pages:
                for record in page.chunks:
                    windows = chunk_windows(embedder, embedding_context(record), record.content)
                    kinds = ["window"] * (len(windows) - 1) + ["summary"] * len(record.summaries)
                    stored = known.get(record.content_hash)
                    if stored is not None and [kind for kind, _ in stored[1]] == kinds:
                        record.embedding, record.extra_vectors = stored[0], list(stored[1])
                        continue
                    if stored is not None:  # the head is known (a store from before further vectors)
                        record.embedding = stored[0]
                        wanted.append((record, len(texts), False, kinds))
                        texts.extend(windows[1:])
                    else:
                        wanted.append((record, len(texts), True, kinds))
                        texts.extend(windows)
                    texts.extend(record.summaries)
            if texts:
                vectors = await embedder.embed(texts)
                for record, first, with_head, kinds in wanted:
                    if with_head:
                        record.embedding = vectors[first]
                        first += 1
                    record.extra_vectors = list(zip(kinds, vectors[first : first + len(kinds)], strict=True))
                embedded = len(texts)
        return embedded

    async def _write(self, source: str, pages: list[PageRecord], commit: str | None) -> None:
        for page in pages:
            await self.store.write_page(source, page.path, page.page_hash, page.title, page.url, page.chunks, commit)


class _Writer:
    """The one batch write in flight while the next batch is embedded."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, write: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.ensure_future(write)

    async def wait(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def settle(self) -> None:
        """Wait for the write in flight, if any, logging (not raising) its failure: the caller has its own."""
        try:
            await self.wait()
        except Exception:
            logger.exception("writing a batch of pages failed too")

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
