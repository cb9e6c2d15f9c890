"""Include directives, resolved so that chunks hold the real code, never the directive.

- mdBook: ``{{#include PATH}}``, ``{{#include PATH:anchor}}``, ``{{#include PATH:a:b}}`` (line ranges) and the
  same forms of ``{{#rustdoc_include}}`` (we keep the visible part). Anchors are the regions between
  ``ANCHOR: name`` and ``ANCHOR_END: name``; anchor marker lines never leak into the output.
- Vocs: ``// [!include ~/PATH:region]``, regions between ``[!region name]`` and ``[!endregion name]``.
- AsciiDoc: ``include::PATH[tag=x]``, ``[tags=a;b]``, ``[lines=1..5]``, regions between ``tag::x[]`` and
  ``end::x[]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cairo_coder.errors import IngestError

MDBOOK_RE = re.compile(r"\{\{#(include|rustdoc_include)\s+([^}\s]+)\s*\}\}")
VOCS_RE = re.compile(r"^(?P<indent>[ \t]*)//\s*\[!include\s+(?P<target>[^\]\s]+)\s*\]\s*$", re.MULTILINE)
ADOC_RE = re.compile(r"^include::(?P<target>[^\[\s]+)\[(?P<attrs>[^\]]*)\]\s*$", re.MULTILINE)
MDBOOK_ANCHOR_RE = re.compile(r"ANCHOR(?:_END)?:\s*[\w-]+")
VOCS_REGION_RE = re.compile(r"\[!(?:end)?region(?:\s+[\w-]+)?\]")
ADOC_TAG_RE = re.compile(r"\b(?:tag|end)::[\w-]+\[\]")
MAX_DEPTH = 8


class IncludeError(IngestError):
    """An include directive whose target is missing or whose anchor/region/tag does not exist."""


@dataclass
class IncludeResolver:
    """Resolves a page's include directives against the local tree of its source.

    ``root`` is the source's folder (laid out like the shared corpus); ``roots`` maps a directive's path prefix
    (after resolving it against the page's folder) to where that content is stored, e.g. ``../listings/`` ->
    ``listings/`` for the Cairo Book, ``~/`` -> ``""`` for Vocs.
    """

    root: Path
    roots: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def _locate(self, page: PurePosixPath, target: str) -> Path:
        if target.startswith("~/"):
            mapped = self.roots.get("~/", "") + target[2:]
            return self.root / mapped
        joined = _normalise(page.parent / target)
        text = str(joined)
        for prefix, stored in self.roots.items():
            if prefix.startswith("../") and text.startswith(prefix):
                return self.root / (stored + text[len(prefix) :])
        return self.root / text

    def _read(self, page: PurePosixPath, target: str) -> str:
        path = self._locate(page, target)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.missing.append(target)
            raise IncludeError(f"include target {target!r} not found ({path})") from exc

    # ---------------------------------------------------------------------------------------------- mdBook

    def resolve_mdbook(self, text: str, page: PurePosixPath, depth: int = 0) -> str:
        def replace(match: re.Match[str]) -> str:
            spec = match.group(2)
            target, selector = _split_selector(spec)
            body = self._read(page, target)
            selected = _select_mdbook(body, selector, target)
            if depth < MAX_DEPTH and "{{#" in selected:
                selected = self.resolve_mdbook(selected, _normalise(page.parent / target), depth + 1)
            return selected.rstrip("\n")

        return MDBOOK_RE.sub(replace, text)

    # ---------------------------------------------------------------------------------------------- Vocs

    def resolve_vocs(self, text: str, page: PurePosixPath) -> str:
        def replace(match: re.Match[str]) -> str:
            target, _, region = match.group("target").partition(":")
            body = self._read(page, target)
            selected = _select_region(body, region, target) if region else body
            selected = "\n".join(line for line in selected.splitlines() if not VOCS_REGION_RE.search(line))
            return selected.rstrip("\n")

        return VOCS_RE.sub(replace, text)

    # ---------------------------------------------------------------------------------------------- AsciiDoc

    def resolve_asciidoc(self, text: str, page: PurePosixPath, depth: int = 0) -> str:
        def replace(match: re.Match[str]) -> str:
            target = match.group("target")
            attrs = _parse_adoc_attrs(match.group("attrs"))
            body = self._read(page, target)
            tags = [t for t in re.split(r"[;,]", attrs.get("tags", attrs.get("tag", ""))) if t]
            if tags:
                body = "\n".join(_select_adoc_tag(body, tag, target) for tag in tags)
            elif "lines" in attrs:
                body = _select_lines_spec(body, attrs["lines"])
            body = "\n".join(line for line in body.splitlines() if not ADOC_TAG_RE.search(line))
            if depth < MAX_DEPTH and "include::" in body:
                body = self.resolve_asciidoc(body, _normalise(page.parent / target), depth + 1)
            return body.rstrip("\n")

        return ADOC_RE.sub(replace, text)


def _normalise(path: PurePosixPath) -> PurePosixPath:
    """Collapse '.' and 'a/..' segments, keeping leading '..' (a path that leaves the docs root)."""
    parts: list[str] = []
    for part in path.parts:
        if part == ".":
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _split_selector(spec: str) -> tuple[str, str]:
    """'path:anchor' -> ('path', 'anchor'); 'path:2:10' -> ('path', '2:10'); 'path' -> ('path', '')."""
    target, sep, rest = spec.partition(":")
    return (target, rest) if sep else (spec, "")


def _select_mdbook(body: str, selector: str, target: str) -> str:
    if not selector:
        lines = body.splitlines()
    elif re.fullmatch(r"\d*(:\d*)?", selector):
        lines = _select_range(body.splitlines(), selector)
    else:
        lines = _anchored(body, selector, target)
    return "\n".join(line for line in lines if not MDBOOK_ANCHOR_RE.search(line))


def _select_range(lines: list[str], selector: str) -> list[str]:
    start_s, sep, end_s = selector.partition(":")
    start = int(start_s) if start_s else 1
    if not sep:
        return lines[start - 1 : start]  # a single number selects that one line
    end = int(end_s) if end_s else len(lines)
    return lines[max(start - 1, 0) : end]


def _between(body: str, start: re.Pattern[str], end: re.Pattern[str], what: str, target: str) -> list[str]:
    """Lines between start and end markers (marker lines excluded; a region may open several times)."""
    out: list[str] = []
    inside = found = False
    for line in body.splitlines():
        if end.search(line):
            inside = False
        elif start.search(line):
            inside = found = True
        elif inside:
            out.append(line)
    if not found:
        raise IncludeError(f"{what} not found in {target}")
    return out


def _anchored(body: str, anchor: str, target: str) -> list[str]:
    name = re.escape(anchor)
    return _dedent(
        _between(
            body,
            re.compile(rf"ANCHOR:\s*{name}\b"),
            re.compile(rf"ANCHOR_END:\s*{name}\b"),
            f"anchor {anchor!r}",
            target,
        )
    )


def _select_region(body: str, region: str, target: str) -> str:
    name = re.escape(region)
    lines = _between(
        body,
        re.compile(rf"\[!region\s+{name}\]"),
        re.compile(rf"\[!endregion\s+{name}\]"),
        f"region {region!r}",
        target,
    )
    return "\n".join(_dedent(lines))


def _parse_adoc_attrs(raw: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if sep:
            attrs[key.strip()] = value.strip().strip('"')
    return attrs


def _select_adoc_tag(body: str, tag: str, target: str) -> str:
    name = re.escape(tag)
    lines = _between(body, re.compile(rf"tag::{name}\[\]"), re.compile(rf"end::{name}\[\]"), f"tag {tag!r}", target)
    return "\n".join(lines)


def _select_lines_spec(body: str, spec: str) -> str:
    lines = body.splitlines()
    out: list[str] = []
    for part in re.split(r"[;,]", spec):
        start_s, sep, end_s = part.partition("..")
        start = int(start_s or 1)
        end = int(end_s) if end_s and end_s != "-1" else (len(lines) if sep else start)
        out.extend(lines[start - 1 : end])
    return "\n".join(out)


def _dedent(lines: list[str]) -> list[str]:
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents) if indents else 0
    return [line[cut:] for line in lines]
