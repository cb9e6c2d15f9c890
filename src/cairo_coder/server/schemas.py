"""Request and response bodies of the HTTP API (OpenAI-compatible where OpenAI defines them).

Unknown request fields are ignored, as OpenAI clients send many (``n``, ``top_p``, ``user``, ``tools`` ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cairo_coder.types import Message, Role, SourceInfo, Usage


def no_nul(value: Any) -> Any:
    """NUL characters carry no meaning in a question and PostgreSQL cannot store them: drop them."""
    return value.replace("\x00", "") if isinstance(value, str) else value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return no_nul(value)


class ContentPart(_Lenient):
    type: str = "text"
    text: str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""

    def to_message(self) -> Message:
        role = Role.SYSTEM if self.role in ("system", "developer") else Role(self.role)
        return Message(role=role, content=self.text())


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str | None = Field(
        default=None, description="An agent id (see GET /v1/models) or any other name (the endpoint's agent is used)."
    )
    messages: list[ChatMessage] = Field(
        min_length=1, description="The conversation; the last message must be the user's question."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    """OpenAI's ``chat.completion``, plus the numbered ``sources`` and which of them the answer cites as [n]."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sources: list[SourceInfo] = Field(default_factory=list)
    citations: list[int] = Field(default_factory=list, description="Numbers of the sources the answer cites.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "cairo-coder"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AgentCard(BaseModel):
    id: str
    name: str
    description: str
    sources: list[str]
    default: bool = False


class AgentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AgentCard]


class HistoryMessage(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str


class ProcessRequest(_Lenient):
    """The agent process interface: one question, its history, which agent, raw documentation or an answer."""

    query: str = Field(min_length=1)
    chat_history: list[HistoryMessage] = Field(default_factory=list)
    agent_id: str | None = None
    mcp_mode: bool = False
    # The text of each source in the sources event ("content"), as the original in-process agents gave it
    # (LangChain documents' pageContent); off by default, it multiplies the size of the event.
    include_content: bool = False

    def history(self) -> list[Message]:
        return [Message(role=Role(m.role), content=m.content) for m in self.chat_history]


class SuggestionsRequest(_Lenient):
    chat_history: list[HistoryMessage] = Field(min_length=1)
    agent_id: str | None = None

    def history(self) -> list[Message]:
        return [Message(role=Role(m.role), content=m.content) for m in self.chat_history]


class SuggestionsResponse(BaseModel):
    suggestions: list[str]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"
    name: str = "cairo-coder"
    version: str
    docs: str = "/docs"


class Readiness(BaseModel):
    status: Literal["ready", "warming", "not_ready"]
    database: bool
    documents: int
    llm_configured: bool
    problems: list[str] = Field(default_factory=list)


class InsightRecord(BaseModel):
    id: int
    created_at: str
    agent_id: str
    query: str
    chat_history: list[dict[str, Any]]
    answer: str | None
    sources: list[dict[str, Any]]
    usage: dict[str, Any]
    duration_ms: float | None
    conversation_id: str | None
    user_hash: str | None
    mcp_mode: bool
    status: str
    error: str | None


class InsightPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[InsightRecord]
    has_more: bool
    next_cursor: int | None = None


def parse_flag(raw: str) -> bool:
    """``true``/``1``/``yes`` and ``false``/``0``/``no`` (any case); anything else is an error."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true/1/yes or false/0/no, got {raw!r}")
