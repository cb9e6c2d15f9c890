"""Knowledge-base commands: config show, ingest, search, eval retrieval, db status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cairo_coder.cli.common import (
    AGENTS_HELP,
    SOURCES_HELP,
    ModeOption,
    _fail,
    _open_store,
    _parse_sources,
    _run,
    _settings,
    app,
    config_app,
    db_app,
    err,
    eval_app,
    out,
)
from cairo_coder.config import Settings, masked
from cairo_coder.types import DocumentSource

if TYPE_CHECKING:
    from cairo_coder.evaluation import Comparison

# ------------------------------------------------------------------------------------------------ config


@config_app.command("show")
def config_show(json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the effective configuration (defaults < TOML file < environment), secrets masked.

    Example: CAIRO_CODER_SEARCH__MODE=lexical cairo-coder config show --json
    """
    settings = _settings()
    data = masked(settings)
    if json_output:
        out.print_json(data=data)
        return
    out.print(_to_toml(data), highlight=False, markup=False, soft_wrap=True)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        return '""'
    return json.dumps(str(value))


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """The configuration as TOML (the same layout cairo-coder.toml uses)."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) or _inline(k, prefix)]
    parts = ["\n".join(scalars)] if scalars else []
    for key, value in data.items():
        if isinstance(value, dict) and not _inline(key, prefix):
            name = f"{prefix}.{key}" if prefix else key
            body = _to_toml(value, name)
            parts.append(f"[{name}]\n{body}" if any(not isinstance(v, dict) for v in value.values()) else body)
    return "\n\n".join(p for p in parts if p)


def _inline(key: str, prefix: str) -> bool:
    return prefix.startswith("sources.") and key in ("include_roots", "variables")


# ------------------------------------------------------------------------------------------------ ingest


@app.command()
def ingest(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help=f"Sources to ingest (default: all with documents): {SOURCES_HELP}.", show_default=False),
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Local tree laid out like the shared corpus "
            "(<DIR>/<source_id>/...). Default: CAIRO_CODER_CORPUS, else clone the repositories.",
            show_default=False,
        ),
    ] = None,
    reindex: Annotated[
        bool, typer.Option("--reindex", help="Drop the whole index first (needed after changing the embedding model).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ingest documentation into the store: incremental, idempotent and resumable.

    Only pages whose content changed are re-embedded and rewritten; pages that disappeared are removed. Examples:

      CAIRO_CODER_CORPUS=../shared/corpus cairo-coder ingest
      cairo-coder ingest --source cairo_book --source corelib_docs --json
    """
    settings = _settings()
    chosen = _parse_sources(sources)
    reports = _run(lambda: _ingest(settings, chosen, from_dir, reindex, json_output))
    if json_output:
        out.print_json(data=[_report_json(r) for r in reports])
    else:
        _print_summary(reports)
    if any(r.skipped_reason for r in reports) and not any(r.pages for r in reports):
        raise typer.Exit(1)


async def _ingest(
    settings: Settings, chosen: list[DocumentSource] | None, from_dir: Path | None, reindex: bool, quiet: bool
) -> list[Any]:
    from cairo_coder.ingest.loader import Ingester, SourceReport, SourceUnavailableError

    store = await _open_store(settings, for_writing=True)
    reports: list[SourceReport] = []
    try:
        if reindex:
            await store.reset()
        explicit = chosen is not None
        targets = chosen or list(settings.sources)
        with Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=quiet,
        ) as progress:
            tasks: dict[str, Any] = {}

            def on_progress(source: str, done: int, total: int) -> None:
                if source not in tasks:
                    tasks[source] = progress.add_task(source, total=total)
                progress.update(tasks[source], completed=done, total=total)

            ingester = Ingester(settings, store, on_progress)
            for source in targets:
                try:
                    reports.append(await ingester.ingest_source(source, from_dir))
                except SourceUnavailableError as exc:
                    if explicit:
                        raise
                    skipped = SourceReport(source.value, skipped_reason=str(exc))
                    reports.append(skipped)
    finally:
        await store.close()
    return reports


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "source": report.source,
        "pages": report.pages,
        "chunks": report.chunks,
        "new": report.new,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "deleted": report.deleted,
        "embedded_chunks": report.embedded_chunks,
        "seconds": round(report.seconds, 2),
        "commit": report.commit,
        "failed": [{"path": f.path, "reason": f.reason} for f in report.failed],
        "warnings": report.warnings,
        "skipped": report.skipped_reason,
    }


