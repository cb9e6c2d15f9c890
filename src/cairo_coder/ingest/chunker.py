"""Heading-aware chunking: one chunk per section, small sections merged forward, big ones split at block
boundaries. A fenced code block is never split; every chunk keeps its heading trail and section anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

from cairo_coder.config import CHUNK_MAX_CHARS, CHUNK_TARGET_CHARS, SlugStyle
from cairo_coder.ingest.readers import FENCE_RE, ParsedPage, Section, fenced_lines
from cairo_coder.ingest.urls import AnchorRegistry, heading_text


@dataclass
class Chunk:
    number: int
    trail: list[str]  # page title, then the headings down to the chunk's section
    anchor: str | None
    content: str
    headings: list[str] | None = None  # headings of sections merged into this chunk (for lexical weighting)


def blocks(text: str) -> list[str]:
    """Paragraph-level blocks; a fenced code block (blank lines included) is one block."""
    out: list[str] = []
    current: list[str] = []
    current_block: int | None = None
    for line, block in fenced_lines(text):
        if current and block != current_block:  # entering or leaving a code block ends the current one
            out.append("\n".join(current))
            current = []
        current_block = block
        if block is None and not line.strip():
            if current:
                out.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        out.append("\n".join(current))
    return out


def _split_large(text: str, target: int, max_chars: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for block in blocks(text):
        candidate = f"{current}\n\n{block}" if current else block
        if current and len(candidate) > target:
            pieces.append(current)
            current = block
        else:
            current = candidate
    if current:
        pieces.append(current)
    out: list[str] = []
    for piece in pieces:
        if len(piece) <= max_chars or FENCE_RE.match(piece):
            out.append(piece)
            continue
        # A giant paragraph (no blank lines, not code): split at line boundaries.
        buffer = ""
        for line in piece.split("\n"):
            if buffer and len(buffer) + len(line) + 1 > target:
                out.append(buffer)
                buffer = line
            else:
                buffer = f"{buffer}\n{line}" if buffer else line
        if buffer:
            out.append(buffer)
    return out


def chunk_page(
    page: ParsedPage,
    slug_style: SlugStyle,
    target_chars: int = CHUNK_TARGET_CHARS,
    max_chars: int = CHUNK_MAX_CHARS,
    min_chars: int = 350,
) -> list[Chunk]:
    registry = AnchorRegistry(slug_style)
    stack: list[tuple[int, str]] = []
    located: list[tuple[list[str], str | None, Section]] = []
    for section in page.sections:
        if section.level == 0:
            located.append(([page.title], None, section))
            continue
        section_anchor = registry.anchor(section.heading, section.explicit_anchor)
        while stack and stack[-1][0] >= section.level:
            stack.pop()
        stack.append((section.level, heading_text(section.heading)))
        trail = [page.title] + [h for lvl, h in stack if not (lvl == 1 and h == page.title)]
        located.append((trail, section_anchor, section))

    chunks: list[Chunk] = []
    pending: tuple[list[str], str | None, str, list[str]] | None = None
    for trail, anchor, section in located:
        text = section.text.strip()
        if not text:
            continue
        if pending is not None:
            p_trail, p_anchor, p_text, p_headings = pending
            merged = f"{p_text}\n\n{text}"
            if len(p_text) < min_chars and len(merged) <= target_chars:
                pending = (p_trail, p_anchor, merged, [*p_headings, trail[-1]])
                continue
            chunks.extend(_emit(p_trail, p_anchor, p_text, p_headings, len(chunks), target_chars, max_chars))
        pending = (trail, anchor, text, [])
    if pending is not None:
        chunks.extend(_emit(*pending, len(chunks), target_chars, max_chars))
    return chunks


def _emit(
    trail: list[str], anchor: str | None, text: str, merged: list[str], start: int, target: int, max_chars: int
) -> list[Chunk]:
    if len(text) <= max_chars:
        return [Chunk(start, trail, anchor, text, merged)]
    pieces = _split_large(text, target, max_chars)
    return [Chunk(start + i, trail, anchor, piece, merged) for i, piece in enumerate(pieces)]
