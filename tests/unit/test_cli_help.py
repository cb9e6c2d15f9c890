"""The command line explains itself: examples in every command's help, fixed choices listed and checked (exit
code 2, the valid values named), ``--version``, exit codes documented."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cairo_coder import __version__
from cairo_coder.cli import app
from cairo_coder.types import DocumentSource

runner = CliRunner()
COMMANDS = [
    ["ask"],
    ["agents"],
    ["ingest"],
    ["search"],
    ["serve"],
    ["mcp"],
    ["config", "show"],
    ["db", "status"],
    ["eval", "retrieval"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "cairo-coder " in result.output.split("Example", 1)[1]


def test_choices_are_listed_in_help_and_checked() -> None:
    search = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).output
    assert "hybrid|dense|lexical" in search
    assert all(source.value in search for source in DocumentSource)
    assert "scarb-assistant" in runner.invoke(app, ["ask", "--help"], env={"COLUMNS": "200"}).output
    bad = runner.invoke(app, ["search", "storage", "--mode", "foo"])
    assert bad.exit_code == 2 and "'foo' is not one of" in bad.output


def test_version_and_exit_codes() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"cairo-coder {__version__}"
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "Exit codes: 0 success, 1 failure" in top and "2 usage or configuration error" in top
