"""Optimized programs: DSPy's JSON state plus cairo-coder's metadata, saved by `cairo-coder optimize` and loaded
from ``pipeline.optimized_dir`` (``<dir>/<agent>/<name>.json``, else ``<dir>/<name>.json``).

The metadata (key ``cairo_coder``) records the program, agent, optimizer, dataset hashes, scores, models, date
and version, and each predictor's signature (input and output fields). A file made for another program or
another signature is refused with a message saying which, instead of loading demos and instructions that do
not fit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import dspy

from cairo_coder.errors import ConfigError

logger = logging.getLogger(__name__)
METADATA_KEY = "cairo_coder"


class OptimizedProgramError(ConfigError):
    """An optimized program file exists but cannot be loaded into the program (wrong program or corrupt)."""


def program_names(program: str) -> dict[str, str]:
    """The saved-file name of each program of an agent whose ``program`` is "cairo" or "scarb" (the Scarb
    signatures are other programs: their files are prefixed)."""
    prefix = "scarb_" if program == "scarb" else ""
    return {
        "query_processor": f"{prefix}query_processor",
        "generation": f"{prefix}generation",
        "retrieval_judge": "retrieval_judge",
    }


def optimized_path(directory: str | Path, name: str, agent_id: str | None = None) -> Path | None:
    """``<dir>/<agent_id>/<name>.json`` if present, else ``<dir>/<name>.json``, else None."""
    if not directory:
        return None
    root = Path(directory).expanduser()
    candidates = ([root / agent_id / f"{name}.json"] if agent_id else []) + [root / f"{name}.json"]
    return next((path for path in candidates if path.is_file()), None)


def signature_shape(program: dspy.Module) -> dict[str, dict[str, list[str]]]:
    """Each predictor's input and output field names, by predictor name."""
    return {
        name: {
            "inputs": list(predictor.signature.input_fields),
            "outputs": list(predictor.signature.output_fields),
        }
        for name, predictor in program.named_predictors()
    }


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The cairo-coder metadata of a saved program (None for a plain DSPy file)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptimizedProgramError(f"optimized program {path} is not readable JSON: {exc}") from exc
    meta = data.get(METADATA_KEY) if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else None


def check_fits(
    program: dspy.Module, name: str, path: Path, meta: dict[str, Any] | None, agent_id: str | None = None
) -> None:
    """Refuse a file made for another program, agent or signature (its metadata says which)."""
    if meta is None:
        return  # a plain DSPy state: DSPy itself checks the predictor names
    made_for_agent = meta.get("agent")
    if agent_id is not None and made_for_agent is not None and made_for_agent != agent_id:
        raise OptimizedProgramError(
            f"optimized program {path} was made for agent {made_for_agent!r}, not {agent_id!r}: put it under "
            f"<optimized_dir>/{made_for_agent}/, or optimize it for {agent_id} (cairo-coder optimize --agent)"
        )
    made_for = meta.get("program")
    if made_for != name:
        raise OptimizedProgramError(
            f"optimized program {path} was made for {made_for!r}, not {name!r}: move it to the file of that "
            "program, or optimize this one (cairo-coder optimize)"
        )
    recorded = meta.get("signature")
    current = signature_shape(program)
    if recorded is not None and recorded != current:
        raise OptimizedProgramError(
            f"optimized program {path} was made for the signature {recorded}, but {name} now has {current}: "
            "optimize it again for this version"
        )


def load_optimized(program: dspy.Module, directory: str | Path, name: str, agent_id: str | None = None) -> Path | None:
    """Load the optimized state of ``program`` when one is saved; returns the file used (None: built-in)."""
    path = optimized_path(directory, name, agent_id)
    if path is None:
        return None
    check_fits(program, name, path, read_metadata(path), agent_id)
    try:
        program.load(str(path))
    except Exception as exc:  # DSPy raises KeyError/ValueError/JSONDecodeError for foreign or broken files
        raise OptimizedProgramError(f"optimized program {path} cannot be loaded into {name}: {exc}") from exc
    logger.info("loaded optimized %s from %s", name, path)
    return path


def save_optimized(program: dspy.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Save ``program``'s state with ``metadata``; demos keep only their signature's fields, and no LM
    configuration is saved (the deployment's settings choose the models)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lms = {name: predictor.lm for name, predictor in program.named_predictors()}
    try:
        for _, predictor in program.named_predictors():
            predictor.lm = None
        state = program.dump_state()
    finally:
        for name, predictor in program.named_predictors():
            predictor.lm = lms[name]
    for name, predictor in program.named_predictors():
        fields = set(predictor.signature.fields)
        entry = state.get(name, {})
        entry["demos"] = [
            {k: v for k, v in demo.items() if k in fields or k == "augmented"} for demo in entry.get("demos", [])
        ]
    from dspy.primitives.base_module import get_dependency_versions

    state["metadata"] = {"dependency_versions": get_dependency_versions()}  # what dspy's own save writes
    state[METADATA_KEY] = {**metadata, "signature": signature_shape(program)}
    path.write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")
