"""Core data types shared by every layer (ingestion, store, pipeline, server).

They are plain pydantic v2 models so that they validate at the boundaries (TOML, HTTP bodies, database rows)
and serialise the same way everywhere.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# What the programs receive as chat history when there is none (an empty field reads as a missing one).
NO_HISTORY = "(no earlier messages)"


class DocumentSource(StrEnum):
    """The built-in documentation sources (those of the original system); values are the ids used in TOML, the
    API and the database. The registry is open: ``[sources.<id>]`` in the configuration declares more, so source
    ids are plain strings everywhere else, checked against ``Settings.sources``."""

    CAIRO_BOOK = "cairo_book"
    STARKNET_DOCS = "starknet_docs"
    STARKNET_FOUNDRY = "starknet_foundry"
    CAIRO_BY_EXAMPLE = "cairo_by_example"
    OPENZEPPELIN_DOCS = "openzeppelin_docs"
    CORELIB_DOCS = "corelib_docs"
    SCARB_DOCS = "scarb_docs"
    STARKNET_JS = "starknet_js"
    STARKNET_BLOG = "starknet_blog"
    DOJO_DOCS = "dojo_docs"


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class Message(BaseModel):
    """One chat message, as in the OpenAI Chat Completions API."""

    role: Role
    content: str


class DocumentMetadata(BaseModel):
    """Where a chunk comes from; enough to cite it (url) and to re-index it (content_hash, source_commit)."""

    model_config = ConfigDict(extra="allow")

    source: str
    path: str = Field(description="Page path relative to the source's docs root (or the item path for corelib).")
    title: str = ""
    section: list[str] = Field(default_factory=list, description="Heading trail from the page title down.")
    url: str = ""
    chunk_number: int = 0
    content_hash: str = ""
    source_commit: str | None = None
    indexed_at: datetime | None = None
    prompt_tokens: int | None = Field(default=None, description="The content's length in cl100k tokens.")

    def heading(self) -> str:
        """The chunk's heading trail as shown to a model ("Page › Section › Subsection")."""
        return " › ".join(self.section) if self.section else self.title


class Document(BaseModel):
    """A retrievable chunk of documentation."""

    content: str
    metadata: DocumentMetadata


class SearchResult(BaseModel):
    """A document returned by the store with the score of the ranking that produced it (higher is better)."""

    document: Document
    score: float
    chunk_id: str


SearchMode = Literal["hybrid", "dense", "lexical"]


class ProcessedQuery(BaseModel):
    """The query processor's output: what to search for and where."""

    original: str
    search_queries: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    is_contract_related: bool = False
    is_test_related: bool = False


class RagSearchConfig(BaseModel):
    """Retrieval parameters of one agent."""

    sources: list[str] = Field(default_factory=lambda: [s.value for s in DocumentSource])
    max_source_count: int = Field(default=10, ge=1, le=100)
    similarity_threshold: float = Field(default=0.0, ge=-1.0, le=1.0)
    mode: SearchMode = "hybrid"


class AgentConfiguration(BaseModel):
    """An agent as declared in configuration."""

    id: str
    name: str
    description: str = ""
    # Source ids of the registry (checked by Settings); an agent that names none searches every declared source.
    sources: list[str] = Field(default_factory=lambda: [s.value for s in DocumentSource])
    max_source_count: int = Field(default=10, ge=1, le=100)
    similarity_threshold: float = Field(default=0.0, ge=-1.0, le=1.0)
    chat_model: str | None = Field(default=None, description="Generation model of this agent (LiteLLM string).")
    fast_model: str | None = Field(default=None, description="Query-processing / judge model of this agent.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=16, le=200_000)
    fallback_models: dict[Literal["query_processing", "generation", "retrieval_judge", "suggestions"], str] = Field(
        default_factory=dict,
        description="Per stage, the model used while the stage's own model's provider is down (its circuit open).",
    )
    program: Literal["cairo", "scarb"] = Field(
        default="cairo", description="Which query and generation signatures the agent uses."
    )
    contract_template: str = Field(
        default="builtin", description="'builtin', '' (none) or a file whose text is added for contract questions."
    )
    test_template: str = Field(
        default="builtin", description="'builtin', '' (none) or a file whose text is added for test questions."
    )
    retrieval_judge: bool = Field(default=False, description="Score candidates with one batched LLM call.")
    judge_threshold: float = Field(default=0.4, ge=0.0, le=1.0)

    def search_config(self, mode: SearchMode = "hybrid") -> RagSearchConfig:
        return RagSearchConfig(
            sources=self.sources,
            max_source_count=self.max_source_count,
            similarity_threshold=self.similarity_threshold,
            mode=mode,
        )


class Usage(BaseModel):
    """Token usage, as in the OpenAI API."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class RequestUsage(Usage):
    """Usage of one request: the total and each stage's share (query_processing, retrieval_judge, generation)."""

    stages: dict[str, Usage] = Field(default_factory=dict)

    def add_stage(self, stage: str, usage: Usage) -> None:
        self.stages[stage] = self.stages.get(stage, Usage()) + usage
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.total_tokens += usage.total_tokens


class SourceInfo(BaseModel):
    """A document as listed in the `sources` event; ``number`` is what the answer's [n] citations refer to."""

    number: int
    title: str
    url: str
    source: str
    path: str
    section: list[str] = Field(default_factory=list)
    version: str | None = Field(default=None, description="Commit of the documentation the chunk was indexed from.")
    score: float = 0.0


StreamEventType = Literal["processing", "sources", "response", "final_response", "end", "error"]


class StreamEvent(BaseModel):
    """One event of the pipeline's stream, in the order processing → sources → response* → final_response → end."""

    type: StreamEventType
    data: Any = None