def _print_summary(reports: list[Any]) -> None:
    table = Table(title="Ingestion summary")
    for column in ("source", "pages", "chunks", "new", "updated", "deleted", "unchanged", "failed", "seconds"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for r in reports:
        if r.skipped_reason:
            continue
        table.add_row(
            r.source,
            str(r.pages),
            str(r.chunks),
            str(r.new),
            str(r.updated),
            str(r.deleted),
            str(r.unchanged),
            str(len(r.failed)),
            f"{r.seconds:.1f}",
        )
    total = [r for r in reports if not r.skipped_reason]
    table.add_row(
        "total",
        *(
            str(sum(getattr(r, f) for r in total))
            for f in ("pages", "chunks", "new", "updated", "deleted", "unchanged")
        ),
        str(sum(len(r.failed) for r in total)),
        f"{sum(r.seconds for r in total):.1f}",
        style="bold",
    )
    out.print(table)
    for r in reports:
        for failure in r.failed:
            err.print(f"[yellow]skipped[/] {r.source}/{failure.reason}", highlight=False, soft_wrap=True)
        for warning in r.warnings:
            err.print(f"[yellow]warning[/] {r.source}/{warning}", highlight=False, soft_wrap=True)
        if r.skipped_reason:
            err.print(f"[yellow]not ingested[/] {r.skipped_reason}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------ search


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in words or code.")],
    source: Annotated[
        list[str] | None,
        typer.Option("--source", "-s", help=f"Only this source (repeatable): {SOURCES_HELP}.", show_default=False),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("-k", min=1, max=200, help="Number of results (default: search.k).", show_default=False),
    ] = None,
    mode: ModeOption = None,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            "--min-similarity",
            help="Drop results whose cosine similarity is lower (needs embeddings).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON list of results.")] = False,
) -> None:
    """Search the documentation and print the best chunks with their source, title, URL and score. Examples:

    cairo-coder search "felt252 to u256 conversion"
    cairo-coder search "cheatcode caller address" --source starknet_foundry -k 3 --mode lexical --json
    """
    settings = _settings()
    chosen_mode = mode.value if mode else settings.search.mode
    sources = _parse_sources(source)

    async def run() -> list[Any]:
        store = await _open_store(settings)
        try:
            return list(
                await store.search(
                    query,
                    k or settings.search.k,
                    [s.value for s in sources] if sources else None,
                    chosen_mode,
                    min_similarity,
                )
            )
        finally:
            await store.close()

    results = _run(run)
    if json_output:
        out.print_json(
            data=[
                {
                    "source": r.document.metadata.source,
                    "path": r.document.metadata.path,
                    "title": r.document.metadata.title,
                    "url": r.document.metadata.url,
                    "score": r.score,
                    "content": r.document.content,
                }
                for r in results
            ]
        )
        return
    if not results:
        err.print("no results (is the store empty? run `cairo-coder ingest`)")
        return
    for number, r in enumerate(results, start=1):
        meta = r.document.metadata
        trail = " > ".join([meta.title, *meta.section]) if meta.section else meta.title
        out.print(f"[bold]{number}. {trail}[/]  [dim]{meta.source} · score {r.score:.4f}[/]", highlight=False)
        out.print(f"   [link={meta.url}]{meta.url}[/link]", highlight=False)
        snippet = " ".join(r.document.content.split())[:300]
        out.print(f"   {snippet}", highlight=False, markup=False)
        out.print()


# ------------------------------------------------------------------------------------------------ eval


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
        store = await _open_store(settings)
        try:
            if agent is None:

                async def search_fn(query: str) -> Any:
                    return await store.search(query, CHUNKS_PER_QUERY, None, chosen_mode)
            else:
                search_fn = _agent_retrieval(settings, store, agent, mode.value if mode else "")
            return await evaluate(items, search_fn, k)
        finally:
            await store.close()

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
    from cairo_coder.llm import NOT_CONFIGURED_HINT, LLMNotConfiguredError

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


# ------------------------------------------------------------------------------------------------ db


@db_app.command("status")
def db_status(json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Server, schema version, embedder and chunks per source.

    Example: cairo-coder db status --json
    """
    settings = _settings()

    async def run() -> dict[str, Any]:
        store = await _open_store(settings)
        try:
            status: dict[str, Any] = await store.status()
            return status
        finally:
            await store.close()

    status = _run(run)
    if json_output:
        out.print_json(data=status)
        return
    out.print(f"server:          {status['server']} ({status['database']}: {status['location']})", highlight=False)
    out.print(f"schema version:  {status['schema_version']}")
    emb = status["embedder"]
    out.print(
        f"embedder:        {emb['id']} ({emb['dimensions']} dimensions)"
        if emb
        else "embedder:        none bound yet (nothing indexed)",
        highlight=False,
    )
    table = Table()
    for column in ("source", "pages", "chunks", "commit", "indexed at"):
        table.add_column(column)
    for name, info in status["sources"].items():
        table.add_row(
            name, str(info["pages"]), str(info["chunks"]), (info["commit"] or "-")[:12], info["indexed_at"] or "-"
        )
    out.print(table)
