"""Client text made storable: what PostgreSQL (and UTF-8 itself) cannot hold is replaced, never rejected late.

A Python ``str`` from JSON can hold what no UTF-8 encoder accepts: lone surrogates (``"\\ud800"``, legal in JSON
escapes, refused by asyncpg's encoder, the embedding tokenizer and PostgreSQL's ``jsonb``), and NUL, which
``text`` and ``jsonb`` refuse. Left in, one such character fails a whole database write (a batch of other users'
records with it) or a search. Every client string is passed through :func:`clean_text` where it enters (the
question, the history, search queries, page URLs, records), so later stages never see them.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD and NUL characters removed (valid text is unchanged).

    A surrogate pair that was not joined (``"\\ud83d\\ude00"`` as two code points, from some JSON encoders) is
    joined back into its character first.
    """
    if not _UNSTORABLE.search(text):
        return text
    if "\x00" in text:
        text = text.replace("\x00", "")
    # surrogatepass + decode: joins valid pairs; replace: the lone ones become U+FFFD
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_json(value: Any) -> Any:
    """:func:`clean_text` applied to every string (keys too) of a JSON-like value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value
