"""Settings: built-in defaults < TOML file < environment, validated into one object.

- sections.py: the ``[database]``, ``[embeddings]``, ``[search]`` ... sections, with every default written once
- sources.py: an entry of the source registry (``[sources.<id>]``: built-in or declared by the user)
- settings.py: the whole configuration, with its cross-references checked (agents, their sources)
- loading.py: layering with provenance, so that errors name the file key or environment variable
- masking.py: the configuration shown without its secrets
"""

from __future__ import annotations

from cairo_coder.config.loading import (
    CONFIG_FILE_NAME,
    ENV_PREFIX,
    LEGACY_CONFIG_FILE_NAME,
    STANDARD_ENV,
    LoadedSettings,
    find_config_file,
    load_settings,
    load_settings_with_origin,
)
from cairo_coder.config.masking import SECRET_KEYS, mask_url, masked
from cairo_coder.config.sections import (
    BASE_LOCAL_MODEL,
    CHUNK_MAX_CHARS,
    CHUNK_TARGET_CHARS,
    LOCAL_DIMENSIONS,
    LOCAL_MODEL,
    LOCAL_MODELS,
    PROVIDER_KEYS,
    REMOTE_DIMENSIONS,
    REMOTE_MODEL,
    RRF_K,
    DatabaseSettings,
    EmbeddingSettings,
    EvaluationSettings,
    IngestSettings,
    LLMSettings,
    LogSettings,
    PipelineSettings,
    SearchSettings,
    ServerSettings,
    provider_of,
)
from cairo_coder.config.settings import Settings
from cairo_coder.config.sources import SOURCE_ID_PATTERN, SlugStyle, SourceConfig, UrlStyle
from cairo_coder.errors import ConfigError

__all__ = [
    "BASE_LOCAL_MODEL",
    "CHUNK_MAX_CHARS",
    "CHUNK_TARGET_CHARS",
    "CONFIG_FILE_NAME",
    "ENV_PREFIX",
    "LEGACY_CONFIG_FILE_NAME",
    "LOCAL_DIMENSIONS",
    "LOCAL_MODEL",
    "LOCAL_MODELS",
    "PROVIDER_KEYS",
    "REMOTE_DIMENSIONS",
    "REMOTE_MODEL",
    "RRF_K",
    "SECRET_KEYS",
    "SOURCE_ID_PATTERN",
    "STANDARD_ENV",
    "ConfigError",
    "DatabaseSettings",
    "EmbeddingSettings",
    "EvaluationSettings",
    "IngestSettings",
    "LLMSettings",
    "LoadedSettings",
    "LogSettings",
    "PipelineSettings",
    "SearchSettings",
    "ServerSettings",
    "Settings",
    "SlugStyle",
    "SourceConfig",
    "UrlStyle",
    "find_config_file",
    "load_settings",
    "load_settings_with_origin",
    "mask_url",
    "masked",
    "provider_of",
]
