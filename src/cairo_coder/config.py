"""Settings: built-in defaults < TOML file < environment, validated into one object.

Every value remembers where it came from, so that a bad value fails at start with one message that names the
key, its origin (file and key, or environment variable) and what was expected. Deployments of the original
system keep their ``config.toml``; its sections are mapped onto the new keys with a notice.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cairo_coder.types import AgentConfiguration, DocumentSource, SearchMode

ENV_PREFIX = "CAIRO_CODER_"
CONFIG_FILE_NAME = "cairo-coder.toml"
LEGACY_CONFIG_FILE_NAME = "config.toml"
SECRET_KEYS = ("api_key", "api_keys", "password", "secret", "_token", "admin_key", "salt")
LOCAL_MODEL, LOCAL_DIMENSIONS = "all-MiniLM-L6-v2", 384
REMOTE_MODEL, REMOTE_DIMENSIONS = "openai/text-embedding-3-large", 1536

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


class ConfigError(Exception):
    """A configuration value is invalid; the message names the key, its origin and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(_Section):
    url: str = ""
    data_dir: str = ""
    pool_min_size: int = Field(default=1, ge=0, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=500)
    connect_timeout: float = Field(default=10.0, gt=0)
    # How long one operation retries a lost or restarting database (fresh connections, jittered backoff) before
    # the request gets 503 database_unavailable.
    retry_seconds: float = Field(default=5.0, ge=0, le=300)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("a URL of the form postgresql://user:password@host:port/dbname")
        return value

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        return Path(platformdirs.user_data_dir("cairo-coder")) / "pg"


class EmbeddingSettings(_Section):
    provider: Literal["local", "remote", "none"] = "local"
    model: str = "all-MiniLM-L6-v2"
    dimensions: int = Field(default=384, ge=1, le=16000)
    batch_size: int = Field(default=64, ge=1, le=2048)
    max_tokens: int = Field(default=128, ge=8, le=8192)
    api_base: str = ""
    # Local model weights: "float32" as shipped, or "int8" (PyTorch dynamic quantization of the linear layers,
    # done at load, nothing downloaded): vectors at cosine ~0.93 of float32's. Measured on the shared corpus: full
    # ingest 146 s (float32 365 s), hybrid search p50 19-22 ms end to end (29-33 ms); train recall@5 / MRR@10
    # 0.719 / 0.554 (float32 0.730 / 0.530), dev 0.857 / 0.655 (0.886 / 0.669), per item +13/-7 on train and
    # +7/-13 on dev against float32 (noise by a sign test, p = 0.26 each); API items in words in the top 3: 11/40
    # (15/40).
    precision: Literal["float32", "int8"] = "float32"

    @model_validator(mode="after")
    def _remote_defaults(self) -> EmbeddingSettings:
        # "Remote embeddings one setting away": provider=remote alone selects the production model.
        if self.provider == "remote" and self.model == LOCAL_MODEL:
            self.model = REMOTE_MODEL
            if self.dimensions == LOCAL_DIMENSIONS:
                self.dimensions = REMOTE_DIMENSIONS
        return self


class SearchSettings(_Section):
    mode: SearchMode = "hybrid"
    k: int = Field(default=5, ge=1, le=200)
    rrf_k: int = Field(default=60, ge=1)
    candidates: int = Field(default=60, ge=1, le=1000)
    lexical_ranker: Literal["bm25", "fts"] = "bm25"
    # Hybrid search ranks explanatory pages above API-reference pages (globs over page paths, per source): a
    # reference page's score is multiplied by reference_weight (1.0: no preference). An item the query names
    # (an exact symbol match) still comes first.
    reference_weight: float = Field(default=0.8, gt=0.0, le=1.0)
    reference_pages: dict[DocumentSource, list[str]] = Field(default_factory=dict)
    # Dense score = window_weight x the chunk's best vector + (1 - window_weight) x its head (store/search.py).
    window_weight: float = Field(default=0.7, ge=0.0, le=1.0)
    # Hybrid: the API item whose description is nearest the question is lifted to this page position when its
    # similarity reaches api_item_similarity (1.0: never) and the best chunk's dense score + api_item_margin.
    # A question naming a symbol is answered by the symbol lookup instead.
    api_item_similarity: float = Field(default=0.4, ge=0.0, le=1.0)
    api_item_margin: float = Field(default=0.0, ge=-1.0, le=1.0)
    api_item_position: int = Field(default=3, ge=1, le=50)


