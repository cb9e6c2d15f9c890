"""Whole documentation pages, looked up by their public URL (chunks joined in order)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from cairo_coder.sanitize import clean_text


@dataclass
class Page:
    source: str
    path: str
    title: str
    url: str
    version: str | None
    content: str


def _candidates(url: str) -> list[str]:
    base = clean_text(url).strip().split("#", 1)[0].split("?", 1)[0]
    variants = {base, base.rstrip("/"), base.rstrip("/") + "/"}
    if base.endswith(".html"):
        variants.add(base[: -len(".html")])
    else:
        variants.add(base.rstrip("/") + ".html")
    return sorted(v for v in variants if v)


async def fetch_page(pool: asyncpg.Pool, url: str) -> Page | None:
    """The page whose URL is ``url`` (an anchor, query or trailing slash does not matter), or None."""
    row = await pool.fetchrow(
        "SELECT source, path, title, url, source_commit FROM pages WHERE url = ANY($1::text[]) "
        "ORDER BY source, path LIMIT 1",
        _candidates(url),
    )
    if row is None:
        return None
    chunks = await pool.fetch(
        "SELECT content FROM documents WHERE source = $1 AND path = $2 ORDER BY chunk_number",
        row["source"],
        row["path"],
    )
    content = "\n\n".join(c["content"].strip() for c in chunks)
    return Page(row["source"], row["path"], row["title"], row["url"], row["source_commit"], content)
