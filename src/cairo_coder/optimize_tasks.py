"""The optimization tasks of `cairo-coder optimize`: examples from a dataset, the student program with its
models, the metric, and where each optimized part is saved (the names ``build_programs`` loads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy

from cairo_coder.compile_check import CompileSettings
from cairo_coder.config import Settings
from cairo_coder.datasets import GenerationItem, QueryProcessingItem, load_items
from cairo_coder.llm import LLMRouter
from cairo_coder.optimizing import (
    LoopThread,
    OptimizeError,
    Pipeline,
    QueryProcessing,
    Task,
    generation_metric,
    history_text,
    query_processing_metric,
)
from cairo_coder.programs.generation import format_context
from cairo_coder.programs.loading import program_names
from cairo_coder.programs.query_processor import raw_processed_query
from cairo_coder.types import AgentConfiguration


def output_paths(program: str, agent: AgentConfiguration, optimized_dir: str, out: Path | None) -> dict[str, Path]:
    """Saved program name -> file. A program goes to ``out`` (a file); the pipeline's two to ``out`` (a
    directory); without ``out``, to ``<pipeline.optimized_dir>/<agent>/<name>.json``."""
    names = program_names(agent.program)
    wanted = [names["query_processor"], names["generation"]] if program == "pipeline" else [names[program]]
    if out is not None:
        if program == "pipeline":
            return {name: out / f"{name}.json" for name in wanted}
        return {wanted[0]: out}
    if not optimized_dir:
        raise OptimizeError("give --out, or set pipeline.optimized_dir (where the agents load optimized programs)")
    root = Path(optimized_dir).expanduser() / agent.id
    return {name: root / f"{name}.json" for name in wanted}


def _items(path: Path, model: Any, agent: AgentConfiguration, what: str) -> list[Any]:
    items = [i for i in load_items(path, model) if i.agent == agent.id]
    if not items:
        raise OptimizeError(f"{path} has no {what} items for agent {agent.id!r}")
    return items


def build_task(
    program: str,
    agent: AgentConfiguration,
    settings: Settings,
    parts: Any,
    router: LLMRouter,
    bridge: LoopThread,
    trainset: Path,
    valset: Path,
    compile_settings: CompileSettings | None,
) -> tuple[Task, dict[str, Any]]:
    """The task of ``program`` and the LMs of its stages (set on its predictors)."""
    allowed = list(agent.sources)
    search = agent.search_config(settings.search.mode)
    limit = settings.pipeline.max_history
    names = program_names(agent.program)

    def retrieve(processed: Any) -> list[Any]:
        return list(bridge.run(parts.retriever.acall(processed=processed, config=search)).documents)

    if program == "query_processor":
        qp_lm = router.lm("query_processing", agent)
        train = _items(trainset, QueryProcessingItem, agent, "query-processing")
        val = _items(valset, QueryProcessingItem, agent, "query-processing")
        parts.query_processor.predict.lm = qp_lm
        student = QueryProcessing(parts.query_processor, allowed)
        examples = [
            [
                dspy.Example(query=i.query, chat_history=history_text(i.history, limit), item_id=i.id).with_inputs(
                    "query", "chat_history"
                )
                for i in rows
            ]
            for rows in (train, val)
        ]
        metric = query_processing_metric({i.id: i for i in train + val}, retrieve)
        task = Task(
            program, student, examples[0], examples[1], metric, 1, {names[program]: lambda m: m.query_processor}
        )
        return task, {"query_processing": qp_lm}
    train = _items(trainset, GenerationItem, agent, "generation")
    val = _items(valset, GenerationItem, agent, "generation")
    metric = generation_metric({i.id: i for i in train + val}, compile_settings)
    gen_lm = router.lm("generation", agent)
    parts.generation.generate.predict.lm = gen_lm
    if program == "generation":

        def example(item: GenerationItem) -> dspy.Example:
            # The context the agent would give: retrieval of the question as asked (no model needed).
            processed = raw_processed_query(item.query, allowed)
            documents = retrieve(processed)
            kinds = {"contract": processed.is_contract_related, "test": processed.is_test_related}
            templates = [text for kind, text in parts.templates.items() if kinds.get(kind) and text]
            return dspy.Example(
                query=item.query,
                chat_history=history_text(item.history, limit),
                context=format_context(documents, templates),
                item_id=item.id,
                source_count=len(documents),
            ).with_inputs("query", "context", "chat_history")

        task = Task(
            program,
            parts.generation,
            [example(i) for i in train],
            [example(i) for i in val],
            metric,
            1,
            {names["generation"]: lambda m: m},
        )
        return task, {"generation": gen_lm}
    if program != "pipeline":
        raise OptimizeError(f"unknown program {program!r}: query_processor, generation or pipeline")
    qp_lm = router.lm("query_processing", agent)
    parts.query_processor.predict.lm = qp_lm
    student = Pipeline(
        {"query_processor": parts.query_processor, "generation": parts.generation, "templates": parts.templates},
        allowed,
        retrieve,
    )
    examples = [
        [
            dspy.Example(query=i.query, chat_history=history_text(i.history, limit), item_id=i.id).with_inputs(
                "query", "chat_history"
            )
            for i in rows
        ]
        for rows in (train, val)
    ]
    task = Task(
        program,
        student,
        examples[0],
        examples[1],
        metric,
        2,
        {names["query_processor"]: lambda m: m.query_processor, names["generation"]: lambda m: m.generation},
    )
    return task, {"query_processing": qp_lm, "generation": gen_lm}
