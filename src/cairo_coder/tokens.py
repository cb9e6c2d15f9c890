"""Token counting for token budgets (the documentation MCP mode returns to a coding agent).

Counts use OpenAI's ``cl100k_base`` encoding (tiktoken), read from the copy that LiteLLM ships inside its
package, so nothing is downloaded (tiktoken would otherwise fetch the file on first use) and LiteLLM itself need
not be imported. Other models' tokenizers differ from cl100k by a few percent to ~15% on code; a budget in
cl100k tokens is the common yardstick agents and their users know.

Why not characters / 4: on the shared corpus half of the MCP answers cut at ``4 × budget`` characters were over
the budget (up to 15%), because code has fewer characters per token than prose.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Any, Protocol, cast

logger = logging.getLogger(__name__)

# Without the tokenizer file: a bound no real text exceeds in practice (cl100k averages ~4 characters per token
# on prose and ~3 on code), so a budget is still respected, only used less fully.
FALLBACK_CHARS_PER_TOKEN = 2.5
# Chunks whose token counts are remembered: the corpus has ~5,000, a cached entry holds its ~2 KB text.
CACHED_TEXTS = 4096
# tiktoken caches a file under the SHA-1 of its URL; LiteLLM's package holds that cache entry for cl100k_base.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


class Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


def bundled_tokenizer_dir() -> Path | None:
    """LiteLLM's folder of tiktoken files, if it holds cl100k_base (found without importing LiteLLM)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if (folder / hashlib.sha1(CL100K_URL.encode()).hexdigest()).is_file() else None


@functools.cache
def encoding() -> Encoding | None:
    """The cl100k_base encoding, loaded once from the bundled file; None (counts are estimated) without it."""
    folder = bundled_tokenizer_dir()
    try:
        import tiktoken
    except ImportError:
        folder = None
    if folder is None:
        logger.warning(
            "no local cl100k_base tokenizer file: token budgets use an estimate of %.1f characters per token",
            FALLBACK_CHARS_PER_TOKEN,
        )
        return None
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)  # where tiktoken looks before it would download
    try:
        return cast(Encoding, tiktoken.get_encoding("cl100k_base"))
    except Exception as exc:  # an unreadable or corrupt file: estimate rather than fail a request
        logger.warning(
            "cannot load the cl100k_base tokenizer (%s: %s); token budgets use an estimate", type(exc).__name__, exc
        )
        return None
    finally:
        if saved is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in cl100k_base (an upper estimate without the tokenizer)."""
    enc = encoding()
    if enc is None:
        return math.ceil(len(text) / FALLBACK_CHARS_PER_TOKEN)
    return len(enc.encode_ordinary(text))


@functools.lru_cache(maxsize=CACHED_TEXTS)
def count_tokens_cached(text: str) -> int:
    """:func:`count_tokens` for texts that recur, such as documentation chunks (a bounded LRU by value)."""
    return count_tokens(text)


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that ends at a line break and has at most ``limit`` tokens ('' if none)."""
    if limit <= 0:
        return ""
    enc = encoding()
    if enc is None:
        prefix = text[: int(limit * FALLBACK_CHARS_PER_TOKEN)]
    else:
        tokens = enc.encode_ordinary(text)
        if len(tokens) <= limit:
            return text
        prefix = enc.decode(tokens[:limit])
    if prefix == text:
        return text
    lines = prefix.split("\n")[:-1]  # whole lines only: the last piece is a partial line (or empty)
    # A prefix can tokenize differently from the tokens it came from (a line break is merged with what follows
    # it); rare, and one line less always fixes it.
    while lines and count_tokens("\n".join(lines) + "\n") > limit:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def token_offsets(text: str) -> list[tuple[int, int]]:
    """The (start, end) character span of each cl100k token of ``text`` (spans of ~2.5 characters without the
    tokenizer: the estimate :func:`count_tokens` uses)."""
    enc = encoding()
    if enc is None:
        step = FALLBACK_CHARS_PER_TOKEN
        count = math.ceil(len(text) / step)
        return [(int(i * step), min(len(text), int((i + 1) * step))) for i in range(count)]
    tokens = enc.encode_ordinary(text)
    decoded, starts = cast(Any, enc).decode_with_offsets(tokens)
    if decoded != text:  # tokens that split a character: fall back to the estimate's spans
        step = max(1.0, len(text) / max(1, len(tokens)))
        return [(int(i * step), min(len(text), int((i + 1) * step))) for i in range(len(tokens))]
    ends = [*starts[1:], len(text)]
    return list(zip(starts, ends, strict=True))


__all__ = ["count_tokens", "count_tokens_cached", "encoding", "token_offsets", "truncate_to_tokens"]
