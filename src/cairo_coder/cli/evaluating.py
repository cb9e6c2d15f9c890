"""Evaluation commands: ``eval retrieval`` (recall and MRR on a labelled dataset, per-item comparison)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cairo_coder.cli.common import (
    AGENTS_HELP,
    ModeOption,
    _fail,
    _open_store,
    _run,
    _settings,
    eval_app,
    out,
)
from cairo_coder.config import Settings

if TYPE_CHECKING:
    from cairo_coder.evaluation import Comparison


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="JSONL file of labelled questions.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Distinct pages kept per item in the report.")] = 10,
    mode: ModeOption = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            "-a",
            help=f"Measure this agent's own retrieval ({AGENTS_HELP}): query "
            "processing on its configured model, then its retriever (and judge). Needs a model.",
            show_default=False,
        ),
    ] = None,
    compare_with: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            help="An earlier --json report: per-item rank changes (wins, losses, unchanged) and a sign test.",
            show_default=False,
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.", show_default=False)
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recall@1/3/5/10 and MRR@10 of retrieval on a dataset, by origin, source and language, with the misses.

    Without --agent the raw question is searched (what MCP mode does without a model). Examples:

      cairo-coder eval retrieval -d retrieval_dev.jsonl --json > before.json
      cairo-coder eval retrieval -d retrieval_dev.jsonl --compare before.json
      CAIRO_CODER_MODEL=openai/gpt-4o-mini cairo-coder eval retrieval -d retrieval_dev.jsonl --agent cairo-coder
    """
    from cairo_coder.datasets import DatasetError
    from cairo_coder.evaluation import CHUNKS_PER_QUERY, compare, evaluate, load_dataset, load_report

    settings = _settings()
    chosen_mode = mode.value if mode else settings.search.mode
    if agent is not None and agent not in settings.agents:
        _fail(f"unknown agent {agent!r}; known agents: {', '.join(sorted(settings.agents))}", 2)
    earlier = None
    if compare_with is not None:
        try:
            earlier = load_report(compare_with)
        except DatasetError as exc:
            _fail(str(exc), 2)

    async def run() -> Any:
        items = load_dataset(dataset)
        async with await _open_store(settings) as store:
            if agent is None:

                async def search_fn(query: str) -> Any:
                    return await store.search(query, CHUNKS_PER_QUERY, None, chosen_mode)
            else:
                search_fn = _agent_retrieval(settings, store, agent, mode.value if mode else "")
            return await evaluate(items, search_fn, k)

    report = _run(run)
    comparison = compare(report, earlier) if earlier is not None else None
    if html is not None:
        from cairo_coder.reports import retrieval_html

        data = {**report.to_json(), "meta": {"dataset": str(dataset), "retrieval": what_of(agent, chosen_mode)}}
        html.write_text(retrieval_html(data, comparison.to_json() if comparison else None), encoding="utf-8")
    if json_output:
        data = report.to_json()
        if comparison is not None:
            data["comparison"] = comparison.to_json()
        out.print_json(data=data)
        return
    table = Table(title=f"Retrieval ({what_of(agent, chosen_mode)}) on {dataset.name}")
    for column in ("group", "n", "recall@1", "recall@3", "recall@5", "recall@10", "MRR@10"):
        table.add_column(column, justify="left" if column == "group" else "right")
    rows: list[tuple[str, dict[str, float]]] = [("all", {"n": len(report.results), **report.metrics()})]
    rows += [(f"origin={o}", m) for o, m in report.by_origin().items()]
    rows += [(f"source={s}", m) for s, m in report.by_source().items()]
    rows += [(f"language={lang}", m) for lang, m in report.by_language().items()]
    for name, m in rows:
        table.add_row(
            name,
            str(int(m["n"])),
            *(f"{m[c]:.3f}" for c in ("recall@1", "recall@3", "recall@5", "recall@10", "MRR@10")),
        )
    out.print(table)
    if comparison is not None:
        _print_comparison(comparison)
    missed = report.missed(5)
    if missed:
        out.print(f"[bold]Missed at 5 ({len(missed)}):[/]")
        for r in missed:
            query = " ".join(r.item.query.split())[:90]
            wanted = ", ".join(f"{p.source}/{p.path}" for p in r.item.relevant)
            got = ", ".join(f"{p.source}/{p.path}" for p in r.ranked[:3])
            out.print(
                f"  {r.item.id} (rank {r.rank or '-'}) {query}\n    wanted: {wanted}\n    got: {got}",
                highlight=False,
                markup=False,
            )


