"""How retrieved documents are shown: numbered sources for clients (the ``sources`` event) and documentation text
for a coding agent (MCP mode, within a token budget); and chat history as the programs read it."""

from __future__ import annotations

from collections.abc import Sequence

from cairo_coder.tokens import count_tokens, count_tokens_cached, truncate_to_tokens
from cairo_coder.types import Message, SearchResult, SourceInfo

MAX_HISTORY_MESSAGE_CHARS = 4000


def format_history(history: Sequence[Message], limit: int) -> str:
    recent = list(history)[-limit:] if limit else []
    return "\n".join(f"{m.role.value}: {m.content[:MAX_HISTORY_MESSAGE_CHARS]}" for m in recent)


def source_infos(documents: Sequence[SearchResult]) -> list[SourceInfo]:
    infos = []
    for number, doc in enumerate(documents, start=1):
        meta = doc.document.metadata
        infos.append(
            SourceInfo(
                number=number,
                title=meta.title or meta.path,
                url=meta.url,
                source=meta.source,
                path=meta.path,
                section=list(meta.section),
                version=meta.source_commit,
                score=round(doc.score, 6),
            )
        )
    return infos


TRUNCATION_NOTE = "[... truncated to the token budget]\n"
MIN_CUT_TOKENS = 50  # a chunk cut shorter than this is left out (unless it is the only one)


def format_for_agent(documents: Sequence[SearchResult], max_tokens: int) -> str:
    """Documentation for a coding agent (MCP mode): title, url and content of each chunk, within ``max_tokens``
    (cl100k tokens, see tokens.py).

    Chunks are added whole in ranking order; the first chunk that would exceed the budget is cut at a line
    boundary and nothing follows it, so the most relevant text always comes first.
    """
    parts: list[str] = []
    used = 0
    for number, doc in enumerate(documents, start=1):
        meta = doc.document.metadata
        content = doc.document.content.strip()
        version = f" @ {meta.source_commit[:12]}" if meta.source_commit else ""
        header = f"## [{number}] {meta.heading()}\nSource: {meta.source}{version} — {meta.url}\n\n"
        block = f"{header}{content}\n"
        separator = 1 if parts else 0  # the line break that joins blocks
        # Counted in parts: the chunk's own count was stored at ingestion (else counted here, and cached). The
        # parts meet at line breaks, where cl100k's pre-tokenizer splits anyway: the sum is the block's count, or
        # one more when the closing line break merges into the last token (tests/unit/test_tokens.py checks it).
        content_tokens = meta.prompt_tokens if meta.prompt_tokens is not None else count_tokens_cached(content)
        cost = count_tokens(header) + content_tokens + 1
        if used + separator + cost > max_tokens:
            room = max_tokens - used - separator - count_tokens(TRUNCATION_NOTE)
            if room >= MIN_CUT_TOKENS or not parts:
                cut = truncate_to_tokens(block, room)
                if cut:
                    parts.append(cut + TRUNCATION_NOTE)
            break
        parts.append(block)
        used += separator + cost
    if not parts:
        return (
            "No documentation matching this query was found."
            if not documents
            else (f"The documentation found does not fit in {max_tokens} tokens; ask with a larger budget.")
        )
    return "\n".join(parts)


__all__ = ["TRUNCATION_NOTE", "format_for_agent", "format_history", "source_infos"]
