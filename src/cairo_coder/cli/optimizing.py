"""``cairo-coder optimize``: a DSPy optimizer on one program of one agent, within a call budget, saved with
its metadata where the agents load it from."""

from __future__ import annotations

import enum
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cairo_coder.cli.common import _fail, _settings, app, err, out
from cairo_coder.config import Settings


class Program(enum.StrEnum):
    query_processor = "query_processor"
    generation = "generation"
    pipeline = "pipeline"


class Optimizer(enum.StrEnum):
    bootstrap_rs = "bootstrap-rs"
    mipro = "mipro"
    gepa = "gepa"


@app.command("optimize")
def optimize(
    program: Annotated[Program, typer.Argument(help="query_processor, generation, or pipeline (both, end to end).")],
    trainset: Annotated[Path, typer.Option("--trainset", help="JSONL dataset to learn from.")],
    valset: Annotated[Path, typer.Option("--valset", help="JSONL dataset to score on (before and after).")],
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="The agent (default: the default agent).")] = None,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer", help="The DSPy optimizer.")] = Optimizer.bootstrap_rs,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to save (a file; a directory for pipeline). Default: pipeline.optimized_dir/<agent>/.",
            show_default=False,
        ),
    ] = None,
    max_calls: Annotated[
        int, typer.Option("--max-calls", min=1, help="Ceiling of LM calls; the run stops there.")
    ] = 300,
    candidates: Annotated[int, typer.Option("--candidates", min=1, max=50, help="Candidate programs / trials.")] = 4,
    max_metric_calls: Annotated[int, typer.Option("--max-metric-calls", min=1, help="GEPA's rollout budget.")] = 30,
    threads: Annotated[int, typer.Option("--threads", min=1, max=32, help="Examples run at once.")] = 2,
    no_compile: Annotated[bool, typer.Option("--no-compile", help="No Scarb compile check in the metric.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking (after the estimate).")] = False,
) -> None:
    """Optimize a program with BootstrapFewShotWithRandomSearch, MIPROv2 or GEPA; print the validation score
    before and after; save DSPy JSON plus metadata that `cairo-coder serve` loads. LM calls are cached next to
    the output: re-running the same command after an interruption does not pay for them again. Examples:

      cairo-coder optimize query_processor --trainset datasets/query_processing/v1.jsonl \\
          --valset my_val.jsonl --optimizer mipro --max-calls 400
      cairo-coder optimize generation --agent scarb-assistant --optimizer gepa \\
          --trainset datasets/generation/v1.jsonl --valset val.jsonl --out scarb_generation.json --yes
    """
    from cairo_coder.errors import CairoCoderError

    settings = _settings()
    agent_id = agent or settings.pipeline.default_agent
    if agent_id not in settings.agents:
        _fail(f"unknown agent {agent_id!r}; known agents: {', '.join(sorted(settings.agents))}", 2)
    try:
        _optimize(settings, program.value, agent_id, optimizer.value, trainset, valset, out_path, yes, locals())
    except CairoCoderError as exc:
        _fail(str(exc), exc.exit_code)