def what_of(agent: str | None, mode: str) -> str:
    return f"agent {agent}" if agent else mode


def _agent_retrieval(settings: Settings, store: Any, agent_id: str, mode: str) -> Any:
    """The agent's own retrieval stage as a search function (query processing needs its model: checked first).

    ``mode``: the --mode given, or "" for the agent's own (the configured search.mode)."""
    from cairo_coder.agents import AgentFactory
    from cairo_coder.llm import NOT_CONFIGURED_HINT
    from cairo_coder.llm_errors import LLMNotConfiguredError

    factory = AgentFactory(settings, store, store.embedder)
    pipeline = factory.create_agent_by_id(agent_id)
    if mode:
        pipeline.search = pipeline.search.model_copy(update={"mode": mode})
    if not factory.router.is_configured(pipeline.agent, "query_processing"):
        raise LLMNotConfiguredError(
            f"eval retrieval --agent {agent_id} runs the agent's query processing, which "
            f"needs a language model: {NOT_CONFIGURED_HINT}. Without one, leave out "
            "--agent to measure the search of the raw question."
        )

    async def search_fn(query: str) -> Any:
        _, documents = await pipeline.retrieve(query)
        return documents

    return search_fn


def _print_comparison(comparison: Comparison) -> None:
    before, after = comparison.metrics_before, comparison.metrics_after
    out.print(
        f"[bold]Against the earlier report[/] ({len(comparison.wins)} wins, {len(comparison.losses)} losses, "
        f"{comparison.unchanged} unchanged; sign test p = {comparison.p_value})",
        highlight=False,
    )
    out.print("  " + "  ".join(f"{name} {before[name]:.3f} -> {after[name]:.3f}" for name in after), highlight=False)
    for label, changes in (("wins", comparison.wins), ("losses", comparison.losses)):
        if changes:
            out.print(
                f"  {label}: " + ", ".join(f"{c.id} {c.before or '-'}->{c.after or '-'}" for c in changes),
                highlight=False,
                soft_wrap=True,
            )
    if comparison.only_before or comparison.only_after:
        out.print(
            f"  items in one report only: {len(comparison.only_before)} earlier, {len(comparison.only_after)} "
            "now (left out of the comparison)",
            highlight=False,
        )


@eval_app.command("generation")
def eval_generation(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="JSONL file of generation items.")],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            "-a",
            help=f"Only the items of this agent ({AGENTS_HELP}); default: each item answered by its own agent.",
            show_default=False,
        ),
    ] = None,
    compare_with: Annotated[
        Path | None,
        typer.Option("--compare", help="An earlier --json report: items that got better or worse.", show_default=False),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.", show_default=False)
    ] = None,
    no_compile: Annotated[bool, typer.Option("--no-compile", help="Skip the Scarb compile check.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Only the first N items (0: all).")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object (the report).")] = False,
) -> None:
    """Answer each item with its agent and score the answer: code block, no removed syntax, valid [n]
    citations, expected API items / attributes / imports / Scarb keys, a Scarb build (skipped without scarb)
    and, with evaluation.judge_model, an LLM judge. Needs a language model. Examples:

      cairo-coder eval generation -d datasets/generation/v1.jsonl --json > before.json
      cairo-coder eval generation -d datasets/generation/v1.jsonl --compare before.json --html report.html
    """
    from cairo_coder.datasets import DatasetError, GenerationItem, file_hash, load_items
    from cairo_coder.evaluation import load_report
    from cairo_coder.generation_eval import compare_generation, evaluate_generation
    from cairo_coder.reports import generation_html

    settings = _settings()
    if agent is not None and agent not in settings.agents:
        _fail(f"unknown agent {agent!r}; known agents: {', '.join(sorted(settings.agents))}", 2)
    try:
        earlier = load_report(compare_with, "generation") if compare_with is not None else None
        items = load_items(dataset, GenerationItem)
    except DatasetError as exc:
        _fail(str(exc), 2)
    unknown = sorted({i.agent for i in items} - set(settings.agents))
    if unknown:
        _fail(f"{dataset}: items name unknown agents {unknown}; known: {', '.join(sorted(settings.agents))}", 2)
    if agent is not None:
        items = [i for i in items if i.agent == agent]
    if limit:
        items = items[:limit]
    if not items:
        _fail(f"{dataset}: no items for agent {agent!r}", 2)

    async def run() -> Any:
        from cairo_coder.judging import judge_from_settings

        async with await _open_store(settings) as store:
            answer_fn, models = _agent_answers(settings, store, {i.agent for i in items})
            report = await evaluate_generation(
                items,
                answer_fn,
                compile_settings=None if no_compile else _compile_settings(settings),
                judge=judge_from_settings(settings),
                concurrency=settings.evaluation.concurrency,
                meta={
                    "dataset": str(dataset),
                    "dataset_sha256": file_hash(dataset),
                    "agents": sorted({i.agent for i in items}),
                    "models": models,
                    "judge": settings.evaluation.judge_model or None,
                },
                progress=None if json_output else _progress(len(items)),
            )
            return report

    report = _run(run)
    data = report.to_json()
    comparison = compare_generation(report, earlier).to_json() if earlier is not None else None
    if comparison is not None:
        data["comparison"] = comparison
    if html is not None:
        html.write_text(generation_html(data, comparison), encoding="utf-8")
    if json_output:
        out.print_json(data=data)
        return
    _print_generation(data, comparison)
    if html is not None:
        out.print(f"HTML report: {html}", highlight=False)


