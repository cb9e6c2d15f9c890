"""The parts of `optimize` that need no server: the query-processing metric (hand-checked cases), the
generation metric's feedback, the LM-call counter and its ceiling, the estimate, the judge (DummyLM), and the
refusal of a saved program made for another program, agent or signature."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dspy
import pytest
from dspy.utils import DummyLM

from cairo_coder.datasets import GenerationItem, QueryProcessingItem
from cairo_coder.judging import make_judge
from cairo_coder.optimizing import (
    CallBudgetExceeded,
    CallCounter,
    Task,
    estimate_calls,
    generation_metric,
    query_processing_metric,
)
from cairo_coder.programs.generation import GenerationProgram
from cairo_coder.programs.loading import OptimizedProgramError, load_optimized, save_optimized
from cairo_coder.types import Document, DocumentMetadata, ProcessedQuery, SearchResult


def doc(source: str, path: str) -> SearchResult:
    meta = DocumentMetadata(source=source, path=path, title=path, url=f"https://x/{path}")
    return SearchResult(document=Document(content="text", metadata=meta), score=1.0, chunk_id=path)


def qp_item(**fields: Any) -> QueryProcessingItem:
    base = {
        "id": "qp-1",
        "query": "q",
        "sources": ["cairo_book", "starknet_foundry"],
        "relevant": [{"source": "cairo_book", "path": "storage.md"}],
    }
    return QueryProcessingItem.model_validate({**base, **fields})


def prediction(queries: list[str], resources: list[str]) -> Any:
    processed = ProcessedQuery(original="q", search_queries=queries, resources=resources)
    return SimpleNamespace(search_queries=queries, resources=resources, processed_query=processed)


def test_query_processing_metric() -> None:
    ranked = [doc("cairo_book", "other.md"), doc("cairo_book", "storage.md"), doc("starknet_foundry", "t.md")]
    metric = query_processing_metric(
        {"qp-1": qp_item(), "qp-2": qp_item(id="qp-2", sources=[], relevant=[])}, lambda processed: ranked
    )
    gold = dspy.Example(item_id="qp-1")
    both = metric(gold, prediction(["storage"], ["cairo_book", "starknet_foundry"]))
    assert both.score == round(0.4 * 1.0 + 0.6 * 0.5, 4)  # both sources; the page at rank 2
    one = metric(gold, prediction(["storage"], ["cairo_book"]))
    assert one.score == round(0.4 * 0.5 + 0.6 * 0.5, 4) and "missing ['starknet_foundry']" in one.feedback
    metric_nothing = query_processing_metric({"qp-1": qp_item()}, lambda processed: [doc("cairo_book", "x.md")])
    missed = metric_nothing(gold, prediction(["x"], ["cairo_book", "starknet_foundry"]))
    assert missed.score == 0.4 and "did not find ['storage.md']" in missed.feedback
    off = dspy.Example(item_id="qp-2")
    assert metric(off, prediction([], ["cairo_book"])).score == 1.0
    assert metric(off, prediction(["pasta"], ["cairo_book"])).score == 0.0


def test_generation_metric_gives_the_checks_words() -> None:
    item = GenerationItem(id="g", query="q", code_expected=True, expected={"api": ["Map"]})
    metric = generation_metric({"g": item}, None)
    good = metric(
        dspy.Example(item_id="g"),
        SimpleNamespace(answer="Use Map [1].\n```cairo\nlet m: Map<u8, u8>;\n```", source_count=1),
    )
    assert good.score == 1.0 and "expected: passed" in good.feedback
    bad = metric(dspy.Example(item_id="g"), SimpleNamespace(answer="No idea.", source_count=1))
    assert bad.score == 0.25, "only legacy_syntax passes (nothing removed is used)"
    assert "code_block: failed" in bad.feedback and "missing: API item Map" in bad.feedback


def test_call_counter_counts_provider_calls_and_stops_at_the_ceiling() -> None:
    seen: list[int] = []
    counter = CallCounter(2, seen.append)
    lm = SimpleNamespace(forward=lambda **_: SimpleNamespace(cache_hit=False), aforward=None)
    cached = SimpleNamespace(forward=lambda **_: SimpleNamespace(cache_hit=True), aforward=None)
    counter.watch(lm)
    counter.watch(cached)
    cached.forward()
    lm.forward()
    lm.forward()
    assert counter.count == 2 and seen == [1, 2], "a cache hit is free"
    with pytest.raises(CallBudgetExceeded, match="budget of 2 LM calls"):
        lm.forward()
    assert not isinstance(CallBudgetExceeded("x"), Exception), "passes through the optimizers' except Exception"


def test_estimates_grow_with_the_work() -> None:
    task = Task("generation", dspy.Module(), [dspy.Example()] * 4, [dspy.Example()] * 2, lambda *a: None, 1)
    small = estimate_calls("bootstrap-rs", task, candidates=2, max_metric_calls=10)
    assert small == 2 * 2 + (2 + 3) * 6
    assert estimate_calls("bootstrap-rs", task, candidates=8, max_metric_calls=10) > small
    assert estimate_calls("gepa", task, candidates=2, max_metric_calls=40) > estimate_calls(
        "gepa", task, candidates=2, max_metric_calls=10
    )
    assert estimate_calls("mipro", task, candidates=4, max_metric_calls=10) > 0


async def test_judge_scores_with_its_model_and_is_skipped_when_it_fails() -> None:
    item = GenerationItem(id="g", query="How do I store a map?", code_expected=True, expected={"api": ["Map"]})
    judge = make_judge(DummyLM([{"score": "0.8", "justification": "Right API, no test."}]))
    check = await judge(item, "Use Map.")
    assert (check.name, check.status, check.score, check.detail) == ("judge", "failed", 0.8, "Right API, no test.")
    broken = make_judge(DummyLM([{"justification": "no score"}]))
    failed = await broken(item, "Use Map.")
    assert failed.status == "skipped" and "the judge failed" in failed.detail


def test_saved_programs_are_refused_for_another_program_agent_or_signature(tmp_path: Path) -> None:
    program = GenerationProgram()
    path = tmp_path / "cairo-coder" / "generation.json"
    save_optimized(program, path, {"program": "generation", "agent": "cairo-coder", "optimizer": "gepa"})
    saved = json.loads(path.read_text())
    assert saved["metadata"]["dependency_versions"]["dspy"] and saved["cairo_coder"]["optimizer"] == "gepa"
    assert load_optimized(GenerationProgram(), tmp_path, "generation", "cairo-coder") == path
    (tmp_path / "generation.json").write_text(path.read_text())  # the shared file, read by every agent
    with pytest.raises(OptimizedProgramError, match="made for agent 'cairo-coder', not 'starknet-agent'"):
        load_optimized(GenerationProgram(), tmp_path, "generation", "starknet-agent")
    with pytest.raises(OptimizedProgramError, match="made for 'generation', not 'scarb_generation'"):
        (tmp_path / "cairo-coder" / "scarb_generation.json").write_text(path.read_text())
        load_optimized(GenerationProgram(), tmp_path, "scarb_generation", "cairo-coder")
    saved["cairo_coder"]["signature"]["generate.predict"]["outputs"] = ["answer"]
    path.write_text(json.dumps(saved))
    with pytest.raises(OptimizedProgramError, match="was made for the signature"):
        load_optimized(GenerationProgram(), tmp_path, "generation", "cairo-coder")
