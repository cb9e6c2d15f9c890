"""The pipeline's stream: a closed set of typed events, serialized only at the transports.

Order: :class:`Processing`* → :class:`Sources` → :class:`Text`* → :class:`Final` → :class:`End`; on failure one
:class:`ErrorEvent` and nothing after it. Each class's ``type`` is its name on the wire (``response`` for text,
``final_response`` for the final event), and :func:`wire_data` its ``data`` there: the SSE, NDJSON, WebSocket
and MCP transports write these, the CLI prints them, and :class:`Accumulator` adds them up into a whole answer
for ``RagPipeline.run``, the non-streaming routes and query insights (one bookkeeping for all three).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cairo_coder.errors import CairoCoderError, as_error
from cairo_coder.types import RequestUsage, SourceInfo

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Processing:
    """A stage started (``query_processing``, then ``retrieval`` with what it searches for and where)."""

    type: ClassVar[Literal["processing"]] = "processing"
    stage: str
    message: str
    search_queries: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Sources:
    """The documents the answer may cite; ``SourceInfo.number`` is what the answer's [n] refer to."""

    type: ClassVar[Literal["sources"]] = "sources"
    sources: tuple[SourceInfo, ...]
    # The text of each source, in the same order (only the agent process interface sends it, when asked).
    contents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the answer (or, in MCP mode, the whole formatted documentation)."""

    type: ClassVar[Literal["response"]] = "response"
    text: str


@dataclass(frozen=True, slots=True)
class Final:
    """The whole answer with its usage and the citations checked against the sources.

    ``finish_reason`` is None in MCP mode (nothing was generated); "length" means the model stopped at its token
    limit and the answer is incomplete.
    """

    type: ClassVar[Literal["final_response"]] = "final_response"
    answer: str
    usage: RequestUsage
    citations: tuple[int, ...] = ()
    unknown_citations: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class End:
    """The request completed."""

    type: ClassVar[Literal["end"]] = "end"


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The request failed; nothing follows. The error is one of the tree's (errors.py), already mapped."""

    type: ClassVar[Literal["error"]] = "error"
    error: CairoCoderError

    @classmethod
    def of(cls, exc: BaseException) -> ErrorEvent:
        return cls(as_error(exc))

    @property
    def kind(self) -> str:
        return self.error.kind

    @property
    def message(self) -> str:
        return str(self.error)

    @property
    def status(self) -> int:
        return self.error.status

    @property
    def retry_after(self) -> float | None:
        return self.error.retry_after


StreamEvent = Processing | Sources | Text | Final | End | ErrorEvent


def source_dicts(sources: tuple[SourceInfo, ...] | list[SourceInfo]) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json") for s in sources]


def wire_data(event: StreamEvent) -> Any:
    """The ``data`` of an event on the wire (the SSE ``cairo_coder`` extension and the pipeline's own form)."""
    match event:
        case Processing():
            data: dict[str, Any] = {"stage": event.stage, "message": event.message}
            if event.search_queries is not None:
                data["search_queries"] = list(event.search_queries)
            if event.resources is not None:
                data["resources"] = list(event.resources)
            return data
        case Sources():
            return source_dicts(event.sources)
        case Text():
            return event.text
        case Final():
            final: dict[str, Any] = {
                "answer": event.answer,
                "usage": event.usage.model_dump(),
                "citations": list(event.citations),
                "unknown_citations": list(event.unknown_citations),
            }
            if event.finish_reason is not None:
                final["finish_reason"] = event.finish_reason
            return final
        case End():
            return None
        case ErrorEvent():
            error: dict[str, Any] = {"type": event.kind, "message": event.message}
            if event.retry_after is not None:
                error["retry_after"] = event.retry_after
            return error


@dataclass
class Accumulator:
    """What a request's events add up to: the answer as streamed, its sources, usage, citations and outcome."""

    parts: list[str] = field(default_factory=list)
    sources: list[SourceInfo] = field(default_factory=list)
    final: Final | None = None
    status: Literal["ok", "error", "cancelled"] = "cancelled"  # until an End or ErrorEvent says otherwise
    error: CairoCoderError | None = None

    def add(self, event: StreamEvent) -> None:
        match event:
            case Sources():
                self.sources = list(event.sources)
            case Text():
                self.parts.append(event.text)
            case Final():
                self.final = event
            case End():
                self.status = "ok"
            case ErrorEvent():
                self.status, self.error = "error", event.error
            case _:
                pass

    @property
    def streamed(self) -> str:
        """The text as the client saw it."""
        return "".join(self.parts)

    @property
    def text(self) -> str:
        """The answer as the non-streaming routes return it (the streamed text, trimmed)."""
        return self.streamed.strip()

    @property
    def answer(self) -> str:
        """The program's own answer (the final event's), else what was streamed."""
        return self.final.answer if self.final is not None else self.streamed

    @property
    def usage(self) -> RequestUsage:
        return self.final.usage if self.final is not None else RequestUsage()

    @property
    def citations(self) -> list[int]:
        return list(self.final.citations) if self.final is not None else []

    @property
    def unknown_citations(self) -> list[int]:
        return list(self.final.unknown_citations) if self.final is not None else []

    @property
    def finish_reason(self) -> FinishReason:
        return (self.final.finish_reason if self.final is not None else None) or "stop"


__all__ = [
    "Accumulator",
    "End",
    "ErrorEvent",
    "Final",
    "FinishReason",
    "Processing",
    "Sources",
    "StreamEvent",
    "Text",
    "wire_data",
]
