"""Deterministic checks of a generated answer against a generation item (datasets.py), and their score.

Each check passes, fails (with a score in [0, 1]) or is skipped, and says why in words: the words are the
textual feedback GEPA optimizes on, and what a maintainer reads in a report. The score of an answer is the mean
of the checks that ran (a skipped check neither helps nor hurts: a compile check that could not run is reported
as skipped, never as passed).

- ``code_block``: a fenced code block is present when the item expects code (```cairo, ```toml, ```bash ...).
- ``legacy_syntax``: no removed syntax (Cairo 0 ``%lang``/``func``/``@storage_var``, ``#[contract]`` modules,
  ``LegacyMap``, ``felt`` as a type, conversions from removed traits) and none of the item's ``forbidden``.
- ``citations``: every ``[n]`` points at a provided source, and an answer with sources cites at least one.
- ``expected``: the item's expected API items, attributes, imports (inside ``use`` lines) and Scarb keys.
- ``declines``: an off-topic question is declined (no code, no citations).
- ``compile`` (compile_check.py) and ``judge`` (an LLM's score) are added by the evaluation when they run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from cairo_coder.citations import check_citations
from cairo_coder.datasets import GenerationItem
from cairo_coder.ingest.readers import fenced_lines

Status = Literal["passed", "failed", "skipped"]

# Removed or pre-2.0 syntax, as it appears in code (the patterns run on code blocks and inline code).
LEGACY_PATTERNS: dict[str, re.Pattern[str]] = {
    "%lang (Cairo 0)": re.compile(r"%lang\b"),
    "func (Cairo 0 function)": re.compile(r"^\s*func\s+\w+\s*[{(]", re.MULTILINE),
    "@storage_var / @external / @view (Cairo 0 decorators)": re.compile(r"@(storage_var|external|view|event)\b"),
    "#[contract] module (pre-2.0)": re.compile(r"#\[contract\]"),
    "LegacyMap (replaced by Map)": re.compile(r"\bLegacyMap\b"),
    "felt type (felt252 since 2.0)": re.compile(r"(?:[:<,(]|->)\s*felt\b"),
    "ContractAddressIntoFelt252 / Felt252TryIntoContractAddress (removed traits)": re.compile(
        r"\b(ContractAddressIntoFelt252|Felt252TryIntoContractAddress|ContractAddressZeroable)\b"
    ),
    "#[external] / #[view] (pre-2.0 attributes)": re.compile(r"#\[(external|view)\]"),
}
_LANGS = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_USE = re.compile(r"^\s*(?:pub\s+)?use\s+([^;]+);?", re.MULTILINE)
_DECLINE = re.compile(
    r"\b(only (help|answer|assist)|can only|not (able|related)|outside (of )?(my|the) scope|cannot help|can't help)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    score: float | None  # None when skipped
    detail: str  # why, in words (GEPA's feedback; the report's explanation)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(name: str, why: str) -> Check:
    return Check(name, "skipped", None, why)


def scored(name: str, score: float, detail: str) -> Check:
    score = max(0.0, min(1.0, score))
    return Check(name, "passed" if score >= 1.0 else "failed", round(score, 4), detail)


@dataclass(frozen=True)
class CodeBlock:
    language: str  # the info string's first word, lower case ("" when none)
    code: str


def code_blocks(answer: str) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown answer, in order (an unclosed block runs to the end)."""
    blocks: dict[int, list[str]] = {}
    languages: dict[int, str] = {}
    for line, block in fenced_lines(answer):
        if block is None:
            continue
        if block not in blocks:
            match = _LANGS.match(line)
            languages[block] = (match.group(2) if match else "").lower()
            blocks[block] = []
            continue
        blocks[block].append(line)
    out = []
    for number, lines in blocks.items():
        if lines and _LANGS.match(lines[-1]) and not lines[-1].strip().strip("`~"):
            lines = lines[:-1]  # the closing fence
        out.append(CodeBlock(languages[number], "\n".join(lines)))
    return out


def cairo_code(answer: str) -> str:
    """The answer's Cairo code: its ```cairo (or ```rust, or unlabelled) blocks, joined."""
    return "\n\n".join(b.code for b in code_blocks(answer) if b.language in ("cairo", "rust", "cairo-lang", ""))


