"""A source declared by the user in TOML (a local folder), end to end with no code change: ingested, searched,
filtered on, shown by `db status` and `agents`, and cited with working URLs by the MCP server (stdio, through the
official client). Configuration errors about it name the file key they came from."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers import run_cli

CONFIG = """
[embeddings]
provider = "none"  # lexical search only: this test is about the registry, not the embedder

[sources.team_docs]
name = "Team handbook"
path = "handbook"            # relative to this file
docs_root = "docs"
file_types = ["md"]
base_url = "https://docs.example.com/handbook"
url_style = "clean"
slug = "github"
exclude = ["drafts/**"]
description = "Our team's Cairo conventions: Zorbex widgets, review rules."

[agents.team]
name = "Team assistant"
description = "Answers from the handbook and the Cairo Book."
sources = ["team_docs", "cairo_book"]
"""

WIDGETS = """# Widgets

How widgets are built in our contracts.

## Zorbex widgets

A Zorbex widget keeps its counter in a `felt252` storage variable and emits `ZorbexTurned` on every turn.
Call `turn_zorbex` from the owner account only.
"""


def _project(tmp_path: Path) -> Path:
    docs = tmp_path / "handbook" / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "drafts").mkdir()
    (docs / "guide" / "widgets.md").write_text(WIDGETS)
    (docs / "review.md").write_text("# Review rules\n\nEvery Zorbex change needs two reviewers.\n")
    (docs / "drafts" / "secret.md").write_text("# Draft\n\nZorbex draft that must not be indexed.\n")
    config = tmp_path / "cairo-coder.toml"
    config.write_text(CONFIG)
    return config


async def test_a_local_folder_source_is_ingested_searched_listed_and_cited(db_url: str, tmp_path: Path) -> None:
    config = _project(tmp_path)
    env = {"DATABASE_URL": db_url}
    cli = ["--config", str(config)]

    ingested = run_cli(*cli, "ingest", "team_docs", "--json", env=env, cwd=Path("/"))
    assert ingested.returncode == 0, ingested.stderr
    (report,) = json.loads(ingested.stdout)
    assert report["source"] == "team_docs" and report["pages"] == 2, report  # the draft is excluded
    again = run_cli(*cli, "ingest", "team_docs", "--json", env=env)
    assert json.loads(again.stdout)[0]["new"] == 0, "re-ingesting an unchanged folder writes nothing"

    found = run_cli(*cli, "search", "Zorbex widget counter", "--source", "team_docs", "--json", env=env)
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert results and {r["source"] for r in results} == {"team_docs"}
    page_url = "https://docs.example.com/handbook/guide/widgets"
    assert results[0]["url"] == f"{page_url}#widgets", "the page URL by the source's rule, with its heading anchor"

    unknown = run_cli(*cli, "search", "Zorbex", "--source", "team_doc", env=env)
    assert unknown.returncode == 2 and "unknown source 'team_doc'" in unknown.stderr
    assert "team_docs" in unknown.stderr, "the error lists the known sources, the user's included"

    status = run_cli(*cli, "db", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["sources"]["team_docs"]["pages"] == 2

    agents = run_cli(*cli, "agents", "--json", env=env)
    team = next(a for a in json.loads(agents.stdout) if a["id"] == "team")
    assert team["sources"] == ["team_docs", "cairo_book"]

    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))}
    server_env.update(env)
    params = StdioServerParameters(command=sys.executable, args=["-m", "cairo_coder", *cli, "mcp"], env=server_env)
    async with Client(params, read_timeout_seconds=120) as client:
        result = await client.call_tool("search_cairo_docs", {"query": "Zorbex widget", "sources": ["team_docs"]})
        text = result.content[0].text  # type: ignore[union-attr]
        assert not result.is_error, text
        assert text.startswith("## [1] Widgets")
        assert f"Source: team_docs — {page_url}#widgets" in text and "turn_zorbex" in text
        page = await client.call_tool("get_cairo_doc_page", {"url": f"{page_url}#zorbex-widgets"})
        assert not page.is_error and "turn_zorbex" in page.content[0].text  # type: ignore[union-attr]
        wrong = await client.call_tool("search_cairo_docs", {"query": "Zorbex", "sources": ["nope"]})
        assert wrong.is_error and "team_docs" in wrong.content[0].text  # type: ignore[union-attr]


def test_configuration_errors_about_sources_name_the_file_key(tmp_path: Path) -> None:
    config = _project(tmp_path)
    config.write_text(CONFIG.replace('sources = ["team_docs", "cairo_book"]', 'sources = ["team_doc"]'))
    result = run_cli("--config", str(config), "agents")
    assert result.returncode == 2
    assert f"agents.team.sources (from {config} key agents.team.sources)" in result.stderr
    assert "'team_doc'" in result.stderr and "team_docs" in result.stderr

    config.write_text(CONFIG.replace("[sources.team_docs]", "[sources.Team-Docs]"))
    result = run_cli("--config", str(config), "agents")
    assert result.returncode == 2 and "sources.Team-Docs" in result.stderr and str(config) in result.stderr
