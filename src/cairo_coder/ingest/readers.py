"""Readers: Markdown, MDX and AsciiDoc pages into a title and heading-delimited sections of Markdown.

Include directives are resolved first (see :mod:`includes`), so sections hold the real code. MDX imports and
JSX are dropped (their text kept); AsciiDoc is converted to Markdown (headings, source blocks, attributes,
cross references), keeping explicit ``[#id]`` anchors for the section URLs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from cairo_coder.errors import IngestError
from cairo_coder.ingest.includes import IncludeResolver
from cairo_coder.ingest.urls import heading_text


class BadPageError(IngestError):
    """A page that cannot be read (unreadable, broken front matter...); it is reported and skipped."""


@dataclass
class Section:
    level: int  # 0 for the text before the first heading
    heading: str  # the raw heading text ("" for level 0)
    explicit_anchor: str | None
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip("\n")


@dataclass
class ParsedPage:
    title: str
    sections: list[Section]
    front_matter: dict[str, str]


FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_RE = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT_ID_RE = re.compile(r"\s*\{#([\w.-]+)\}\s*$")
VARIABLE_RE = re.compile(r"\{\{\s*([a-zA-Z_][\w]*)\s*\}\}")
CROSSREF_RE = re.compile(r"\{\{#(ref|chap)\s+([^}]+)\}\}")
DROPPED_DIRECTIVE_RE = re.compile(r"\{\{#(label|quiz|playground|title)[^}]*\}\}")


# ------------------------------------------------------------------------------------------------ helpers


def parse_front_matter(text: str, path: str) -> tuple[dict[str, str], str]:
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            meta: dict[str, str] = {}
            for line in lines[1:index]:
                if not line.strip() or line.startswith((" ", "\t", "-", "#")):
                    continue
                key, sep, value = line.partition(":")
                if not sep:
                    raise BadPageError(f"{path}: broken front matter (line {line!r} is not 'key: value')")
                meta[key.strip()] = value.strip().strip("'\"")
            return meta, "\n".join(lines[index + 1 :])
    raise BadPageError(f"{path}: broken front matter (no closing '---')")


def fenced_lines(text: str) -> Iterator[tuple[str, int | None]]:
    """Each line with the number of the fenced code block it belongs to (fence lines included), else None.

    The one place that knows Markdown fences: a closing fence uses the opening character, is at least as
    long and carries no info string. An unclosed fence runs to the end of the text.
    """
    fence: str | None = None
    block = 0
    for line in text.split("\n"):
        match = FENCE_RE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                block += 1
                yield line, block
            else:
                yield line, None
            continue
        yield line, block
        if (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not line.strip()[len(match.group(1)) :].strip()
        ):
            fence = None


def outside_code(text: str, transform: Callable[[str], str | None]) -> str:
    """Apply ``transform(line) -> str | None`` to lines outside fenced code blocks (None drops the line)."""
    out: list[str] = []
    for line, block in fenced_lines(text):
        result = line if block is not None else transform(line)
        if result is not None:
            out.append(result)
    return "\n".join(out)


def split_sections(text: str) -> list[Section]:
    """Split Markdown into sections at ATX headings outside code fences."""
    sections = [Section(0, "", None)]
    for line, block in fenced_lines(text):
        if block is None:
            heading = ATX_RE.match(line)
            if heading:
                raw = heading.group(2)
                explicit = EXPLICIT_ID_RE.search(raw)
                anchor = explicit.group(1) if explicit else None
                raw = EXPLICIT_ID_RE.sub("", raw)
                sections.append(Section(len(heading.group(1)), raw, anchor, [f"{heading.group(1)} {raw}"]))
                continue
        sections[-1].lines.append(line)
    return [s for s in sections if s.level > 0 or s.text.strip()]


def _title_from(sections: list[Section], front: dict[str, str], fallback: str) -> str:
    if front.get("title"):
        return front["title"]
    for section in sections:
        if section.level == 1:
            return heading_text(section.heading)
    for section in sections:
        if section.level > 0:
            return heading_text(section.heading)
    return fallback


def fallback_title(path: str) -> str:
    stem = PurePosixPath(path).stem
    if stem.lower() in ("index", "readme"):
        stem = PurePosixPath(path).parent.name or stem
    return re.sub(r"[-_]+", " ", stem).strip().capitalize()


# ------------------------------------------------------------------------------------------------ Markdown / MDX

_JSX_LINE_RE = re.compile(r"^\s*</?[A-Z][\w.]*(\s[^>]*)?/?>\s*$")
_JSX_OPEN_RE = re.compile(r"^\s*<[A-Z][\w.]*(\s|$)")
_HTML_TAG_RE = re.compile(r"</?[a-zA-Z][\w.-]*(?:\s[^<>]*)?/?>")


def read_markdown(
    raw: str,
    path: str,
    resolver: IncludeResolver | None,
    variables: dict[str, str] | None = None,
    mdx: bool = False,
) -> ParsedPage:
    front, body = parse_front_matter(raw, path)
    page = PurePosixPath(path)
    if resolver is not None:
        body = resolver.resolve_mdbook(body, page)
        body = resolver.resolve_vocs(body, page)
    if variables:
        body = VARIABLE_RE.sub(lambda m: variables.get(m.group(1), m.group(0)), body)
    body = CROSSREF_RE.sub(lambda m: m.group(2).replace("-", " ").replace("_", " "), body)
    body = DROPPED_DIRECTIVE_RE.sub("", body)
    if mdx:
        body = _strip_mdx(body)
    body = outside_code(body, lambda line: _HTML_TAG_RE.sub("", line))
    sections = split_sections(body)
    return ParsedPage(_title_from(sections, front, fallback_title(path)), sections, front)


def _strip_mdx(body: str) -> str:
    """Drop ESM imports/exports, JSX comments and component tags; keep text between tags."""
    state = {"in_tag": False}

    def line_filter(line: str) -> str | None:
        stripped = line.strip()
        if state["in_tag"]:
            if stripped.endswith(("/>", ">")):
                state["in_tag"] = False
            return None
        if re.match(r"^(import|export)\s", stripped):
            return None
        if stripped.startswith("{/*") and stripped.endswith("*/}"):
            return None
        if _JSX_LINE_RE.match(line):
            return None
        if _JSX_OPEN_RE.match(line) and not stripped.endswith(">"):
            state["in_tag"] = True  # a multi-line JSX opening tag: drop until it closes
            return None
        return line

    return outside_code(body, line_filter)


# ------------------------------------------------------------------------------------------------ AsciiDoc

ADOC_HEADING_RE = re.compile(r"^(={1,6})\s+(.+?)\s*$")
ADOC_ANCHOR_RE = re.compile(r"^\[(?:#([\w.-]+)[^\]]*|\[([\w.-]+)(?:,[^\]]*)?\])\]\s*$")
ADOC_ATTR_RE = re.compile(r"^:([\w-]+):\s*(.*)$")
ADOC_SOURCE_RE = re.compile(r"^\[(?:source)?,\s*([\w+-]+)[^\]]*\]\s*$")
ADOC_BLOCK_ATTR_RE = re.compile(r"^\[[^\]]*\]\s*$")
ADOC_XREF_RE = re.compile(r"xref:([^\[\s]*)\[([^\]]*)\]")
ADOC_LINK_RE = re.compile(r"(?:link:)?(https?://[^\[\s]+)\[([^\]]*)\]")
ADOC_ROLE_RE = re.compile(r"\[\.[\w.-]+\]#(.*?)#")
ADOC_PASS_RE = re.compile(r"\+\+(.*?)\+\+")


def _adoc_inline(text: str, attributes: dict[str, str]) -> str:
    for _ in range(3):  # attributes may reference links that reference attributes
        text = re.sub(r"\{([\w-]+)\}", lambda m: attributes.get(m.group(1), m.group(0)), text)
    text = ADOC_XREF_RE.sub(lambda m: m.group(2) or m.group(1), text)
    text = ADOC_LINK_RE.sub(lambda m: m.group(2) or m.group(1), text)
    text = ADOC_ROLE_RE.sub(r"\1", text)
    return ADOC_PASS_RE.sub(r"\1", text)


def read_asciidoc(raw: str, path: str, resolver: IncludeResolver | None) -> ParsedPage:
    text = raw
    if resolver is not None:
        text = resolver.resolve_asciidoc(text, PurePosixPath(path))
    attributes: dict[str, str] = {}
    out: list[str] = []
    pending_anchor: str | None = None
    pending_lang: str | None = None
    delimiter: str | None = None  # inside a listing/literal block
    comment_block = False
    for line in text.split("\n"):
        stripped = line.rstrip()
        if comment_block:
            if stripped == "////":
                comment_block = False
            continue
        if delimiter is not None:
            if stripped == delimiter:
                out.append("```")
                delimiter = None
            else:
                out.append(line)
            continue
        if stripped == "////":
            comment_block = True
            continue
        if stripped in ("----", "....", "```"):
            delimiter = stripped
            out.append(f"```{pending_lang or ''}")
            pending_lang = None
            continue
        if stripped.startswith("//"):
            continue
        attr = ADOC_ATTR_RE.match(stripped)
        if attr:
            attributes[attr.group(1)] = _adoc_inline(attr.group(2), attributes)
            continue
        source = ADOC_SOURCE_RE.match(stripped)
        if source:
            pending_lang = source.group(1)
            continue
        anchor = ADOC_ANCHOR_RE.match(stripped)
        if anchor:
            pending_anchor = anchor.group(1) or anchor.group(2)
            continue
        if ADOC_BLOCK_ATTR_RE.match(stripped):
            continue
        if stripped in ("====", "****", "--"):
            continue
        heading = ADOC_HEADING_RE.match(stripped)
        if heading:
            level = len(heading.group(1))
            title = _adoc_inline(heading.group(2), attributes)
            suffix = f" {{#{pending_anchor}}}" if pending_anchor else ""
            out.append(f"{'#' * level} {title}{suffix}")
            pending_anchor = None
            continue
        pending_anchor = None if stripped else pending_anchor
        out.append(_adoc_inline(line, attributes))
    sections = split_sections("\n".join(out))
    return ParsedPage(_title_from(sections, {}, fallback_title(path)), sections, {})