def check_code_block(item: GenerationItem, answer: str) -> Check:
    if not item.code_expected:
        return skipped("code_block", "the question does not ask for code")
    blocks = code_blocks(answer)
    if blocks and any(b.code.strip() for b in blocks):
        languages = ", ".join(sorted({b.language or "unlabelled" for b in blocks}))
        return scored("code_block", 1.0, f"code present ({languages})")
    return scored("code_block", 0.0, "the question asks for code but the answer has no fenced code block")


def check_legacy(item: GenerationItem, answer: str) -> Check:
    code = "\n".join(b.code for b in code_blocks(answer)) + "\n" + " ".join(re.findall(r"`([^`\n]+)`", answer))
    found = [name for name, pattern in LEGACY_PATTERNS.items() if pattern.search(code)]
    found += [f"forbidden for this question: {text!r}" for text in item.forbidden if text in answer]
    if found:
        return scored("legacy_syntax", 0.0, "outdated or wrong syntax: " + "; ".join(found))
    return scored("legacy_syntax", 1.0, "no removed syntax")


def check_citations_of(answer: str, source_count: int) -> Check:
    result = check_citations(answer, source_count)
    total = len(result.cited) + len(result.unknown)
    if source_count == 0:
        if result.unknown:
            return scored("citations", 0.0, f"cites {result.unknown} but no source was provided")
        return skipped("citations", "no sources were provided")
    if total == 0:
        return scored("citations", 0.0, f"cites none of the {source_count} sources: cite them inline as [n]")
    if result.unknown:
        return scored(
            "citations",
            len(result.cited) / total,
            f"cites {result.unknown}, which point at no source (there are {source_count})",
        )
    return scored("citations", 1.0, f"cites {result.cited} of {source_count} sources")


def check_expected(item: GenerationItem, answer: str) -> Check:
    expected = item.expected
    if expected.count() == 0:
        return skipped("expected", "no expected elements")
    uses = " ".join(m.group(1) for m in _USE.finditer(cairo_code(answer) or answer))
    missing: list[str] = []
    for kind, values in (
        ("API item", expected.api),
        ("attribute", expected.attributes),
        ("Scarb key", expected.scarb_keys),
    ):
        missing += [f"{kind} {value}" for value in values if value not in answer]
    missing += [f"import {value}" for value in expected.imports if not _imported(value, uses)]
    found = expected.count() - len(missing)
    if missing:
        return scored("expected", found / expected.count(), "missing: " + ", ".join(missing))
    return scored("expected", 1.0, f"all {expected.count()} expected elements present")


def _imported(path: str, uses: str) -> bool:
    """``path`` is in a ``use`` line, braces flattened (``use a::{b, c}`` imports ``a::b`` and ``a::c``)."""
    if path in uses:
        return True
    flat = re.sub(r"\s+", "", uses)
    for prefix, inner in re.findall(r"([\w:]+)::\{([^{}]*)\}", flat):
        if any(
            f"{prefix}::{name}".startswith(path) or path.startswith(f"{prefix}::{name}") for name in inner.split(",")
        ):
            return True
    return False


def check_declines(item: GenerationItem, answer: str, source_count: int) -> Check:
    if code_blocks(answer):
        return scored("declines", 0.0, "an off-topic question got code instead of a polite refusal")
    if _DECLINE.search(answer):
        return scored("declines", 1.0, "declined the off-topic question")
    return scored("declines", 0.0, "answered an off-topic question instead of saying it only helps with Cairo")


def deterministic_checks(item: GenerationItem, answer: str, source_count: int) -> list[Check]:
    """The checks that need neither a compiler nor a model."""
    if item.off_topic:
        return [check_declines(item, answer, source_count), check_legacy(item, answer)]
    return [
        check_code_block(item, answer),
        check_legacy(item, answer),
        check_citations_of(answer, source_count),
        check_expected(item, answer),
    ]


def answer_score(checks: list[Check]) -> float:
    """The mean score of the checks that ran (0 when none ran)."""
    ran = [c.score for c in checks if c.score is not None]
    return round(sum(ran) / len(ran), 4) if ran else 0.0


def feedback(checks: list[Check]) -> str:
    """What went wrong and right, one line per check (for GEPA and for people)."""
    return "\n".join(f"{c.name}: {c.status}: {c.detail}" for c in checks)
