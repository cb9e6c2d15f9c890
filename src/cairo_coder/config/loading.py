"""Loading settings: built-in defaults < TOML file < environment, each value with the place it came from.

A bad value fails at start with one message naming the key, its origin (file and key, or environment variable)
and what was expected. Deployments of the original system keep their ``config.toml``; its sections are mapped
onto the new keys with a notice.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cairo_coder.config.sections import LLMSettings
from cairo_coder.config.settings import Settings, UnknownReference
from cairo_coder.errors import ConfigError

ENV_PREFIX = "CAIRO_CODER_"
CONFIG_FILE_NAME = "cairo-coder.toml"
LEGACY_CONFIG_FILE_NAME = "config.toml"

# Standard variables that other tools use too, mapped onto our keys.
STANDARD_ENV: dict[str, tuple[str, ...]] = {
    "DATABASE_URL": ("database", "url"),
    "OPENAI_API_KEY": ("llm", "openai_api_key"),
    "ANTHROPIC_API_KEY": ("llm", "anthropic_api_key"),
    "GEMINI_API_KEY": ("llm", "gemini_api_key"),
    "CAIRO_CODER_MODEL": ("llm", "override_model"),
    "OPENAI_BASE_URL": ("llm", "openai_base_url"),
    "CAIRO_CODER_CORPUS": ("ingest", "corpus"),
}


@dataclass
class _Layered:
    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[tuple[str, ...], str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def set(self, path: tuple[str, ...], value: Any, origin: str) -> None:
        node = self.data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
        self.origin[path] = origin

    def merge(self, tree: dict[str, Any], origin: str, prefix: tuple[str, ...] = ()) -> None:
        for key, value in tree.items():
            path = (*prefix, key)
            if isinstance(value, dict) and not _is_leaf_table(path):
                self.merge(value, origin, path)
            else:
                self.set(path, value, f"{origin} key {'.'.join(path)}")

    def origin_of(self, loc: tuple[str, ...]) -> str:
        for end in range(len(loc), 0, -1):
            found = self.origin.get(loc[:end])
            if found:
                return found
        # A table whose keys came from different places: report the table's first known origin.
        for path, found in self.origin.items():
            if path[: len(loc)] == loc:
                return found
        return "built-in defaults"


def _is_leaf_table(path: tuple[str, ...]) -> bool:
    """Tables whose value is a mapping in its own right (merged as a whole, not key by key)."""
    return len(path) == 3 and path[0] == "sources" and path[2] in ("include_roots", "variables")


def _anchor_source_paths(tree: dict[str, Any], file: Path, layers: _Layered) -> None:
    """A source's relative ``path`` is relative to the file that declares it, not to the working directory."""
    sources = tree.get("sources")
    for source_id, entry in sources.items() if isinstance(sources, dict) else []:
        folder = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(folder, str) and folder and not Path(folder).expanduser().is_absolute():
            key = ("sources", source_id, "path")
            layers.set(key, str((file.parent / folder).resolve()), layers.origin[key])


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc


def _defaults() -> dict[str, Any]:
    text = resources.files("cairo_coder").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _parse_env_value(raw: str) -> Any:
    """Environment values are strings; lists/tables may be written as TOML values (e.g. ["a", "b"])."""
    stripped = raw.strip()
    if stripped.startswith(("[", "{")):
        try:
            return tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError:
            return raw
    return raw


LEGACY_PROVIDER_PREFIX = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini", "google": "gemini"}