def _optimize(
    settings: Settings,
    program: str,
    agent_id: str,
    optimizer: str,
    trainset: Path,
    valset: Path,
    out_path: Path | None,
    yes: bool,
    options: dict[str, Any],
) -> None:
    import dspy

    from cairo_coder import __version__
    from cairo_coder.agents import build_programs
    from cairo_coder.cli.evaluating import _compile_settings
    from cairo_coder.datasets import file_hash
    from cairo_coder.embeddings import create_embedder
    from cairo_coder.llm import LLMRouter
    from cairo_coder.optimize_tasks import build_task, output_paths
    from cairo_coder.optimizing import (
        CallBudgetExceeded,
        CallCounter,
        LoopThread,
        compile_task,
        estimate_calls,
        evaluate,
        make_optimizer,
    )
    from cairo_coder.programs.loading import save_optimized
    from cairo_coder.store import DocumentStore

    agent = settings.agents[agent_id]
    router = LLMRouter(settings.llm.model_copy(update={"cache": True}))  # cached: a re-run pays nothing twice
    paths = output_paths(program, agent, settings.pipeline.optimized_dir, out_path)
    cache_dir = (
        out_path if program == "pipeline" and out_path else next(iter(paths.values())).parent
    ) / ".optimize-cache"
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache_dir))
    bridge = LoopThread()
    store: Any = None
    try:
        embedder = create_embedder(settings.embeddings, settings.llm)
        store = bridge.run(DocumentStore.open(settings.database, embedder, settings.search))
        parts = build_programs(agent, settings, store, embedder)
        compile_settings = None if options["no_compile"] else _compile_settings(settings)
        task, lms = build_task(program, agent, settings, parts, router, bridge, trainset, valset, compile_settings)
        main_lm = lms.get("generation") or lms["query_processing"]
        reflection = router.lm_for_model(main_lm.model, temperature=1.0)  # MIPROv2's proposer, GEPA's reflection
        estimate = estimate_calls(
            optimizer, task, candidates=options["candidates"], max_metric_calls=options["max_metric_calls"]
        )
        err.print(
            f"{optimizer} on {program} of {agent_id}: {len(task.trainset)} training and {len(task.valset)} validation "
            f"examples; about {estimate} LM calls (ceiling --max-calls {options['max_calls']}); models "
            + ", ".join(f"{stage}={lm.model}" for stage, lm in lms.items()),
            highlight=False,
        )
        if estimate > options["max_calls"]:
            err.print("[yellow]the estimate exceeds --max-calls: the run will stop at the ceiling[/]")
        if not yes and not typer.confirm("Start?", default=False, err=True):
            raise typer.Exit(1)

        def progress(count: int) -> None:
            if count % 10 == 0:
                err.print(f"  {count} LM calls", highlight=False)

        counter = CallCounter(options["max_calls"], progress)
        for lm in [*lms.values(), reflection]:
            counter.watch(lm)
        dspy.configure(lm=main_lm)
        threads = options["threads"]
        before = evaluate(task, task.student, threads)
        err.print(f"validation score before: {before:.4f}", highlight=False)
        started = datetime.now(UTC)
        chosen = make_optimizer(
            optimizer,
            task,
            candidates=options["candidates"],
            max_metric_calls=options["max_metric_calls"],
            reflection_lm=reflection,
            threads=threads,
            log_dir=str(cache_dir / f"{optimizer}-{program}-{agent_id}"),
        )
        optimized = compile_task(chosen, optimizer, task, candidates=options["candidates"])
        after = evaluate(task, optimized, threads)
    except CallBudgetExceeded as exc:
        _fail(f"stopped: {exc}. Calls made so far are cached in {cache_dir}: re-run with a higher --max-calls to go on")
    except KeyboardInterrupt:
        _fail(f"interrupted. Calls made so far are cached in {cache_dir}: re-run the same command to go on")
    finally:
        if store is not None:
            bridge.run(store.close())
        bridge.close()
    metadata = {
        "program": "",
        "agent": agent_id,
        "optimizer": optimizer,
        "trainset": {"path": str(trainset), "sha256": file_hash(trainset), "items": len(task.trainset)},
        "valset": {"path": str(valset), "sha256": file_hash(valset), "items": len(task.valset)},
        "scores": {"before": before, "after": after, "metric": f"{program} metric on the validation set"},
        "models": {stage: lm.model for stage, lm in lms.items()} | {"reflection": reflection.model},
        "lm_calls": counter.count,
        "date": started.isoformat(timespec="seconds"),
        "cairo_coder_version": __version__,
    }
    saved = []
    for name, path in paths.items():
        save_optimized(task.parts[name](optimized), path, {**metadata, "program": name})
        saved.append(str(path))
    out.print(
        f"validation score {before:.4f} -> {after:.4f} ({counter.count} LM calls); saved {', '.join(saved)}",
        highlight=False,
    )
    if not settings.pipeline.optimized_dir:
        out.print(
            "set pipeline.optimized_dir to the directory above the agent's folder to load it in the agents",
            highlight=False,
        )
    sys.stdout.flush()
