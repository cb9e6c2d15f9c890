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
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recall@1/3/5/10 and MRR@10 of retrieval on a dataset, by origin, source and language, with the misses.

    Without --agent the raw question is searched (what MCP mode does without a model). Examples:

      cairo-coder eval retrieval -d retrieval_dev.jsonl --json > before.json
      cairo-coder eval retrieval -d retrieval_dev.jsonl --compare before.json
      CAIRO_CODER_MODEL=openai/gpt-4o-mini cairo-coder eval retrieval -d retrieval_dev.jsonl --agent cairo-coder
    """
    from cairo_coder.evaluation import CHUNKS_PER_QUERY, DatasetError, compare, evaluate, load_dataset, load_report

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
    if json_output:
        data = report.to_json()
        if comparison is not None:
            data["comparison"] = comparison.to_json()
        out.print_json(data=data)
        return
    what = f"agent {agent}" if agent else chosen_mode
    table = Table(title=f"Retrieval ({what}) on {dataset.name}")
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
