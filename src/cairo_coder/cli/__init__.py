"""The cairo-coder command line: ingest and search documentation, ask questions, list agents, inspect the store.

Commands are registered on one typer app by the modules imported below.
"""

from cairo_coder.cli import answer, evaluating, knowledge, optimizing, serving  # noqa: F401  (registers the commands)
from cairo_coder.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
