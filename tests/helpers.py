"""Helpers shared by test modules (imported as ``tests.helpers``, like ``tests.fake_openai``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

# The user's own settings must not leak into a test's CLI run.
PROJECT_VARIABLES = ("CAIRO_CODER_*",)


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    unset: Sequence[str] = PROJECT_VARIABLES,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cairo_coder ARGS`` as a user would, with its output captured as text.

    The command inherits this process's environment (so the offline switches tests/conftest.py sets,
    HF_HUB_OFFLINE and LITELLM_LOCAL_MODEL_COST_MAP, hold there too), without the variables whose names match
    a shell-style pattern of ``unset``, and with ``env`` (e.g. DATABASE_URL) on top."""
    full_env = {k: v for k, v in os.environ.items() if not any(fnmatchcase(k, pattern) for pattern in unset)}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cairo_coder", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,  # never waits for a terminal: a prompt gets end-of-file
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
