"""Knowledge-base commands: config show, ingest, search, db status (eval retrieval: cli/evaluating.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cairo_coder.cli.common import (
    SOURCES_HELP,
    ModeOption,
    _open_store,
    _parse_sources,
    _run,
    _settings,
    app,
    config_app,
    db_app,
    err,
    out,
)
from cairo_coder.config import Settings, masked

if TYPE_CHECKING:
    pass

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
      cairo-coder ingest cairo_book corelib_docs --json
    """
    settings = _settings()
    chosen = _parse_sources(settings, sources)
    reports = _run(lambda: _ingest(settings, chosen, from_dir, reindex, json_output))
    if json_output:
        out.print_json(data=[_report_json(r) for r in reports])
    else:
        _print_summary(reports)
    if any(r.skipped_reason for r in reports) and not any(r.pages for r in reports):
        raise typer.Exit(1)


async def _ingest(
    settings: Settings,
    chosen: list[str] | None,
    from_dir: Path | None,
    reindex: bool,
    quiet: bool,
    *,
    only_if_empty: bool = False,
) -> list[Any]:
    """Ingest under the database-wide ingestion lock (one ingestion at a time across processes and machines).
    ``only_if_empty``: the first ingestion of ``serve``; nothing is done when another process filled the store
    while this one waited for the lock."""
    from cairo_coder.errors import SourceUnavailableError
    from cairo_coder.ingest.loader import Ingester, SourceReport

    reports: list[SourceReport] = []
    async with (
        await _open_store(settings, for_writing=True) as store,
        store.ingestion_lock(
            lambda: err.print("Another ingestion is running on this database: waiting for it to finish.")
        ),
    ):
        if only_if_empty and await store.count_documents():
            err.print("Another process ingested the documentation meanwhile: nothing to do.")
            return reports
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
                    skipped = SourceReport(source, skipped_reason=str(exc))
                    reports.append(skipped)
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
    sources = _parse_sources(settings, source)

    async def run() -> list[Any]:
        async with await _open_store(settings) as store:
            return list(
                await store.search(
                    query,
                    k or settings.search.k,
                    sources,
                    chosen_mode,
                    min_similarity,
                )
            )

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


# ------------------------------------------------------------------------------------------------ db


@db_app.command("status")
def db_status(json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Server, schema version, embedder and chunks per source.

    Example: cairo-coder db status --json
    """
    settings = _settings()

    async def run() -> dict[str, Any]:
        async with await _open_store(settings) as store:
            status: dict[str, Any] = await store.status()
            return status

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
    if status["reindex_note"]:
        out.print(f"note:            {status['reindex_note']}", highlight=False)
    table = Table()
    for column in ("source", "pages", "chunks", "commit", "indexed at"):
        table.add_column(column)
    for name, info in status["sources"].items():
        table.add_row(
            name, str(info["pages"]), str(info["chunks"]), (info["commit"] or "-")[:12], info["indexed_at"] or "-"
        )
    out.print(table)
