"""Agents: named pipelines declared in configuration, and the factory that builds them.

Built-in agents (``defaults.toml``): ``cairo-coder`` (every source), ``starknet-agent`` (the Starknet
ecosystem) and ``scarb-assistant`` (Scarb only, with Scarb-specific signatures). A ``[agents.<id>]`` table in
cairo-coder.toml adds or changes one. Programs are built once per agent and shared by its requests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from cairo_coder.config import Settings
from cairo_coder.embeddings import Embedder
from cairo_coder.errors import InvalidRequestError
from cairo_coder.llm import LLMRouter
from cairo_coder.pipeline import RagPipeline
from cairo_coder.programs.generation import CairoGenerationSignature, GenerationProgram, ScarbGenerationSignature
from cairo_coder.programs.loading import load_optimized, program_names
from cairo_coder.programs.query_processor import (
    CAIRO_DEMOS,
    SCARB_DEMOS,
    CairoQuerySignature,
    QueryProcessorProgram,
    ScarbQuerySignature,
)
from cairo_coder.programs.retriever import DocumentRetrieverProgram
from cairo_coder.programs.templates import resolve_template
from cairo_coder.store.documents import DocumentStore
from cairo_coder.types import AgentConfiguration, DocumentSource


class UnknownAgentError(InvalidRequestError):
    """The requested agent id is not declared; the message lists the known ids."""

    kind = "unknown_agent"
    status = 404

    def __init__(self, agent_id: str, known: list[str]) -> None:
        self.agent_id = agent_id
        self.known = known
        super().__init__(f"unknown agent {agent_id!r}; known agents: {', '.join(known)}")


def agent_config(settings: Settings, agent_id: str) -> AgentConfiguration:
    """The declared agent ``agent_id``; raises :class:`UnknownAgentError` listing the known ids."""
    agent = settings.agents.get(agent_id)
    if agent is None:
        raise UnknownAgentError(agent_id, sorted(settings.agents))
    return agent


@dataclass
class AgentPrograms:
    query_processor: QueryProcessorProgram
    retriever: DocumentRetrieverProgram
    generation: GenerationProgram
    templates: dict[str, str]
    optimized: dict[str, Path]


def build_programs(
    agent: AgentConfiguration, settings: Settings, store: DocumentStore, embedder: Embedder
) -> AgentPrograms:
    """The programs of one agent, with optimized versions loaded from ``pipeline.optimized_dir`` if present."""
    pipeline = settings.pipeline
    scarb = agent.program == "scarb"
    query_processor = QueryProcessorProgram(
        ScarbQuerySignature if scarb else CairoQuerySignature,
        SCARB_DEMOS if scarb else CAIRO_DEMOS,
        pipeline.max_search_queries,
    )
    generation = GenerationProgram(ScarbGenerationSignature if scarb else CairoGenerationSignature)
    retriever = DocumentRetrieverProgram(
        store,
        embedder,
        candidates_per_query=pipeline.candidates_per_query,
        max_search_queries=pipeline.max_search_queries,
        all_sources=list(settings.sources),
    )
    names = program_names(agent.program)
    optimized: dict[str, Path] = {}
    for name, program in (
        (names["query_processor"], query_processor),
        (names["generation"], generation),
        (names["retrieval_judge"], retriever.judge),
    ):
        path = load_optimized(program, pipeline.optimized_dir, name, agent.id)
        if path is not None:
            optimized[name] = path
    # After loading (a saved program's instructions replace the built-in ones): the sources only this deployment has.
    builtin = {s.value for s in DocumentSource}
    query_processor.describe_sources(
        {s: settings.sources[s].description or settings.sources[s].name for s in agent.sources if s not in builtin}
    )
    templates = {
        "contract": resolve_template(agent.contract_template, "contract"),
        "test": resolve_template(agent.test_template, "test"),
    }
    return AgentPrograms(query_processor, retriever, generation, templates, optimized)


class AgentFactory:
    """Creates :class:`RagPipeline` instances for declared agents over one store, embedder and LLM router."""

    def __init__(
        self, settings: Settings, store: DocumentStore, embedder: Embedder, router: LLMRouter | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.router = router or LLMRouter(settings.llm)
        self._programs: dict[str, AgentPrograms] = {}
        self._lock = threading.Lock()

    @property
    def default_agent_id(self) -> str:
        return self.settings.pipeline.default_agent

    def agent_ids(self) -> list[str]:
        return sorted(self.settings.agents)

    def agents(self) -> list[AgentConfiguration]:
        return [self.settings.agents[agent_id] for agent_id in self.agent_ids()]

    def get_config(self, agent_id: str) -> AgentConfiguration:
        return agent_config(self.settings, agent_id)

    def programs(self, agent_id: str) -> AgentPrograms:
        agent = self.get_config(agent_id)
        with self._lock:  # programs are built once per agent (a bounded cache: one entry per declared agent)
            programs = self._programs.get(agent_id)
            if programs is None:
                programs = build_programs(agent, self.settings, self.store, self.embedder)
                self._programs[agent_id] = programs
        return programs

    def create_agent(self) -> RagPipeline:
        """The default agent (``pipeline.default_agent``)."""
        return self.create_agent_by_id(self.default_agent_id)

    def create_agent_by_id(self, agent_id: str) -> RagPipeline:
        agent = self.get_config(agent_id)
        programs = self.programs(agent_id)
        return RagPipeline(
            agent,
            router=self.router,
            query_processor=programs.query_processor,
            retriever=programs.retriever,
            generation=programs.generation,
            settings=self.settings.pipeline,
            templates=programs.templates,
            search=agent.search_config(self.settings.search.mode),
        )
