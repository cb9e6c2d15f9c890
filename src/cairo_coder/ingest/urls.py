"""Public page URLs and #section anchors, per site generator, so that every citation opens the right place."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from cairo_coder.config import SlugStyle, SourceConfig

_MARKUP_RE = re.compile(r"`|\*\*|__|(?<!\w)[*_](?!\s)|(?<!\s)[*_](?!\w)")
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_RE = re.compile(r"<[^>]+>")


def heading_text(raw: str) -> str:
    """The visible text of a heading (links, inline code, emphasis, HTML tags removed)."""
    text = _LINK_RE.sub(r"\1", raw)
    text = _HTML_RE.sub("", text)
    text = _MARKUP_RE.sub("", text)
    text = re.sub(r"\s*\{#[\w-]+\}\s*$", "", text)  # explicit {#id} suffix
    return text.strip()


def slugify(heading: str, style: SlugStyle) -> str:
    text = heading_text(heading)
    if style == "mdbook":
        # mdBook's normalize_id: keep alphanumerics, '_' and '-', spaces to '-', drop the rest, lowercase.
        return "".join(
            ch.lower() if (ch.isalnum() or ch in "_-") else "-" if ch.isspace() else "" for ch in text.strip()
        )
    if style == "github":
        # github-slugger (Vocs, Docusaurus): lowercase, drop punctuation, spaces to '-'.
        lowered = text.lower()
        kept = "".join(ch for ch in lowered if ch.isalnum() or ch in " _-" or unicodedata.category(ch)[0] == "M")
        return kept.replace(" ", "-")
    if style == "vitepress":
        # @mdit-vue/shared slugify.
        normalised = unicodedata.normalize("NFKD", text)
        normalised = "".join(ch for ch in normalised if unicodedata.category(ch) != "Mn")
        normalised = re.sub(r"[\u0000-\u001f]", "", normalised)
        normalised = re.sub(r"[\s~`!@#$%^&*()\-_+=\[\]{}|\\;:\"'“”‘’<>,.?/]+", "-", normalised)
        normalised = re.sub(r"-{2,}", "-", normalised).strip("-")
        if normalised[:1].isdigit():
            normalised = "_" + normalised
        return normalised.lower()
    # antora (Asciidoctor with idprefix '' and idseparator '_', as the OpenZeppelin site uses).
    lowered = text.lower()
    lowered = re.sub(r"&(?:[a-z][a-z]+\d{0,2}|#\d{2,5}|#x[\da-f]{2,4});", "", lowered)
    lowered = re.sub(r"[^\w\s.\-]+", "", lowered)
    lowered = re.sub(r"[\s.\-]+", "_", lowered)
    return re.sub(r"_{2,}", "_", lowered).strip("_")


class AnchorRegistry:
    """Per-page de-duplication of anchors as the site generators do it (``id``, ``id-1``, ``id-2``...)."""

    def __init__(self, style: SlugStyle) -> None:
        self.style = style
        self.seen: dict[str, int] = {}

    def anchor(self, heading: str, explicit: str | None = None) -> str:
        if explicit:
            self.seen.setdefault(explicit, 0)
            return explicit
        base = slugify(heading, self.style)
        if base not in self.seen:
            self.seen[base] = 0
            return base
        self.seen[base] += 1
        sep = "_" if self.style == "antora" else "-"
        return f"{base}{sep}{self.seen[base]}"


def page_url(source: SourceConfig, rel_path: str) -> str:
    """The public URL of a page, from its path relative to the source's docs root."""
    path = PurePosixPath(rel_path)
    stem = str(path.with_suffix("")) if path.suffix else str(path)
    base = source.base_url
    if source.url_style == "html":
        if source.readme_is_index and path.stem.lower() == "readme":
            parent = str(path.parent)
            return f"{base}/index.html" if parent == "." else f"{base}/{parent}/index.html"
        return f"{base}/{stem}.html"
    if source.url_style == "antora":
        prefix = "modules/ROOT/pages/"
        stem = stem[len(prefix) :] if stem.startswith(prefix) else stem
        segments = [seg.lower().replace("_", "-") for seg in stem.split("/")]
        if segments and segments[-1] == "index":
            segments = segments[:-1]
        return "/".join([base, *segments]) if segments else base
    # clean / mintlify: path without extension, prefixes stripped, folder index pages at the folder.
    for prefix in source.strip_prefixes:
        if stem.startswith(prefix):
            stem = stem[len(prefix) :]
    if stem == "index":
        return base
    stem = stem.removesuffix("/index")
    return f"{base}/{stem}"


def with_anchor(source: SourceConfig, url: str, anchor: str | None) -> str:
    if not anchor or source.url_style in ("mintlify", "corelib"):
        return url
    return f"{url}#{anchor}"


def corelib_url(source: SourceConfig, item_path: str) -> str:
    return f"{source.base_url}/{item_path.replace('::', '-')}"
