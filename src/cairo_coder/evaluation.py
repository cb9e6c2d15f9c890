"""Retrieval evaluation on a labelled dataset (format and metrics of ../shared/eval/README.md).

Chunks are mapped to pages (source, path), collapsed to distinct pages in first-occurrence order; recall@k is
the share of items with a relevant page in the top k pages, MRR@10 the mean reciprocal rank of the first one.
Reports break the figures down by origin, by the relevant pages' source and by the question's language
(detected offline), and compare item by item with an earlier report (:func:`compare`), because a change in
the mean of a few dozen items says little until one sees which items moved.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cairo_coder.datasets import DatasetError, RetrievalItem, load_items
from cairo_coder.language import detect_language
from cairo_coder.types import SearchResult

KS = (1, 3, 5, 10)
CHUNKS_PER_QUERY = 60


EvalItem = RetrievalItem  # the retrieval format's item, under its historical name here


def load_dataset(path: Path) -> list[RetrievalItem]:
    """The retrieval items of ``path`` (every bad record reported by line, see datasets.py)."""
    return load_items(path, RetrievalItem)


@dataclass
class RankedPage:
    source: str
    path: str
    url: str
    score: float


@dataclass
class ItemResult:
    item: EvalItem
    ranked: list[RankedPage]
    rank: int | None  # 1-based rank of the first relevant page in the top 10, None if absent

    @cached_property
    def language(self) -> str:
        return detect_language(self.item.query)


@dataclass
class EvalReport:
    results: list[ItemResult] = field(default_factory=list)

    def recall(self, k: int, subset: list[ItemResult] | None = None) -> float:
        rows = self.results if subset is None else subset
        return sum(1 for r in rows if r.rank is not None and r.rank <= k) / len(rows) if rows else 0.0

    def mrr(self, subset: list[ItemResult] | None = None) -> float:
        rows = self.results if subset is None else subset
        return sum(1.0 / r.rank for r in rows if r.rank) / len(rows) if rows else 0.0

    def metrics(self, subset: list[ItemResult] | None = None) -> dict[str, float]:
        out = {f"recall@{k}": round(self.recall(k, subset), 4) for k in KS}
        out["MRR@10"] = round(self.mrr(subset), 4)
        return out

    def by_origin(self) -> dict[str, dict[str, float]]:
        groups: dict[str, list[ItemResult]] = defaultdict(list)
        for r in self.results:
            groups[r.item.origin].append(r)
        return {origin: {"n": len(rows), **self.metrics(rows)} for origin, rows in sorted(groups.items())}

    def by_language(self) -> dict[str, dict[str, float]]:
        groups: dict[str, list[ItemResult]] = defaultdict(list)
        for r in self.results:
            groups[r.language].append(r)
        return {language: {"n": len(rows), **self.metrics(rows)} for language, rows in sorted(groups.items())}

    def by_source(self) -> dict[str, dict[str, float]]:
        groups: dict[str, list[ItemResult]] = defaultdict(list)
        for r in self.results:
            for source in sorted({ref.source for ref in r.item.relevant}):
                groups[source].append(r)
        return {source: {"n": len(rows), **self.metrics(rows)} for source, rows in sorted(groups.items())}

    def missed(self, k: int = 10) -> list[ItemResult]:
        return [r for r in self.results if r.rank is None or r.rank > k]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": len(self.results),
            **self.metrics(),
            "by_origin": self.by_origin(),
            "by_source": self.by_source(),
            "by_language": self.by_language(),
            "items": [
                {
                    "id": r.item.id,
                    "query": r.item.query,
                    "rank": r.rank,
                    "origin": r.item.origin,
                    "language": r.language,
                    "ranked": [{"source": p.source, "path": p.path, "url": p.url, "score": p.score} for p in r.ranked],
                }
                for r in self.results
            ],
        }


def distinct_pages(results: list[SearchResult], limit: int = 10) -> list[RankedPage]:
    pages: list[RankedPage] = []
    seen: set[tuple[str, str]] = set()
    for result in results:
        meta = result.document.metadata
        key = (meta.source, meta.path)
        if key in seen:
            continue
        seen.add(key)
        pages.append(RankedPage(meta.source, meta.path, meta.url.split("#", 1)[0], result.score))
        if len(pages) >= limit:
            break
    return pages


SearchFn = Callable[[str], Awaitable[list[SearchResult]]]


async def evaluate(items: list[EvalItem], search: SearchFn, k: int = 10) -> EvalReport:
    report = EvalReport()
    for item in items:
        ranked = distinct_pages(await search(item.query), limit=max(k, 10))
        relevant = {(ref.source, ref.path) for ref in item.relevant}
        rank = next((i for i, page in enumerate(ranked[:10], start=1) if (page.source, page.path) in relevant), None)
        report.results.append(ItemResult(item, ranked[: max(k, 10)], rank))
    return report


@dataclass
class ItemChange:
    id: str
    before: int | None  # rank of the first relevant page in the top 10 (None: not found)
    after: int | None


@dataclass
class Comparison:
    """Per-item rank changes of a report against an earlier one (items present in both)."""

    wins: list[ItemChange]
    losses: list[ItemChange]
    unchanged: int
    only_before: list[str]
    only_after: list[str]
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        def rows(changes: list[ItemChange]) -> list[dict[str, Any]]:
            return [{"id": c.id, "before": c.before, "after": c.after} for c in changes]

        return {
            "wins": rows(self.wins),
            "losses": rows(self.losses),
            "unchanged": self.unchanged,
            "only_before": self.only_before,
            "only_after": self.only_after,
            "metrics_before": self.metrics_before,
            "metrics_after": self.metrics_after,
            "sign_test_p": self.p_value,
        }

    @property
    def p_value(self) -> float:
        """The sign test of wins against losses, rounded for reports."""
        return round(sign_test(len(self.wins), len(self.losses)), 4)


def _key(rank: int | None) -> int:
    return rank if rank is not None else 11


def compare(report: EvalReport, earlier: dict[str, Any]) -> Comparison:
    """Item-by-item comparison with an earlier ``--json`` report: a win is a relevant page ranked higher.

    The earlier report's own metrics are recomputed over the items both reports share, so that the two sets of
    figures are comparable even when the dataset changed in between.
    """
    try:
        before = {str(item["id"]): item.get("rank") for item in earlier["items"]}
    except (KeyError, TypeError) as exc:
        raise DatasetError(
            "the report to compare with is not a `cairo-coder eval retrieval --json` report "
            f"(no items with id and rank: {exc})"
        ) from exc
    after = {r.item.id: r.rank for r in report.results}
    wins, losses, unchanged = [], [], 0
    for item_id, rank in after.items():
        if item_id not in before:
            continue
        old = before[item_id]
        if _key(rank) < _key(old):
            wins.append(ItemChange(item_id, old, rank))
        elif _key(rank) > _key(old):
            losses.append(ItemChange(item_id, old, rank))
        else:
            unchanged += 1
    shared = [r for r in report.results if r.item.id in before]
    earlier_report = EvalReport([ItemResult(r.item, [], before[r.item.id]) for r in shared])
    return Comparison(
        wins,
        losses,
        unchanged,
        sorted(set(before) - set(after)),
        sorted(set(after) - set(before)),
        earlier_report.metrics(),
        EvalReport(shared).metrics(),
    )


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign-test p-value of ``wins`` against ``losses`` (ties left out): how likely a split at least
    this uneven is when a change helps and hurts items equally often. The noise yardstick for small sets."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def load_report(path: Path, kind: str = "retrieval") -> dict[str, Any]:
    """An earlier ``cairo-coder eval KIND --json`` report (retrieval reports carry no ``kind``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read report {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise DatasetError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind", "retrieval") != kind or "items" not in data:
        raise DatasetError(f"{path} is not a `cairo-coder eval {kind} --json` report")
    return data
