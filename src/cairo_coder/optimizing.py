"""DSPy optimization of an agent's programs (`cairo-coder optimize`): what is optimized, on which examples, by
which metric, within which budget.

- ``query_processor`` on a query-processing dataset: the sources chosen (each needed one) and the rank of the
  first relevant page that the agent's retriever finds with the queries written (an off-topic question must
  get no queries);
- ``generation`` on a generation dataset, its context retrieved once per item from the raw question: the
  answer checks (answer_checks.py) and the compile check;
- ``pipeline``: both programs together, end to end (query processing, retrieval, generation) on a generation
  dataset.

DSPy runs programs synchronously, in threads; the store is asynchronous. A :class:`LoopThread` owns the store
and its event loop, and the programs' retrieval runs there. GEPA gets each check's words as its feedback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dspy

from cairo_coder.answer_checks import answer_score, deterministic_checks, feedback
from cairo_coder.compile_check import CompileSettings, compile_answer
from cairo_coder.datasets import GenerationItem, QueryProcessingItem
from cairo_coder.errors import InvalidRequestError
from cairo_coder.evaluation import distinct_pages
from cairo_coder.programs.generation import format_context
from cairo_coder.rendering import format_history
from cairo_coder.types import Message, Role

T = TypeVar("T")
PROGRAMS = ("query_processor", "generation", "pipeline")
OPTIMIZERS = ("bootstrap-rs", "mipro", "gepa")
BUDGET_HELP = "--max-calls"


class OptimizeError(InvalidRequestError):
    """An optimization that cannot run as asked (wrong dataset for the program, budget too small...)."""

    kind = "invalid_optimization"


class CallBudgetExceeded(BaseException):
    """The ``--max-calls`` ceiling was reached. A BaseException, like KeyboardInterrupt, so that the optimizers'
    error handling (which counts and skips ordinary exceptions) lets it through and the run stops."""


class LoopThread:
    """An event loop in a thread of its own, for the store's coroutines called from DSPy's threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="optimize-store", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class CallCounter:
    """Counts the LM calls that reach a provider (cache hits are free) and stops the run at ``limit``."""

    def __init__(self, limit: int, progress: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.count = 0
        self.progress = progress
        self._lock = threading.Lock()

    def watch(self, lm: Any) -> Any:
        """Wrap ``lm``'s calls (its instance's forward/aforward) with the count; returns ``lm``."""
        if getattr(lm, "_budget_counter", None) is self:
            return lm
        forward, aforward = lm.forward, lm.aforward

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._before()
            return self._after(forward(*args, **kwargs))

        async def acounted(*args: Any, **kwargs: Any) -> Any:
            self._before()
            return self._after(await aforward(*args, **kwargs))

        lm.forward, lm.aforward, lm._budget_counter = counted, acounted, self
        return lm

    def _before(self) -> None:
        with self._lock:
            if self.count >= self.limit:
                raise CallBudgetExceeded(f"the budget of {self.limit} LM calls ({BUDGET_HELP}) is spent")

    def _after(self, result: Any) -> Any:
        if not getattr(result, "cache_hit", False):
            with self._lock:
                self.count += 1
                count = self.count
            if self.progress is not None:
                self.progress(count)
        return result


@dataclass
class Task:
    """One optimization: the student, its examples and metric, and how its parts are saved."""

    program: str
    student: dspy.Module
    trainset: list[dspy.Example]
    valset: list[dspy.Example]
    metric: Callable[
        ..., Any
    ]  # (gold, pred, trace=None, pred_name=None, pred_trace=None) -> Prediction(score, feedback)
    calls_per_example: int
    # saved program name (e.g. "scarb_generation") -> the agent's program inside a (compiled) student
    parts: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    def score(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> float:
        return float(self.metric(gold, pred, trace).score)


def history_text(turns: Sequence[Any], limit: int) -> str:
    return format_history([Message(role=Role(t.role), content=t.content) for t in turns], limit)


class QueryProcessing(dspy.Module):
    """The agent's query processor with its allowed sources (the student of ``query_processor``)."""

    def __init__(self, query_processor: dspy.Module, allowed: list[str]) -> None:
        super().__init__()
        self.query_processor = query_processor
        self.allowed = allowed

    def forward(self, query: str, chat_history: str = "") -> Any:
        return self.query_processor(query=query, chat_history=chat_history, allowed=self.allowed)


class Pipeline(dspy.Module):
    """Query processing, retrieval (on the store's loop) and generation (the student of ``pipeline``)."""

    def __init__(self, parts: dict[str, Any], allowed: list[str], retrieve: Callable[[Any], list[Any]]) -> None:
        super().__init__()
        self.query_processor = parts["query_processor"]
        self.generation = parts["generation"]
        self.allowed = allowed
        self.templates: dict[str, str] = parts.get("templates", {})
        self.retrieve = retrieve

    def forward(self, query: str, chat_history: str = "") -> Any:
        processed = self.query_processor(query=query, chat_history=chat_history, allowed=self.allowed).processed_query
        documents = self.retrieve(processed)
        templates = [
            self.templates[k]
            for k, on in (("contract", processed.is_contract_related), ("test", processed.is_test_related))
            if on and self.templates.get(k)
        ]
        out = self.generation(query=query, context=format_context(documents, templates), chat_history=chat_history)
        return dspy.Prediction(answer=out.answer, source_count=len(documents), documents=documents)


def query_processing_metric(
    items: dict[str, QueryProcessingItem], retrieve: Callable[[Any], list[Any]]
) -> Callable[..., Any]:
    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        item = items[gold.item_id]
        if item.off_topic:
            ok = not pred.search_queries
            words = (
                "off-topic: no search, as it should" if ok else f"off-topic question but searched {pred.search_queries}"
            )
            return dspy.Prediction(score=1.0 if ok else 0.0, feedback=words)
        chosen = set(pred.resources)
        found = [s for s in item.sources if s in chosen]
        source_score = len(found) / len(item.sources) if item.sources else 1.0
        pages = distinct_pages(retrieve(pred.processed_query), 10)
        wanted = {(p.source, p.path) for p in item.relevant}
        rank = next((i for i, p in enumerate(pages, start=1) if (p.source, p.path) in wanted), None)
        page_score = 1.0 / rank if rank else 0.0
        lines = [
            f"sources: chose {sorted(chosen)}; needed {item.sources}"
            + ("" if source_score == 1.0 else f" (missing {sorted(set(item.sources) - chosen)})"),
            f"queries {pred.search_queries} found the answering page at rank {rank}"
            if rank
            else f"queries {pred.search_queries} did not find {sorted(p.path for p in item.relevant)} in the top 10",
        ]
        return dspy.Prediction(score=round(0.4 * source_score + 0.6 * page_score, 4), feedback="\n".join(lines))

    return metric


def generation_metric(items: dict[str, GenerationItem], compile_settings: CompileSettings | None) -> Callable[..., Any]:
    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        item = items[gold.item_id]
        answer = str(getattr(pred, "answer", "") or "")
        source_count = int(getattr(pred, "source_count", None) or gold.get("source_count", 0))
        checks = deterministic_checks(item, answer, source_count)
        if compile_settings is not None and item.code_expected and not item.off_topic:
            checks.append(asyncio.run(compile_answer(answer, compile_settings)).check())
        return dspy.Prediction(score=answer_score(checks), feedback=feedback(checks))

    return metric


def estimate_calls(optimizer: str, task: Task, *, candidates: int, max_metric_calls: int) -> int:
    """A ceiling of the LM calls the optimizer will make (shown before starting; ``--max-calls`` enforces it)."""
    train, val, per = len(task.trainset), len(task.valset), task.calls_per_example
    baseline_and_final = 2 * val * per
    if optimizer == "bootstrap-rs":
        return baseline_and_final + (candidates + 3) * (train + val) * per
    if optimizer == "mipro":
        proposals = candidates * 3 + 4  # dataset summary, program description, one instruction per candidate
        return baseline_and_final + candidates * train * per + proposals + (candidates * 2) * (val * per)
    return baseline_and_final + max_metric_calls * per + max_metric_calls // 3 + 5  # gepa: rollouts + reflections


def make_optimizer(
    name: str, task: Task, *, candidates: int, max_metric_calls: int, reflection_lm: Any, threads: int, log_dir: str
) -> Any:
    if name == "bootstrap-rs":
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=task.score,
            max_bootstrapped_demos=3,
            max_labeled_demos=0,
            num_candidate_programs=candidates,
            num_threads=threads,
            metric_threshold=0.75,
        )
    if name == "mipro":
        try:
            import optuna  # noqa: F401  (MIPROv2 searches instruction and demo combinations with it)
        except ImportError as exc:
            raise OptimizeError("MIPROv2 needs optuna: pip install 'cairo-coder[optimize]'") from exc
        return dspy.MIPROv2(
            metric=task.score,
            prompt_model=reflection_lm,
            auto=None,
            num_candidates=candidates,
            max_bootstrapped_demos=2,
            max_labeled_demos=0,
            num_threads=threads,
            log_dir=log_dir,
            verbose=False,
        )
    if name == "gepa":
        return dspy.GEPA(
            metric=task.metric,
            max_metric_calls=max_metric_calls,
            reflection_lm=reflection_lm,
            reflection_minibatch_size=min(3, max(1, len(task.trainset))),
            num_threads=threads,
            log_dir=log_dir,  # GEPA resumes from its state here after an interruption
            track_stats=True,
        )
    raise OptimizeError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def compile_task(optimizer: Any, name: str, task: Task, *, candidates: int) -> dspy.Module:
    if name == "mipro":
        return optimizer.compile(
            task.student,
            trainset=task.trainset,
            valset=task.valset,
            num_trials=max(2, candidates),
            minibatch=len(task.valset) > 3,
            minibatch_size=min(35, max(1, len(task.valset))),
            requires_permission_to_run=False,
        )
    return optimizer.compile(task.student, trainset=task.trainset, valset=task.valset)


def evaluate(task: Task, program: dspy.Module, threads: int) -> float:
    """The mean metric of ``program`` on the validation set, in [0, 1]."""
    result = dspy.Evaluate(devset=task.valset, metric=task.score, num_threads=threads, display_progress=False)(program)
    return round(float(result.score) / 100.0, 4)
