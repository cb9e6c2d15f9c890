"""Shared pieces of the CLI: the typer app, consoles, settings loading and error handling."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from cairo_coder.config import Settings, load_settings_with_origin
from cairo_coder.errors import ConfigError, InvalidRequestError
from cairo_coder.logs import setup_logging
from cairo_coder.types import DocumentSource

T = TypeVar("T")
app = typer.Typer(
    name="cairo-coder",
    help="Cairo and Starknet answers grounded in the official documentation.\n\n"
    "Runs on an embedded PostgreSQL by default (no setup); set DATABASE_URL to use your own server.\n\n"
    "Exit codes: 0 success, 1 failure (database, model, source unavailable...), 2 usage or configuration error.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Inspect the document store.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure retrieval and answers on labelled datasets.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(eval_app, name="eval")

# Piped output (CI logs, files) gets a wide console: the default 80 columns truncated source names in tables.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
_state: dict[str, Any] = {"config": None}


class Mode(StrEnum):
    """Search modes (``search.mode``): the choices of every ``--mode``."""

    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


SOURCES_HELP = ", ".join(s.value for s in DocumentSource) + ", or a sources.<id> table of your configuration"
AGENTS_HELP = (
    "cairo-coder, starknet-agent, scarb-assistant, or an agents.<id> table of your configuration (`cairo-coder agents`)"
)
ModeOption = Annotated[
    Mode | None,
    typer.Option("--mode", "-m", help="Search mode (default: search.mode).", show_default=False),
]


def _version(value: bool) -> None:
    if value:
        from cairo_coder import __version__

        out.print(f"cairo-coder {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML configuration file (default: ./cairo-coder.toml, or CAIRO_CODER_CONFIG).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens (to stderr).")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    _state["config"] = config
    _state["verbose"] = verbose
    setup_logging("INFO" if verbose else "WARNING")  # until the settings are read (then their log.format)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # messages quote [tables]
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        loaded = load_settings_with_origin(_state["config"])
    except ConfigError as exc:
        _fail(str(exc), 2)
    log = loaded.settings.log
    level = (log.level if log.level == "DEBUG" else "INFO") if _state.get("verbose") else "WARNING"
    setup_logging(level, log.format, secrets=loaded.settings.secrets())
    for notice in loaded.notices:
        err.print(f"[yellow]{notice}[/]", highlight=False, soft_wrap=True)
    return loaded.settings


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning the errors users can fix into one clear message (no traceback) and the exit code
    of their class (errors.py: 2 for usage and configuration, 1 otherwise). Language-model and database-driver
    failures are mapped the same way as on the server; anything else is a bug and keeps its traceback.
    """
    from cairo_coder.errors import CairoCoderError, as_error

    try:
        return asyncio.run(factory())
    except CairoCoderError as exc:
        _fail(str(exc), exc.exit_code)
    except Exception as exc:
        mapped = as_error(exc, log=False)
        if mapped.kind != "internal_error":
            _fail(str(mapped), mapped.exit_code)
        raise
    except KeyboardInterrupt:
        _fail("interrupted; re-run the same command to resume", 130)


async def _open_store(settings: Settings, *, for_writing: bool = False) -> Any:
    from cairo_coder.embeddings import create_embedder
    from cairo_coder.store import DocumentStore

    embedder = create_embedder(settings.embeddings, settings.llm)
    return await DocumentStore.open(settings.database, embedder, settings.search, for_writing=for_writing)


def _parse_sources(settings: Settings, values: list[str] | None) -> list[str] | None:
    """The chosen sources (None: all); an id the registry does not declare is a usage error listing the known."""
    if not values:
        return None
    try:
        return settings.check_sources(values)
    except InvalidRequestError as exc:
        _fail(str(exc), exc.exit_code)
