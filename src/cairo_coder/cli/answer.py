"""Answering commands: ask (streamed answer with sources, or MCP-mode documentation) and agents."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cairo_coder.cli.common import AGENTS_HELP, _fail, _open_store, _run, _settings, app, err, out
from cairo_coder.config import Settings


def _factory(settings: Settings, store: Any) -> Any:
    from cairo_coder.agents import AgentFactory

    return AgentFactory(settings, store, store.embedder)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your Cairo or Starknet question.")],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            "-a",
            help=f"Agent id: {AGENTS_HELP} (default: pipeline.default_agent).",
            show_default=False,
        ),
    ] = None,
    mcp: Annotated[
        bool,
        typer.Option("--mcp", help="Return the relevant documentation instead of an answer (needs no language model)."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object: answer, sources, usage.")] = False,
) -> None:
    """Answer a question from the documentation, streaming the answer, then list the sources it cites.

    Needs a language model (e.g. CAIRO_CODER_MODEL=openai/gpt-4o-mini and OPENAI_API_KEY) unless --mcp. Examples:

      cairo-coder ask "How do I emit an event from a Starknet contract?"
      cairo-coder ask --mcp --agent scarb-assistant "Scarb.toml edition" --json
    """
    settings = _settings()
    agent_id = agent or settings.pipeline.default_agent
    from cairo_coder.agents import UnknownAgentError, agent_config

    try:
        agent_config(settings, agent_id)  # before starting the database: a typo fails at once
    except UnknownAgentError as exc:
        _fail(str(exc), 2)

    async def run_json() -> dict[str, Any]:
        async with await _open_store(settings) as store:
            result = await _factory(settings, store).create_agent_by_id(agent_id).run(question, mcp_mode=mcp)
        return {
            "answer": result.answer,
            "finish_reason": result.finish_reason,
            "sources": [{"title": s.title, "url": s.url, "source": s.source, "path": s.path} for s in result.sources],
            "usage": {
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
                "total_tokens": result.usage.total_tokens,
            },
        }

    from cairo_coder.events import Accumulator, Processing
    from cairo_coder.events import Text as TextEvent

    seen = Accumulator()

    async def run_stream() -> None:
        async with await _open_store(settings) as store:
            pipeline = _factory(settings, store).create_agent_by_id(agent_id)
            async for event in pipeline.stream(question, mcp_mode=mcp):
                seen.add(event)
                if isinstance(event, Processing):
                    err.print(f"[dim]{event.message}…[/]", highlight=False)
                elif isinstance(event, TextEvent):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()

    if json_output:
        out.print_json(data=_run(run_json))
        return
    _run(run_stream)
    if seen.error is not None:
        _fail(str(seen.error), seen.error.exit_code)
    sys.stdout.write("\n")
    sources = seen.sources
    if seen.finish_reason == "length":
        err.print("[yellow]The answer is incomplete: it reached the token limit (llm.max_tokens).[/]", highlight=False)
    cited = set(seen.citations)
    if sources:
        out.print("\n[bold]Sources[/]", highlight=False)
        for s in sources:
            # In an answer, the sources it does not cite are dimmed; MCP-mode documentation shows them all.
            uncited = not mcp and s.number not in cited
            line = Text(f"  [{s.number}] {s.title} ", style="dim" if uncited else "")  # no markup: titles
            line.append(f"({s.source}){' (not cited)' if uncited else ''}\n      {s.url}", style="dim")
            out.print(line, highlight=False)
    unknown = seen.unknown_citations
    if unknown:
        numbers = ", ".join(f"[{n}]" for n in unknown)
        err.print(
            f"[yellow]note:[/] the answer cites {numbers}, which is not among the {len(sources)} sources",
            highlight=False,
        )


@app.command()
def agents(json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the agents with their sources and the model each stage uses.

    Example: cairo-coder agents --json
    """
    from cairo_coder.llm import LLMRouter

    settings = _settings()
    router = LLMRouter(settings.llm)
    rows: list[dict[str, Any]] = []
    for agent_id in sorted(settings.agents):
        agent = settings.agents[agent_id]
        rows.append(
            {
                "id": agent_id,
                "name": agent.name,
                "description": agent.description,
                "sources": list(agent.sources),
                "default": agent_id == settings.pipeline.default_agent,
                "models": router.describe(agent),
                "optimized": _optimized(settings.pipeline.optimized_dir, agent),
            }
        )
    if json_output:
        out.print_json(data=rows)
        return
    table = Table("id", "name", "sources", "generation model", "optimized", box=None, header_style="bold")
    for row in rows:
        marker = " (default)" if row["default"] else ""
        optimized = ", ".join(
            f"{name} ({o['optimizer']}, {o['score_before']:.3f}->{o['score_after']:.3f})"
            if o.get("score_after") is not None
            else name
            for name, o in row["optimized"].items()
        )
        table.add_row(
            row["id"] + marker,
            row["name"],
            ", ".join(row["sources"]),
            row["models"]["generation"] or "[dim]not configured[/]",
            optimized or "[dim]built-in[/]",
        )
    out.print(table)


def _optimized(directory: str, agent: Any) -> dict[str, dict[str, Any]]:
    """The agent's optimized programs found in ``directory``, with their recorded optimizer and scores."""
    from cairo_coder.programs.loading import OptimizedProgramError, optimized_path, program_names, read_metadata

    found: dict[str, dict[str, Any]] = {}
    for name in program_names(agent.program).values():
        path = optimized_path(directory, name, agent.id)
        if path is None:
            continue
        try:
            meta = read_metadata(path) or {}
        except OptimizedProgramError as exc:
            found[name] = {"path": str(path), "error": str(exc)}
            continue
        scores = meta.get("scores", {})
        found[name] = {
            "path": str(path),
            "optimizer": meta.get("optimizer"),
            "score_before": scores.get("before"),
            "score_after": scores.get("after"),
            "date": meta.get("date"),
        }
    return found
