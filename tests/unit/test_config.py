"""Settings layering, validation messages, legacy config.toml mapping, masking, CLI behaviour on bad config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairo_coder.config import ConfigError, load_settings, load_settings_with_origin, masked
from cairo_coder.errors import InvalidRequestError
from cairo_coder.types import DocumentSource
from tests.helpers import run_cli


def test_defaults_declare_every_source_and_agent() -> None:
    settings = load_settings(environ={})
    assert set(settings.sources) == set(DocumentSource)
    assert {"cairo-coder", "starknet-agent", "scarb-assistant"} <= set(settings.agents)
    assert settings.agents["scarb-assistant"].sources == [DocumentSource.SCARB_DOCS]
    assert settings.embeddings.provider == "local"
    assert settings.search.mode == "hybrid"


def test_toml_overrides_defaults_and_env_overrides_toml(tmp_path: Path) -> None:
    config = tmp_path / "cairo-coder.toml"
    config.write_text('[search]\nk = 7\nmode = "lexical"\n[server]\nport = 4000\n')
    env = {"CAIRO_CODER_SEARCH__K": "9", "DATABASE_URL": "postgresql://u:p@db:5432/x"}
    settings = load_settings(config, environ=env)
    assert settings.search.k == 9  # environment wins
    assert settings.search.mode == "lexical"  # from the file
    assert settings.server.port == 4000
    assert settings.database.url == "postgresql://u:p@db:5432/x"


def test_config_file_found_in_working_directory_and_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cairo-coder.toml").write_text("[search]\nk = 3\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).search.k == 3
    other = tmp_path / "other.toml"
    other.write_text("[search]\nk = 4\n")
    assert load_settings(environ={"CAIRO_CODER_CONFIG": str(other)}).search.k == 4


def test_sources_and_agents_can_be_overridden_and_added(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[sources.cairo_book]\nbase_url = "https://mirror.example.org/book"\n'
        '[agents.my-agent]\nname = "Mine"\nsources = ["cairo_book", "corelib_docs"]\nmax_source_count = 3\n'
    )
    settings = load_settings(config, environ={})
    assert settings.source("cairo_book").base_url == "https://mirror.example.org/book"
    assert settings.source("cairo_book").docs_root == "src"  # the rest of the built-in entry is kept
    assert settings.agents["my-agent"].max_source_count == 3
    assert settings.agents["my-agent"].id == "my-agent"


def test_a_new_source_is_a_registry_entry_and_agents_are_checked_against_the_registry(tmp_path: Path) -> None:
    config = tmp_path / "sub" / "c.toml"
    config.parent.mkdir()
    config.write_text(
        '[sources.team_docs]\nname = "Team"\npath = "../handbook"\nbase_url = "https://docs.example.com"\n'
        '[agents.everything]\nname = "All"\n'
    )
    settings = load_settings(config, environ={})
    assert settings.source("team_docs").path == str(tmp_path / "handbook"), "relative to the declaring file"
    assert settings.agents["everything"].sources[-1] == "team_docs", "an agent without sources gets all of them"
    assert "team_docs" not in settings.agents["cairo-coder"].sources, "declared agents keep their own list"
    with pytest.raises(InvalidRequestError, match=r"unknown source 'nope'; known sources: cairo_book, .*team_docs"):
        settings.source("nope")
    env = {"CAIRO_CODER_AGENTS__SCARB_ASSISTANT__SOURCES": '["scarb_docs", "team_doc"]'}
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ=env)
    message = str(info.value)
    assert (
        "agents.scarb-assistant.sources (from environment variable CAIRO_CODER_AGENTS__SCARB_ASSISTANT__SOURCES)"
        in (message)
    )
    assert "not 'team_doc' (known sources:" in message and "team_docs" in message


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CAIRO_CODER_SEARCH__K": "abc"}, "search.k = 'abc' (from environment variable CAIRO_CODER_SEARCH__K)"),
        ({"CAIRO_CODER_EMBEDDINGS__PROVIDER": "gpu"}, "expected Input should be 'local', 'remote' or 'none'"),
        ({"DATABASE_URL": "mysql://x"}, "database.url = 'mysql://x' (from environment variable DATABASE_URL)"),
        ({"CAIRO_CODER_SEARCH__TYPO": "1"}, "search.typo (from environment variable CAIRO_CODER_SEARCH__TYPO)"),
    ],
)
def test_invalid_values_name_key_origin_and_expectation(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert fragment in str(info.value)


def test_invalid_value_in_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "cairo-coder.toml"
    config.write_text("[server]\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert f"server.port = 70000 (from {config} key server.port)" in str(info.value)
    assert "less than or equal to 65535" in str(info.value)


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "cairo-coder.toml"
    config.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(config, environ={})


def test_legacy_config_toml_is_mapped_with_a_notice(tmp_path: Path) -> None:
    legacy = tmp_path / "config.toml"
    legacy.write_text(
        '[API_KEYS]\nOPENAI = "sk-legacy-123456"\nANTHROPIC = "ak-987654321"\n'
        '[VECTOR_DB]\nPOSTGRES_USER = "cairo"\nPOSTGRES_PASSWORD = "p@ss"\nPOSTGRES_DB = "docs"\n'
        'POSTGRES_HOST = "postgres"\nPOSTGRES_PORT = "5433"\n'
        '[GENERAL]\nPORT = 3005\nSIMILARITY_MEASURE = "cosine"\n'
        '[PROVIDERS]\nDEFAULT_CHAT_PROVIDER = "anthropic"\nDEFAULT_CHAT_MODEL = "claude-sonnet-4"\n'
        'DEFAULT_FAST_CHAT_PROVIDER = "gemini"\nDEFAULT_FAST_CHAT_MODEL = "gemini-2.5-flash"\n'
        'DEFAULT_EMBEDDING_PROVIDER = "openai"\nDEFAULT_EMBEDDING_MODEL = "text-embedding-3-large"\n'
    )
    loaded = load_settings_with_origin(legacy, environ={})
    s = loaded.settings
    assert s.llm.openai_api_key == "sk-legacy-123456"
    assert s.llm.anthropic_api_key == "ak-987654321"
    assert s.database.url == "postgresql://cairo:p%40ss@postgres:5433/docs"
    assert s.server.port == 3005
    assert s.llm.chat_model == "anthropic/claude-sonnet-4"
    assert s.llm.fast_model == "gemini/gemini-2.5-flash"
    assert (s.embeddings.provider, s.embeddings.model, s.embeddings.dimensions) == (
        "remote",
        "openai/text-embedding-3-large",
        1536,
    )
    notice = " ".join(loaded.notices)
    assert "database.url" in notice and "llm.chat_model" in notice and "llm.openai_api_key" in notice


def test_masked_hides_secrets() -> None:
    settings = load_settings(
        environ={"OPENAI_API_KEY": "sk-very-secret-value", "DATABASE_URL": "postgresql://me:hunter2@db:5432/x"}
    )
    data = masked(settings)
    assert "sk-very-secret-value" not in str(data)
    assert "hunter2" not in str(data)
    assert data["database"]["url"] == "postgresql://me:******@db:5432/x"


def test_remote_provider_defaults_to_production_embedding_model() -> None:
    settings = load_settings(environ={"CAIRO_CODER_EMBEDDINGS__PROVIDER": "remote"})
    assert settings.embeddings.model == "openai/text-embedding-3-large"
    assert settings.embeddings.dimensions == 1536


def test_cli_bad_config_exits_2_with_one_message_and_no_traceback(tmp_path: Path) -> None:
    result = run_cli("config", "show", env={"CAIRO_CODER_SEARCH__K": "-1"}, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "search.k = '-1' (from environment variable CAIRO_CODER_SEARCH__K)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_config_show_masks_secrets(tmp_path: Path) -> None:
    result = run_cli("config", "show", env={"OPENAI_API_KEY": "sk-abcdefghijkl"}, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[embeddings]" in result.stdout and "[sources.cairo_book]" in result.stdout
    assert "sk-abcdefghijkl" not in result.stdout
    result = run_cli("config", "show", "--json", cwd=tmp_path, timeout=120)
    assert '"lexical_ranker": "bm25"' in result.stdout


def test_reference_pages_merge_per_source_and_name_unknown_sources(tmp_path: Path) -> None:
    config = tmp_path / "cairo-coder.toml"
    config.write_text('[search.reference_pages]\nstarknet_js = ["api/*"]\n')
    pages = load_settings(config, environ={}).search.reference_pages
    assert pages[DocumentSource.STARKNET_JS] == ["api/*"]
    assert pages[DocumentSource.CORELIB_DOCS] == ["*"], "the built-in entries are kept"
    config.write_text('[search.reference_pages]\nnot_a_source = ["*"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert "search.reference_pages.not_a_source" in str(info.value)