class IngestSettings(_Section):
    corpus: str = ""
    cache_dir: str = ""
    chunk_target_chars: int = Field(default=1800, ge=200)
    chunk_max_chars: int = Field(default=4000, ge=400)
    write_batch_size: int = Field(default=256, ge=1)

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        return Path(platformdirs.user_cache_dir("cairo-coder"))


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=3001, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # Client API keys (Authorization: Bearer <key> or x-api-key); empty = no authentication.
    api_keys: list[str] = Field(default_factory=list)
    # Key for the admin endpoints (query insights); empty = those endpoints are disabled.
    admin_key: str = ""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_messages: int = Field(default=100, ge=1)
    max_message_chars: int = Field(default=100_000, ge=1)
    max_concurrent_requests: int = Field(default=64, ge=1)
    # Seconds a client may take to send its request line and headers, and then between two parts of its body:
    # a half-sent request is closed (headers) or answered 408 (body) instead of holding a connection forever.
    read_timeout: float = Field(default=30.0, gt=0, le=3600)
    # Web pages (origins, e.g. "https://app.example.com") allowed to call the API from a browser, CORS included;
    # "*" allows every page. Empty: only the server's own pages (security.py, SECURITY.md).
    cors_origins: list[str] = Field(default_factory=list)
    # Host header values accepted besides loopback (DNS-rebinding protection of every route), e.g. the name a
    # reverse proxy forwards; "name" also accepts "name:<any port>"; "*" turns the check off. Empty: checked
    # when bound to loopback or a specific address, not when bound to every interface (0.0.0.0).
    allowed_hosts: list[str] = Field(default_factory=list)
    ingest_on_start: bool = True
    insights: bool = True
    # Salt of the hashed user ids in query insights; empty = a random salt kept in the database.
    insights_salt: str = ""
    insights_queue_size: int = Field(default=10_000, ge=1)


# Provider prefix of a LiteLLM model string -> (environment variable of its API key, our settings key or None).
PROVIDER_KEYS: dict[str, tuple[str, str | None]] = {
    "openai": ("OPENAI_API_KEY", "openai_api_key"),
    "anthropic": ("ANTHROPIC_API_KEY", "anthropic_api_key"),
    "gemini": ("GEMINI_API_KEY", "gemini_api_key"),
    "azure": ("AZURE_API_KEY", None),
    "voyage": ("VOYAGE_API_KEY", None),
    "cohere": ("COHERE_API_KEY", None),
    "mistral": ("MISTRAL_API_KEY", None),
}


def provider_of(model: str) -> str:
    """The provider prefix of a LiteLLM model string (LiteLLM's default, openai, when there is none)."""
    return model.split("/", 1)[0].lower() if "/" in model else "openai"


class LLMSettings(_Section):
    """Language models. Model strings are LiteLLM's (``openai/gpt-4o-mini``, ``anthropic/claude-...``,
    ``gemini/gemini-2.0-flash``, ``ollama_chat/llama3.1``); empty means "not configured"."""

    model: str = ""  # every stage that has no model of its own
    chat_model: str = ""  # generation (the strong model)
    fast_model: str = ""  # query processing, retrieval judge, suggestions (the fast model)
    override_model: str = ""  # CAIRO_CODER_MODEL: forces the model of every stage of every agent
    api_base: str = ""  # an OpenAI-compatible or Ollama endpoint used for every model
    openai_base_url: str = ""  # OPENAI_BASE_URL: endpoint for openai/... models only
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=4096, ge=16, le=200_000)
    retries: int = Field(default=3, ge=0, le=10)
    # The longest wait before a retry: a provider's Retry-After beyond it is passed on to the client at once.
    max_retry_wait: float = Field(default=20.0, ge=0, le=600)
    timeout: float = Field(default=120.0, gt=0)
    cache: bool = False
    # DSPy's LM backend: "litellm" (every LiteLLM provider) or "lm15" (DSPy's native client: less CPU per call).
    engine: Literal["litellm", "lm15"] = "litellm"
    openai_api_key: str = ""
    anthropic_api_key: str = ""
    gemini_api_key: str = ""

    def api_key(self, model: str, environ: Mapping[str, str]) -> str | None:
        """The API key for ``model``'s provider: our setting, else the provider's environment variable."""
        env_name, field = PROVIDER_KEYS.get(provider_of(model), ("", None))
        configured = str(getattr(self, field)) if field else ""
        return configured or environ.get(env_name) or None

    @staticmethod
    def key_hint(model: str) -> str | None:
        """How to provide ``model``'s key ("set X (or llm.x in cairo-coder.toml)"), None if its provider is unknown."""
        env_name, field = PROVIDER_KEYS.get(provider_of(model), ("", None))
        if not env_name:
            return None
        return f"set {env_name}" + (f" (or llm.{field} in cairo-coder.toml)" if field else "")


