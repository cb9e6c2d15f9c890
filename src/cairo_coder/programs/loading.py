"""Loading DSPy-optimized programs (the JSON state ``program.save(path)`` writes) from a directory."""

from __future__ import annotations

import logging
from pathlib import Path

import dspy

from cairo_coder.errors import ConfigError

logger = logging.getLogger(__name__)


class OptimizedProgramError(ConfigError):
    """An optimized program file exists but cannot be loaded into the program (wrong program or corrupt)."""


def optimized_path(directory: str | Path, name: str, agent_id: str | None = None) -> Path | None:
    """``<dir>/<agent_id>/<name>.json`` if present, else ``<dir>/<name>.json``, else None."""
    if not directory:
        return None
    root = Path(directory).expanduser()
    candidates = ([root / agent_id / f"{name}.json"] if agent_id else []) + [root / f"{name}.json"]
    return next((path for path in candidates if path.is_file()), None)


def load_optimized(program: dspy.Module, directory: str | Path, name: str, agent_id: str | None = None) -> Path | None:
    """Load the optimized state of ``program`` when one is saved; returns the file used (None: built-in)."""
    path = optimized_path(directory, name, agent_id)
    if path is None:
        return None
    try:
        program.load(str(path))
    except Exception as exc:  # DSPy raises KeyError/ValueError/JSONDecodeError for foreign or broken files
        raise OptimizedProgramError(f"optimized program {path} cannot be loaded into {name}: {exc}") from exc
    logger.info("loaded optimized %s from %s", name, path)
    return path
