"""Core data types shared by every layer (ingestion, store, pipeline, server).

They are plain pydantic v2 models so that they validate at the boundaries (TOML, HTTP bodies, database rows)
and serialise the same way everywhere.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DocumentSource(StrEnum):
    """The documentation sources of the original system; values are the ids used in TOML, the API and the DB."""

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
    resources: list[DocumentSource] = Field(default_factory=list)
    is_contract_related: bool = False
    is_test_related: bool = False


class RagInput(BaseModel):
    query: str
    chat_history: list[Message] = Field(default_factory=list)
    sources: list[DocumentSource] | None = None


class RagSearchConfig(BaseModel):
    """Retrieval parameters of one agent."""

    sources: list[DocumentSource] = Field(default_factory=lambda: list(DocumentSource))
    max_source_count: int = Field(default=10, ge=1, le=100)
    similarity_threshold: float = Field(default=0.0, ge=-1.0, le=1.0)
    mode: SearchMode = "hybrid"


class AgentConfiguration(BaseModel):
    """An agent as declared in configuration."""

    id: str
    name: str
    description: str = ""
    sources: list[DocumentSource] = Field(default_factory=lambda: list(DocumentSource))
    max_source_count: int = Field(default=10, ge=1, le=100)
    similarity_threshold: float = Field(default=0.0, ge=-1.0, le=1.0)
    chat_model: str | None = None
    fast_model: str | None = None

    def search_config(self) -> RagSearchConfig:
        return RagSearchConfig(
            sources=self.sources,
            max_source_count=self.max_source_count,
            similarity_threshold=self.similarity_threshold,
        )


StreamEventType = Literal["processing", "sources", "response", "final_response", "end", "error"]


class StreamEvent(BaseModel):
    """One event of the pipeline's stream, in the order processing → sources → response* → final_response → end."""

    type: StreamEventType
    data: Any = None