class PipelineSettings(_Section):
    default_agent: str = "cairo-coder"
    max_history: int = Field(default=10, ge=0, le=100)
    max_search_queries: int = Field(default=5, ge=1, le=20)
    candidates_per_query: int = Field(default=10, ge=1, le=100)
    mcp_max_tokens: int = Field(default=8000, ge=100, le=200_000)
    optimized_dir: str = ""  # directory of DSPy-optimized programs (<program>.json); empty: none


UrlStyle = Literal["html", "clean", "antora", "corelib", "mintlify"]
SlugStyle = Literal["mdbook", "vitepress", "github", "antora"]


class SourceConfig(_Section):
    """One documentation source of the registry: where it lives and how its pages map to public URLs."""

    id: str = ""
    name: str
    repository: str = ""
    branch: str = ""
    docs_root: str = "."
    local_root: str = ""
    file_types: list[str] = Field(default_factory=lambda: ["md"])
    base_url: str
    url_style: UrlStyle = "html"
    slug: SlugStyle = "github"
    readme_is_index: bool = False
    strip_prefixes: list[str] = Field(default_factory=list)
    include_paths: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    include_roots: dict[str, str] = Field(default_factory=dict)
    repo_includes: list[str] = Field(default_factory=list)
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http(s) URL")
        return value.rstrip("/")


class Settings(BaseSettings):
    """The effective configuration. Build it with :func:`load_settings`, which records where values came from."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    sources: dict[DocumentSource, SourceConfig] = Field(default_factory=dict)
    agents: dict[str, AgentConfiguration] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        # Only the init arguments: load_settings() has already layered TOML and environment with provenance.
        init_settings = kwargs.get("init_settings", args[0] if args else None)
        return (init_settings,)

    @field_validator("sources", "agents", mode="before")
    @classmethod
    def _ids_from_keys(cls, value: Any) -> Any:
        """A table's key is its entry's id ([sources.cairo_book] -> id "cairo_book")."""
        if isinstance(value, dict):
            for key, entry in value.items():
                if isinstance(entry, dict):
                    entry.setdefault("id", key)
        return value

    @model_validator(mode="after")
    def _default_agent_exists(self) -> Settings:
        if self.agents and self.pipeline.default_agent not in self.agents:
            known = ", ".join(sorted(self.agents))
            raise ValueError(
                f"pipeline.default_agent {self.pipeline.default_agent!r} is not a declared agent (known: {known})"
            )
        return self

    def source(self, source: DocumentSource | str) -> SourceConfig:
        return self.sources[DocumentSource(source)]


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
        key = ".".join(loc)
        expected = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            expected = "no such key (check the spelling; `cairo-coder config show` lists the valid keys)"
        value = error.get("input")
        shown = "" if isinstance(value, dict) or error["type"] == "extra_forbidden" else f" = {value!r}"
        lines.append(f"invalid configuration: {key}{shown} (from {layers.origin_of(loc)}): expected {expected}")
    return "\n".join(lines)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with secrets (API keys, passwords in URLs) masked."""
    data: dict[str, Any] = _mask(settings.model_dump(mode="json"))
    return data


def mask_url(url: str) -> str:
    """A connection URL with its password masked, for display."""
    return str(_mask(url, "url"))


def _mask(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, key) for v in node]
    if isinstance(node, str) and node:
        if key.lower().endswith(SECRET_KEYS) or key.lower() == "token":
            return node[:3] + "…" + "*" * 6 if len(node) > 8 else "******"
        if key == "url" and "@" in node and "://" in node:
            scheme, rest = node.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:******@{host}" if ":" in creds else node
    return node