def _map_legacy(tree: dict[str, Any], origin: str, layers: _Layered) -> None:
    """Map the original system's config.toml sections onto the new keys, with a notice naming them."""
    mapped: list[str] = []
    api_keys = tree.get("API_KEYS", {})
    for name, value in api_keys.items() if isinstance(api_keys, dict) else []:
        key = f"{str(name).lower()}_api_key"
        if key in LLMSettings.model_fields and value:
            layers.set(("llm", key), value, f"{origin} key API_KEYS.{name}")
            mapped.append(f"[API_KEYS] {name} -> llm.{key}")
    vector_db = tree.get("VECTOR_DB")
    db_parts = {k: v for k, v in vector_db.items() if v not in (None, "")} if isinstance(vector_db, dict) else {}
    raw_general = tree.get("GENERAL")
    general: dict[str, Any] = raw_general if isinstance(raw_general, dict) else {}
    if general.get("PORT"):
        layers.set(("server", "port"), general["PORT"], f"{origin} key GENERAL.PORT")
        mapped.append("[GENERAL] PORT -> server.port")
    if db_parts.get("POSTGRES_HOST"):
        from urllib.parse import quote

        user = quote(str(db_parts.get("POSTGRES_USER", "postgres")), safe="")
        password = db_parts.get("POSTGRES_PASSWORD")
        auth = f"{user}:{quote(str(password), safe='')}" if password else user
        url = (
            f"postgresql://{auth}@{db_parts['POSTGRES_HOST']}:{db_parts.get('POSTGRES_PORT', 5432)}"
            f"/{db_parts.get('POSTGRES_DB', 'postgres')}"
        )
        layers.set(("database", "url"), url, f"{origin} section VECTOR_DB")
        mapped.append("[VECTOR_DB] POSTGRES_* -> database.url")
    if general.get("SIMILARITY_MEASURE"):
        mapped.append("[GENERAL] SIMILARITY_MEASURE -> ignored (search always uses cosine similarity)")
    providers = tree.get("PROVIDERS", {})
    if isinstance(providers, dict):
        for kind, target in (("CHAT", "chat_model"), ("FAST_CHAT", "fast_model")):
            provider = providers.get(f"DEFAULT_{kind}_PROVIDER")
            model = providers.get(f"DEFAULT_{kind}_MODEL")
            if model:
                prefix = LEGACY_PROVIDER_PREFIX.get(str(provider or "").lower(), str(provider or "").lower())
                value = f"{prefix}/{model}" if prefix and "/" not in str(model) else str(model)
                layers.set(("llm", target), value, f"{origin} section PROVIDERS")
                mapped.append(f"[PROVIDERS] DEFAULT_{kind}_PROVIDER/MODEL -> llm.{target}")
        emb_provider = providers.get("DEFAULT_EMBEDDING_PROVIDER")
        emb_model = providers.get("DEFAULT_EMBEDDING_MODEL")
        if emb_model:
            prefix = LEGACY_PROVIDER_PREFIX.get(str(emb_provider or "").lower(), str(emb_provider or "").lower())
            value = f"{prefix}/{emb_model}" if prefix and "/" not in str(emb_model) else str(emb_model)
            layers.set(("embeddings", "provider"), "remote", f"{origin} section PROVIDERS")
            layers.set(("embeddings", "model"), value, f"{origin} section PROVIDERS")
            if "text-embedding-3" in value:
                layers.set(("embeddings", "dimensions"), 1536, f"{origin} section PROVIDERS")
            mapped.append("[PROVIDERS] DEFAULT_EMBEDDING_PROVIDER/MODEL -> embeddings.provider/model")
    if mapped:
        layers.notices.append(
            f"notice: {origin} uses the original system's layout; mapped: "
            + "; ".join(mapped)
            + f". Move these keys to {CONFIG_FILE_NAME} under their new names."
        )


def _is_legacy(tree: dict[str, Any]) -> bool:
    return any(section in tree for section in ("API_KEYS", "VECTOR_DB", "GENERAL", "PROVIDERS"))


def find_config_file(explicit: str | Path | None, environ: dict[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get("CAIRO_CODER_CONFIG"):
        return Path(environ["CAIRO_CODER_CONFIG"])
    for name in (CONFIG_FILE_NAME, LEGACY_CONFIG_FILE_NAME):
        candidate = Path.cwd() / name
        if candidate.is_file():
            return candidate
    return None


@dataclass
class LoadedSettings:
    settings: Settings
    config_file: Path | None
    notices: list[str]
    origins: dict[tuple[str, ...], str]


def load_settings_with_origin(
    config_file: str | Path | None = None, environ: dict[str, str] | None = None
) -> LoadedSettings:
    """Layer defaults, the TOML file and the environment; validate; raise ConfigError naming the bad key."""
    env = dict(os.environ if environ is None else environ)
    layers = _Layered()
    layers.merge(_defaults(), "built-in defaults")
    path = find_config_file(config_file, env)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist (given by --config or CAIRO_CODER_CONFIG)")
        tree = _read_toml(path)
        if _is_legacy(tree):
            _map_legacy(tree, str(path), layers)
            tree = {k: v for k, v in tree.items() if k not in ("API_KEYS", "VECTOR_DB", "GENERAL", "PROVIDERS")}
        layers.merge(tree, str(path))
        _anchor_source_paths(tree, path, layers)
    for name, target in STANDARD_ENV.items():
        if env.get(name):
            layers.set(target, env[name], f"environment variable {name}")
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in STANDARD_ENV or name == "CAIRO_CODER_CONFIG":
            continue
        parts = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if len(parts) < 2 or parts[0] not in Settings.model_fields:
            continue  # not a settings key (e.g. CAIRO_CODER_MODEL belongs to the LLM router)
        if parts[0] in ("sources", "agents"):
            parts = (parts[0], parts[1].replace("_", "-") if parts[0] == "agents" else parts[1], *parts[2:])
        layers.set(parts, _parse_env_value(raw), f"environment variable {name}")
    try:
        settings = Settings(**layers.data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None
    return LoadedSettings(settings, path, layers.notices, layers.origin)


def load_settings(config_file: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    return load_settings_with_origin(config_file, environ).settings


def _describe(exc: ValidationError, layers: _Layered) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, UnknownReference):  # raised for the whole settings: its own key, and no value
            loc, error = cause.loc, {**error, "input": {}}
        if loc and loc[-1] == "[key]":  # a table's key itself is invalid (e.g. a source id)
            loc = loc[:-1]
            if loc[:1] == ("sources",):
                error = {**error, "msg": "a source id: lowercase letters, digits and '_', starting with a letter"}
        key = ".".join(loc)
        expected = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            expected = "no such key (check the spelling; `cairo-coder config show` lists the valid keys)"
        value = error.get("input")
        shown = "" if isinstance(value, dict) or error["type"] == "extra_forbidden" else f" = {value!r}"
        lines.append(f"invalid configuration: {key}{shown} (from {layers.origin_of(loc)}): expected {expected}")
    return "\n".join(lines)