def _compile_settings(settings: Settings) -> Any:
    from cairo_coder.compile_check import CompileSettings

    e = settings.evaluation
    return CompileSettings(
        scarb=e.scarb,
        edition=e.cairo_edition,
        starknet_version=e.starknet_version,
        openzeppelin_version=e.openzeppelin_version,
        snforge_version=e.snforge_version,
        timeout=e.compile_timeout,
    )


def _agent_answers(settings: Settings, store: Any, agent_ids: set[str]) -> tuple[Any, dict[str, Any]]:
    """An answer function over the agents' pipelines (each needs its model: checked first), and their models."""
    from cairo_coder.agents import AgentFactory
    from cairo_coder.generation_eval import Answered
    from cairo_coder.llm import NOT_CONFIGURED_HINT
    from cairo_coder.llm_errors import LLMNotConfiguredError
    from cairo_coder.types import Message, Role

    factory = AgentFactory(settings, store, store.embedder)
    for agent_id in sorted(agent_ids):
        if not factory.router.is_configured(factory.get_config(agent_id)):
            raise LLMNotConfiguredError(
                f"eval generation answers with agent {agent_id}, which needs a language model: {NOT_CONFIGURED_HINT}"
            )
    models = {a: factory.router.describe(factory.get_config(a)) for a in sorted(agent_ids)}

    async def answer(item: Any) -> Answered:
        pipeline = factory.create_agent_by_id(item.agent)
        history = [Message(role=Role(t.role), content=t.content) for t in item.history]
        result = await pipeline.run(item.query, history)
        sources = [s.model_dump(mode="json") for s in result.sources]
        return Answered(result.answer, sources, result.usage.total_tokens)

    return answer, models


def _progress(total: int) -> Any:
    done = [0]

    def step(result: Any) -> None:
        done[0] += 1
        mark = "error" if result.error else f"{result.score:.2f}"
        out.print(f"[{done[0]}/{total}] {result.item.id} {mark}", highlight=False)

    return step


def _print_generation(data: dict[str, Any], comparison: dict[str, Any] | None) -> None:
    summary = data["summary"]
    out.print(
        f"[bold]{summary['n']} items, score {summary['score']:.3f}[/] ({summary['errors']} pipeline errors)",
        highlight=False,
    )
    checks = Table(title="Checks")
    for column in ("check", "ran", "passed", "skipped", "mean"):
        checks.add_column(column, justify="left" if column == "check" else "right")
    for name, v in summary["checks"].items():
        checks.add_row(name, str(v["ran"]), str(v["passed"]), str(v["skipped"]), f"{v['mean']:.3f}")
    out.print(checks)
    sources = Table(title="By source")
    for column in ("source", "n", "score"):
        sources.add_column(column, justify="left" if column == "source" else "right")
    for name, v in summary["by_source"].items():
        sources.add_row(name, str(v["n"]), f"{v['score']:.3f}")
    out.print(sources)
    failed = [i for i in data["items"] if i["score"] < 1.0]
    for item in failed[:20]:
        why = "; ".join(f"{c['name']}: {c['detail']}" for c in item["checks"] if c["status"] == "failed")
        out.print(f"  {item['id']} {item['score']:.2f} {why}", highlight=False, markup=False, soft_wrap=True)
    if comparison is not None:
        out.print(
            f"[bold]Against the earlier report[/]: {len(comparison['better'])} better, {len(comparison['worse'])} "
            f"worse, {comparison['unchanged']} unchanged; score {comparison['score_before']:.3f} -> "
            f"{comparison['score_after']:.3f} (sign test p = {comparison['sign_test_p']})",
            highlight=False,
        )
