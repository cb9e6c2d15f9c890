"""From a source tree to pages and chunk records: discovery, reading, chunking, hashing.

Nothing here touches the database; :mod:`loader` decides what to write.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cairo_coder import lexical
from cairo_coder.config import IngestSettings, SourceConfig
from cairo_coder.ingest import corelib
from cairo_coder.ingest.chunker import Chunk, chunk_page
from cairo_coder.ingest.includes import IncludeError, IncludeResolver
from cairo_coder.ingest.readers import BadPageError, ParsedPage, read_asciidoc, read_markdown, split_sections
from cairo_coder.ingest.urls import corelib_url, page_url, with_anchor
from cairo_coder.store.writes import ChunkRecord

# Bump when parsing, chunking or lexical weighting changes: every page's hash changes and is re-indexed.
INDEX_VERSION = "6"
TITLE_WEIGHT = 3.0


@dataclass
class PageRecord:
    path: str
    title: str
    url: str
    chunks: list[ChunkRecord]
    page_hash: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class PageFailure:
    path: str
    reason: str


def _matches(rel: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(rel, pattern):
        return True
    if pattern.startswith("**/"):
        return fnmatch.fnmatchcase(rel, pattern[3:]) or fnmatch.fnmatchcase(PurePosixPath(rel).name, pattern[3:])
    return False


def discover(root: Path, source: SourceConfig) -> list[str]:
    """Paths (relative to ``root``, POSIX) of the source's documents, sorted."""
    suffixes = {f".{ext.lstrip('.')}" for ext in source.file_types}
    found: list[str] = []
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix not in suffixes:
            continue
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in PurePosixPath(rel).parts):
            continue
        if any(_matches(rel, pattern) for pattern in source.exclude):
            continue
        if source.include_paths and not any(_matches(rel, p) for p in source.include_paths):
            continue
        found.append(rel)
    return sorted(found)


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _record(
    chunk: Chunk,
    page_title: str,
    url: str,
    source: SourceConfig,
    symbols: list[str],
    metadata: dict[str, str],
    title_field: str | None = None,
    summaries: list[str] | None = None,
) -> ChunkRecord:
    if title_field is None:
        title_field = " ".join([*chunk.trail, *(chunk.headings or [])])
    body_terms = lexical.tokenize(chunk.content)
    title_terms = lexical.tokenize(title_field)
    section = chunk.trail[1:]
    return ChunkRecord(
        chunk_number=chunk.number,
        content=chunk.content,
        # The hash is of exactly the texts that get embedded: equal hashes may share vectors.
        content_hash=_hash(_embedded_text(page_title, section, chunk.content), *(summaries or [])),
        title=page_title,
        section=section,
        url=with_anchor(source, url, chunk.anchor),
        terms=lexical.term_frequencies(body_terms, title_terms, TITLE_WEIGHT),
        terms_in_order=body_terms,
        title_terms=set(title_terms),
        token_count=max(len(body_terms), 1),
        symbols=symbols,
        metadata={**metadata, **({"anchor": chunk.anchor} if chunk.anchor else {})},
        summaries=list(summaries or []),
    )


def _embedded_text(title: str, section: list[str], content: str) -> str:
    return " > ".join([title, *section]) + "\n" + content


def embedding_context(record: ChunkRecord) -> str:
    """The heading trail (page title first) that precedes the chunk's text in what the embedder sees."""
    return " > ".join([record.title, *record.section])


def embedding_text(record: ChunkRecord) -> str:
    """What the embedder sees first (the head window): the heading trail, then the chunk."""
    return _embedded_text(record.title, record.section, record.content)


def _finish(
    path: str, title: str, url: str, records: list[ChunkRecord], warnings: list[str], embedder_id: str
) -> PageRecord:
    page_hash = _hash(
        INDEX_VERSION,
        str(TITLE_WEIGHT),
        embedder_id,
        path,
        title,
        url,
        *(f"{r.url}\x01{r.content_hash}\x01{','.join(r.symbols)}" for r in records),
    )
    return PageRecord(path, title, url, records, page_hash, warnings)


def read_page(
    root: Path, rel: str, source: SourceConfig, resolver: IncludeResolver, ingest: IngestSettings, embedder_id: str
) -> PageRecord:
    """Read one documentation page into chunk records. Raises BadPageError for a page that cannot be read."""
    try:
        raw = (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadPageError(f"{rel}: unreadable ({exc})") from exc
    warnings: list[str] = []
    try:
        parsed = _parse(raw, rel, source, resolver)
    except IncludeError as exc:
        # Keep the page (its prose is still worth serving) without the missing listing, and say so.
        warnings.append(f"{rel}: {exc}; indexed without it")
        parsed = _parse(raw, rel, source, _LenientResolver(resolver))
    url = page_url(source, rel)
    chunks = chunk_page(parsed, source.slug, ingest.chunk_target_chars, ingest.chunk_max_chars)
    records = [_record(c, parsed.title, url, source, [], {}) for c in chunks]
    return _finish(rel, parsed.title, url, records, warnings, embedder_id)


def _parse(raw: str, rel: str, source: SourceConfig, resolver: IncludeResolver) -> ParsedPage:
    if rel.endswith(".adoc"):
        return read_asciidoc(raw, rel, resolver)
    return read_markdown(raw, rel, resolver, source.variables, mdx=rel.endswith(".mdx"))


class _LenientResolver(IncludeResolver):
    """Drops directives whose target is missing instead of failing (after the strict pass reported them)."""

    def __init__(self, inner: IncludeResolver) -> None:
        super().__init__(inner.root, inner.roots, inner.missing)

    def _read(self, page: PurePosixPath, target: str) -> str:
        try:
            return super()._read(page, target)
        except IncludeError:
            return ""


def read_corelib_file(
    root: Path, rel: str, source: SourceConfig, ingest: IngestSettings, embedder_id: str
) -> Iterator[PageRecord]:
    """One page per public item of a core library source file."""
    try:
        raw = (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadPageError(f"{rel}: unreadable ({exc})") from exc
    for item in corelib.extract_items(raw, rel):
        url = corelib_url(source, item.path)
        parsed = ParsedPage(item.path, split_sections(item.markdown()), {})
        chunks = chunk_page(parsed, source.slug, ingest.chunk_target_chars, ingest.chunk_max_chars)
        records = []
        method_names = {m.name for m in item.methods}
        for chunk in chunks:
            symbols = [item.path.lower(), item.name.lower()] if chunk.number == 0 else []
            documented = {h for h in [chunk.trail[-1], *(chunk.headings or [])] if h in method_names}
            for heading in sorted(documented):
                symbols += [f"{item.name}::{heading}".lower(), f"{item.path}::{heading}".lower()]
            summaries = (item.summaries() if chunk.number == 0 else []) + item.summaries(documented)
            # The weighted title field is the item's own name (and method), not its module path: generic
            # module words (core, starknet, storage) would otherwise outweigh the guides for every question.
            title_field = " ".join([item.name, *chunk.trail[2:], *(chunk.headings or [])])
            records.append(
                _record(
                    chunk,
                    item.path,
                    url,
                    source,
                    sorted(set(symbols)),
                    {"kind": item.kind, "file": rel},
                    title_field,
                    summaries,
                )
            )
        yield _finish(item.path, item.path, url, records, [], embedder_id)
