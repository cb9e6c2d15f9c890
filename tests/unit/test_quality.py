"""The checks pyproject.toml configures, run by the test suite so that CI (which runs exactly the README's test
command) enforces them: ruff lint, ruff format, and mypy in strict mode on src/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PATHS = ["src", "tests", "benchmarks"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", *PATHS], ["ruff", "format", "--check", *PATHS], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_code_passes_the_configured_checks(command: list[str]) -> None:
    result = run(*command)
    assert result.returncode == 0, f"`{' '.join(command)}` failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
