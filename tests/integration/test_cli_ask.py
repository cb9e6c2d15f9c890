"""`cairo-coder ask` and `cairo-coder agents` as users run them (subprocesses, real store, fake LLM server)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.helpers import run_cli
from tests.integration.mini_corpus import write_mini_corpus


def cli(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *args,
        env={"DATABASE_URL": db_url, "CAIRO_CODER_EMBEDDINGS__PROVIDER": "none", **env},
        unset=("CAIRO_CODER_*", "*_API_KEY", "OPENAI_BASE_URL"),
    )


@pytest.fixture
def kb(db_url: str, tmp_path: Path) -> str:
    corpus = write_mini_corpus(tmp_path / "corpus")
    done = cli(db_url, "ingest", "cairo_book", "scarb_docs", "--from", str(corpus), "--json")
    assert done.returncode == 0, done.stderr
    return db_url


def test_ask_streams_the_answer_then_lists_sources_and_json_has_usage(kb: str, fake: FakeOpenAI) -> None:
    env = {"CAIRO_CODER_MODEL": "openai/fake", "OPENAI_BASE_URL": fake.base_url}
    shown = cli(kb, "ask", "How do storage mappings and arrays work?", **env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("ANSWER<How do storage mappings and arrays work?>")
    assert "Sources" in shown.stdout and "[1] Contract Storage (cairo_book)\n" in shown.stdout
    assert "https://book.cairo-lang.org/" in shown.stdout
    assert "(not cited)" in shown.stdout, "the answer cites [1] only: the other sources say so"
    assert "Retrieving documentation" in shown.stderr and "note:" not in shown.stderr
    fake.fields["answer"] = "Storage mappings [2] and more [99]."
    cited = cli(kb, "ask", "How do storage mappings and arrays work?", **env)
    assert "[1] Contract Storage (cairo_book) (not cited)" in cited.stdout
    assert "note: the answer cites [99], which is not among the" in cited.stderr
    del fake.fields["answer"]

    data = json.loads(cli(kb, "ask", "How do storage mappings and arrays work?", "--json", **env).stdout)
    assert set(data) == {"answer", "finish_reason", "sources", "usage"} and data["finish_reason"] == "stop"
    assert data["answer"].startswith("ANSWER<")
    assert set(data["sources"][0]) == {"title", "url", "source", "path"}
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"] > 0


def test_ask_mcp_needs_no_model_and_ask_without_one_says_what_to_set(kb: str) -> None:
    data = json.loads(cli(kb, "ask", "Scarb.toml edition", "--mcp", "--json", "--agent", "scarb-assistant").stdout)
    assert "Manifest Format" in data["answer"] and data["usage"]["total_tokens"] == 0
    assert {s["source"] for s in data["sources"]} == {"scarb_docs"}
    failed = cli(kb, "ask", "How do storage mappings work?")
    assert failed.returncode == 1
    assert "CAIRO_CODER_MODEL" in failed.stderr and "Traceback" not in failed.stderr
    unknown = cli(kb, "ask", "x", "--agent", "ghost")
    assert unknown.returncode == 2 and "known agents: cairo-coder" in unknown.stderr


def test_ask_reports_a_provider_failure_cleanly(kb: str, fake: FakeOpenAI) -> None:
    fake.chat_failures.extend([500] * 3)
    failed = cli(
        kb,
        "ask",
        "storage?",
        CAIRO_CODER_MODEL="openai/fake",
        OPENAI_BASE_URL=fake.base_url,
        CAIRO_CODER_LLM__RETRIES="2",
    )
    fake.chat_failures.clear()
    assert failed.returncode == 1
    assert "unavailable" in failed.stderr and "Traceback" not in failed.stderr


def test_agents_lists_agents_sources_and_models(db_url: str) -> None:
    listed = json.loads(cli(db_url, "agents", "--json", CAIRO_CODER_LLM__CHAT_MODEL="anthropic/claude-x").stdout)
    by_id = {a["id"]: a for a in listed}
    assert set(by_id) == {"cairo-coder", "starknet-agent", "scarb-assistant"}
    assert by_id["scarb-assistant"]["sources"] == ["scarb_docs"]
    assert by_id["cairo-coder"]["default"] and len(by_id["cairo-coder"]["sources"]) == 10
    assert by_id["starknet-agent"]["models"]["generation"] == "anthropic/claude-x"
    table = cli(db_url, "agents")
    assert "cairo-coder (default)" in table.stdout and "not configured" in table.stdout
    configured = cli(db_url, "agents", CAIRO_CODER_MODEL="ollama_chat/llama3.1")
    assert "ollama_chat/llama3.1" in configured.stdout and "not configured" not in configured.stdout
