"""Code-aware tokenisation for lexical (BM25) search, shared by ingestion and queries.

Documentation about a programming language mixes prose with identifiers: ``ArrayTrait``, ``felt252_div``,
``get_caller_address``, ``core::array``. A plain word tokenizer either keeps identifiers whole (then "caller
address" never matches ``get_caller_address``) or splits them (then the exact identifier loses its weight). We
emit both: the whole identifier and its parts, stemmed prose words, without stopwords.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import snowballstemmer

TOKEN_RE = re.compile(r"[A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*")
CAMEL_RE = re.compile(r"[A-Z]+[0-9]*(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")
IDENTIFIER_RE = re.compile(
    r"\b(?:[A-Za-z_][A-Za-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*"  # paths: core::array::ArrayTrait
    r"|\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"  # snake_case: felt252_div
    r"|\b[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+\b"  # CamelCase with an inner capital: ArrayTrait
)
# Primitive type names (felt252, u8, u256) are not looked up as symbols: nearly every Cairo question mentions
# them as context, and answering "I have a felt252 value..." with the felt252 type page would be wrong.

_STOPWORD_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves also may might must shall us let lets get got gets use
using used want wants need needs like one two hi hello please thanks thank help anyone something way
ways know tell show give make made e g eg etc ie
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_STEMMER = snowballstemmer.stemmer("english")
MAX_TOKEN_LENGTH = 64


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


@lru_cache(maxsize=200_000)
def _expand(raw: str) -> tuple[str, ...]:
    """One raw token -> the terms it is indexed under (whole identifier, its parts, stems)."""
    if len(raw) > MAX_TOKEN_LENGTH:
        return ()
    lowered = raw.lower()
    terms: list[str] = []
    segments = [s for s in re.split(r"::|_", raw) if s]
    parts: list[str] = []
    for segment in segments:
        pieces = CAMEL_RE.findall(segment) or [segment]
        parts.extend(piece.lower() for piece in pieces)
    is_compound = len(parts) > 1 or "::" in raw
    if is_compound:
        terms.append(lowered)
        if "::" in raw:
            # Each path segment is a searchable identifier too (core::array::ArrayTrait -> arraytrait).
            terms.extend(s.lower() for s in segments if len(s) > 1)
    for part in parts:
        if part in STOPWORDS or (len(part) < 2 and not part.isdigit()):
            continue
        terms.append(_stem(part) if part.isalpha() else part)
    if not is_compound and not terms and lowered not in STOPWORDS and len(lowered) > 1:
        terms.append(lowered)
    return tuple(dict.fromkeys(terms))


def tokenize(text: str) -> list[str]:
    """Terms of a text in order (with repeats), for term frequencies and query terms."""
    out: list[str] = []
    for match in TOKEN_RE.finditer(text):
        out.extend(_expand(match.group(0)))
    return out


def term_frequencies(body_terms: list[str], title_terms: list[str], title_weight: float = 3.0) -> Counter[str]:
    """Term counts of a chunk, with title/heading terms counted ``title_weight`` times (a light BM25F)."""
    counts = Counter(body_terms)
    for term, count in Counter(title_terms).items():
        counts[term] += round(count * title_weight)
    return counts


def query_terms(query: str) -> list[str]:
    """Distinct query terms in first-occurrence order."""
    return list(dict.fromkeys(tokenize(query)))


# A felt252 printed in hex: error output carries its messages so ("0x7536345f737562204f766572666c6f77" is
# 'u64_sub Overflow'), and a question that pastes it asks about that message.
HEX_FELT_RE = re.compile(r"\b0x([0-9a-fA-F]{8,62})\b")
MIN_SHORT_STRING = 4


def short_strings(text: str) -> list[str]:
    """The Cairo short strings (printable ASCII, up to 31 bytes) that hex felts in ``text`` encode, in order."""
    found: list[str] = []
    for match in HEX_FELT_RE.finditer(text):
        digits = match.group(1)
        raw = bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits).lstrip(b"\x00")
        if len(raw) >= MIN_SHORT_STRING and all(32 <= byte < 127 for byte in raw):
            decoded = raw.decode("ascii")
            # Addresses and hashes are random bytes: printable by chance only when short; demand letters too.
            if sum(c.isalpha() for c in decoded) >= len(decoded) / 2 and decoded not in found:
                found.append(decoded)
    return found


def with_decoded_messages(query: str) -> str:
    """The query with the messages its hex felts encode put first (where an embedder that reads only the start
    of a long paste sees them), or the query itself."""
    messages = short_strings(query)
    return "\n".join([*messages, query]) if messages else query


# A question that pastes code or tool output: its informative terms (the rarest ones, which BM25 weighs most) are
# then the paste's own names (a project's test names, its variables, file paths) that no page shares, and they
# crowd out the words of the question and of the error. Lexical search of such a query reads its prose lines and
# its error lines only. Found on train misses (pasted test failures, compiler errors, shell sessions); long
# pastes there went from MRR@10 0.577 to 0.702 (4 items better, none worse), dev 1 better and 1 worse.
PASTE_MIN_CHARS = 250
ERROR_LINE_RE = re.compile(
    r"error|failed|fail\b|panic|overflow|not found|cannot|could not|unable|invalid|expected|mismatch|unknown"
    r"|missing|denied|revert",
    re.IGNORECASE,
)
LONG_HEX_RE = re.compile(r"0x[0-9a-fA-F]{6,}")
CODE_LINE_STARTS = ("fn ", "let ", "use ", "#[", "//", "impl ", "struct ", "mod ")
CODE_CHARS = frozenset("{}();=<>[]#&|\\/\"'@$`*")
MAX_CODE_CHAR_SHARE = 0.06
MAX_SALIENT_LINE = 300
MIN_SALIENT_CHARS = 20
PROSE_WORD_RE = re.compile(r"[A-Za-z\u00c0-\u00ff]{2,}")


def _is_prose(line: str) -> bool:
    words = PROSE_WORD_RE.findall(line)
    code_chars = sum(1 for c in line if c in CODE_CHARS)
    return len(words) >= 3 and code_chars / len(line) < MAX_CODE_CHAR_SHARE and not line.startswith(CODE_LINE_STARTS)


def salient_text(query: str) -> str:
    """The prose and error lines of a long query that pastes code or output (hex numbers removed), or the query
    itself when it is short or has no such lines."""
    if len(query) <= PASTE_MIN_CHARS:
        return query
    kept: list[str] = []
    for line in query.splitlines():
        line = LONG_HEX_RE.sub(" ", line).strip()
        if line and (ERROR_LINE_RE.search(line) or _is_prose(line)):
            line = line[:MAX_SALIENT_LINE]
            if line not in kept:
                kept.append(line)
    text = "\n".join(kept)
    return text if len(text) >= MIN_SALIENT_CHARS else query


def identifiers(query: str) -> list[str]:
    """Code-shaped identifiers in a query (paths, snake_case, CamelCase, felt252), lowercased, for symbol lookup."""
    found = [m.group(0).lower() for m in IDENTIFIER_RE.finditer(query)]
    return list(dict.fromkeys(found))
