"""The effective configuration: every section, the source registry and the agents, checked together."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cairo_coder.config.sections import (
    DatabaseSettings,
    EmbeddingSettings,
    EvaluationSettings,
    IngestSettings,
    LLMSettings,
    LogSettings,
    PipelineSettings,
    SearchSettings,
    ServerSettings,
)
from cairo_coder.config.sources import SOURCE_ID_PATTERN, SourceConfig
from cairo_coder.errors import InvalidRequestError
from cairo_coder.types import AgentConfiguration

SourceKey = Annotated[str, StringConstraints(pattern=SOURCE_ID_PATTERN)]


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
    log: LogSettings = Field(default_factory=LogSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    sources: dict[SourceKey, SourceConfig] = Field(default_factory=dict)
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
    def _references_exist(self) -> Settings:
        """Agents, their sources and the per-source search rules name entries that exist (each error names the
        key; load_settings adds where its value came from)."""
        if self.agents and self.pipeline.default_agent not in self.agents:
            known = ", ".join(sorted(self.agents))
            raise UnknownReference(
                ("pipeline", "default_agent"),
                f"a declared agent, not {self.pipeline.default_agent!r} (known agents: {known})",
            )
        known_sources = ", ".join(self.sources)
        for agent_id, agent in self.agents.items():
            if "sources" not in agent.model_fields_set:
                agent.sources = list(self.sources)  # an agent that names no sources searches all of them
            unknown = [s for s in agent.sources if s not in self.sources]
            if unknown:
                raise UnknownReference(
                    ("agents", agent_id, "sources"),
                    f"declared sources, not {', '.join(map(repr, unknown))} (known sources: {known_sources})",
                )
        for source in self.search.reference_pages:
            if source not in self.sources:
                raise UnknownReference(
                    ("search", "reference_pages", source),
                    f"a declared source, not {source!r} (known sources: {known_sources})",
                )
        return self

    def source(self, source: str) -> SourceConfig:
        """The registry entry of ``source``; an unknown id is an InvalidRequestError listing the known ones."""
        return self.sources[self.check_sources([str(source)])[0]]

    def secrets(self) -> list[str]:
        """Every secret value configured (masked in logs): client and admin keys, provider keys (ours and the
        providers' environment variables LiteLLM reads), the salt, the database password."""
        import os
        from urllib.parse import urlparse

        from cairo_coder.config.sections import PROVIDER_KEYS

        values = [*self.server.api_keys, self.server.admin_key, self.server.insights_salt]
        values += [self.llm.openai_api_key, self.llm.anthropic_api_key, self.llm.gemini_api_key]
        values += [os.environ.get(name, "") for name, _ in PROVIDER_KEYS.values()]
        password = urlparse(self.database.url).password if self.database.url else None
        return [v for v in [*values, password or ""] if v]

    def check_sources(self, values: list[str]) -> list[str]:
        """``values`` if every id is a declared source, else an InvalidRequestError listing the known ones."""
        unknown = [v for v in values if v not in self.sources]
        if unknown:
            raise InvalidRequestError(
                f"unknown source{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"known sources: {', '.join(self.sources)}"
            )
        return list(values)


class UnknownReference(ValueError):
    """A setting names an agent or a source that is not declared; ``loc`` is the setting's key."""

    def __init__(self, loc: tuple[str, ...], expected: str) -> None:
        super().__init__(expected)
        self.loc = loc
