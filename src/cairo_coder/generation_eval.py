"""Answer evaluation on a generation dataset: each item answered by an agent, checked (answer_checks.py),
compiled (compile_check.py) and optionally judged by a model, then summed up per check and per source, and
compared item by item with an earlier report.

The answering is injected (``AnswerFn``): the CLI passes an agent's pipeline, the optimizer a DSPy program.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cairo_coder.answer_checks import Check, answer_score, deterministic_checks, feedback
from cairo_coder.compile_check import CompileSettings, compile_answer
from cairo_coder.datasets import GenerationItem
from cairo_coder.errors import as_error
from cairo_coder.evaluation import sign_test


@dataclass
class Answered:
    """What an agent answered: the text, its numbered sources (title/url/source dicts) and its token usage."""

    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    total_tokens: int = 0


AnswerFn = Callable[[GenerationItem], Awaitable[Answered]]
JudgeFn = Callable[[GenerationItem, str], Awaitable[Check]]


@dataclass
class GenerationResult:
    item: GenerationItem
    answer: str
    checks: list[Check]
    score: float
    sources: list[dict[str, Any]] = field(default_factory=list)
    compile: dict[str, Any] | None = None
    error: str | None = None  # the pipeline failed (kind: message); the item scores 0
    seconds: float = 0.0
    total_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.item.id,
            "agent": self.item.agent,
            "query": self.item.query,
            "sources": self.item.sources,
            "score": self.score,
            "checks": [c.as_dict() for c in self.checks],
            "compile": self.compile,
            "error": self.error,
            "answer": self.answer,
            "answer_sources": self.sources,
            "seconds": round(self.seconds, 3),
            "total_tokens": self.total_tokens,
        }


@dataclass
class GenerationReport:
    results: list[GenerationResult]
    meta: dict[str, Any] = field(default_factory=dict)  # agent, dataset, hash, models, date

    def score(self, rows: Sequence[GenerationResult] | None = None) -> float:
        rows = self.results if rows is None else rows
        return round(sum(r.score for r in rows) / len(rows), 4) if rows else 0.0

    def by_check(self) -> dict[str, dict[str, float]]:
        """Per check: how many items it ran on, passed, skipped, and its mean score where it ran."""
        table: dict[str, dict[str, float]] = {}
        names = sorted({c.name for r in self.results for c in r.checks})
        for name in names:
            checks = [c for r in self.results for c in r.checks if c.name == name]
            ran = [c for c in checks if c.score is not None]
            table[name] = {
                "ran": len(ran),
                "passed": sum(1 for c in ran if c.status == "passed"),
                "skipped": len(checks) - len(ran),
                "mean": round(sum(c.score or 0.0 for c in ran) / len(ran), 4) if ran else 0.0,
            }
        return table

    def by_source(self) -> dict[str, dict[str, float]]:
        groups: dict[str, list[GenerationResult]] = defaultdict(list)
        for r in self.results:
            for source in r.item.sources or ["(off-topic)"]:
                groups[source].append(r)
        return {s: {"n": len(rows), "score": self.score(rows)} for s, rows in sorted(groups.items())}

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.results),
            "score": self.score(),
            "errors": sum(1 for r in self.results if r.error),
            "checks": self.by_check(),
            "by_source": self.by_source(),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "generation",
            "meta": self.meta,
            "summary": self.summary(),
            "items": [r.to_json() for r in self.results],
        }


@dataclass(frozen=True)
class ScoreChange:
    id: str
    before: float
    after: float


@dataclass
class GenerationComparison:
    better: list[ScoreChange]
    worse: list[ScoreChange]
    unchanged: int
    score_before: float
    score_after: float
    p_value: float

    def to_json(self) -> dict[str, Any]:
        return {
            "better": [c.__dict__ for c in self.better],
            "worse": [c.__dict__ for c in self.worse],
            "unchanged": self.unchanged,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "sign_test_p": self.p_value,
        }


def compare_generation(report: GenerationReport, earlier: dict[str, Any]) -> GenerationComparison:
    """Item by item against an earlier ``--json`` report (items in both only): which scores rose or fell."""
    before = {item["id"]: float(item["score"]) for item in earlier.get("items", [])}
    shared = [r for r in report.results if r.item.id in before]
    better = [ScoreChange(r.item.id, before[r.item.id], r.score) for r in shared if r.score > before[r.item.id] + 1e-9]
    worse = [ScoreChange(r.item.id, before[r.item.id], r.score) for r in shared if r.score < before[r.item.id] - 1e-9]
    mean_before = round(sum(before[r.item.id] for r in shared) / len(shared), 4) if shared else 0.0
    return GenerationComparison(
        better=sorted(better, key=lambda c: c.before - c.after),
        worse=sorted(worse, key=lambda c: c.after - c.before),
        unchanged=len(shared) - len(better) - len(worse),
        score_before=mean_before,
        score_after=report.score(shared),
        p_value=sign_test(len(better), len(worse)),
    )


async def evaluate_item(
    item: GenerationItem,
    answer_fn: AnswerFn,
    compile_settings: CompileSettings | None,
    judge: JudgeFn | None = None,
) -> GenerationResult:
    """One item: answered, checked, compiled (unless ``compile_settings`` is None) and judged."""
    started = time.perf_counter()
    try:
        answered = await answer_fn(item)
    except Exception as exc:
        error = as_error(exc)
        check = Check("answered", "failed", 0.0, f"{error.kind}: {error}")
        return GenerationResult(
            item, "", [check], 0.0, error=f"{error.kind}: {error}", seconds=time.perf_counter() - started
        )
    checks = deterministic_checks(item, answered.answer, len(answered.sources))
    compiled = None
    if compile_settings is not None and item.code_expected and not item.off_topic:
        result = await compile_answer(answered.answer, compile_settings)
        compiled = result.as_dict()
        checks.append(result.check())
    if judge is not None:
        checks.append(await judge(item, answered.answer))
    return GenerationResult(
        item,
        answered.answer,
        checks,
        answer_score(checks),
        sources=answered.sources,
        compile=compiled,
        seconds=time.perf_counter() - started,
        total_tokens=answered.total_tokens,
    )


async def evaluate_generation(
    items: Sequence[GenerationItem],
    answer_fn: AnswerFn,
    *,
    compile_settings: CompileSettings | None,
    judge: JudgeFn | None = None,
    concurrency: int = 4,
    meta: dict[str, Any] | None = None,
    progress: Callable[[GenerationResult], None] | None = None,
) -> GenerationReport:
    """Every item, ``concurrency`` at a time; results in the dataset's order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: GenerationItem) -> GenerationResult:
        async with gate:
            result = await evaluate_item(item, answer_fn, compile_settings, judge)
        if progress is not None:
            progress(result)
        return result

    results = await asyncio.gather(*(one(item) for item in items))
    info = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **(meta or {})}
    return GenerationReport(list(results), info)


__all__ = [
    "Answered",
    "GenerationComparison",
    "GenerationReport",
    "GenerationResult",
    "compare_generation",
    "evaluate_generation",
    "evaluate_item",
    "feedback",
]
