"""RagPipeline: query processing → retrieval → generation, as an async stream of events.

Event order (events.py): Processing* → Sources → Text* → Final → End; on failure one ErrorEvent and nothing
after it. The non-streaming :meth:`RagPipeline.run` consumes the very same events,
so both paths return the same answer and sources. MCP mode skips generation and returns the documentation
formatted for a coding agent, and needs no language model (the raw query is then the search query).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dspy
from dspy.streaming import StreamListener, StreamResponse
from dspy.utils.usage_tracker import track_usage

from cairo_coder import observe, tracing
from cairo_coder.citations import check_citations
from cairo_coder.config import PipelineSettings
from cairo_coder.errors import InvalidRequestError
from cairo_coder.events import Accumulator, End, ErrorEvent, Final, Processing, Sources, StreamEvent, Text
from cairo_coder.llm import LLMRouter, Stage, observe_calls, usage_from
from cairo_coder.llm_calls import retrying, wait_before_retry
from cairo_coder.llm_errors import LLMError, LLMIncompleteError, translate_error
from cairo_coder.programs.adapter import ADAPTER
from cairo_coder.programs.generation import GenerationProgram, format_context
from cairo_coder.programs.query_processor import QueryProcessorProgram, raw_processed_query
from cairo_coder.programs.retriever import DocumentRetrieverProgram
from cairo_coder.rendering import format_for_agent, format_history, source_infos
from cairo_coder.types import (
    AgentConfiguration,
    Message,
    ProcessedQuery,
    RagSearchConfig,
    RequestUsage,
    SearchResult,
    SourceInfo,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class GenerationOptions:
    """A request's own generation settings (e.g. an OpenAI client's temperature); None = the configured one."""

    temperature: float | None = None
    max_tokens: int | None = None


@dataclass
class RagResult:
    answer: str
    sources: list[SourceInfo]
    usage: RequestUsage
    documents: list[SearchResult] = field(default_factory=list)
    processed_query: ProcessedQuery | None = None
    mcp_mode: bool = False
    citations: list[int] = field(default_factory=list)  # the source numbers the answer cites
    unknown_citations: list[int] = field(default_factory=list)  # numbers it cites that no source has
    finish_reason: str = "stop"  # "length": the model stopped at the token limit, the answer is incomplete


class RagPipeline:
    """One agent's pipeline. Programs and the store are injected (shared between requests; no per-call state)."""

    def __init__(
        self,
        agent: AgentConfiguration,
        *,
        router: LLMRouter,
        query_processor: QueryProcessorProgram,
        retriever: DocumentRetrieverProgram,
        generation: GenerationProgram,
        settings: PipelineSettings,
        search: RagSearchConfig | None = None,
        templates: dict[str, str] | None = None,
    ) -> None:
        self.agent = agent
        self.router = router
        self.query_processor = query_processor
        self.retriever = retriever
        self.generation = generation
        self.settings = settings
        self.search = search or agent.search_config()
        self.templates = templates or {}

    # ---------------------------------------------------------------------------------------------- public

    async def stream(
        self,
        query: str,
        chat_history: Sequence[Message] = (),
        *,
        mcp_mode: bool = False,
        options: GenerationOptions | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The events of one request; a failure becomes one :class:`ErrorEvent`, and nothing follows it."""
        try:
            state: dict[str, Any] = {"options": options or GenerationOptions()}
            async for event in self._events(query, chat_history, mcp_mode, RequestUsage(), state):
                yield event
        except Exception as exc:
            yield ErrorEvent.of(exc)

    async def run(
        self,
        query: str,
        chat_history: Sequence[Message] = (),
        *,
        mcp_mode: bool = False,
        options: GenerationOptions | None = None,
    ) -> RagResult:
        """The same events consumed whole; raises the precise exception instead of an ``error`` event."""
        usage = RequestUsage()
        state: dict[str, Any] = {"options": options or GenerationOptions()}
        seen = Accumulator()
        async for event in self._events(query, chat_history, mcp_mode, usage, state):
            seen.add(event)
        return RagResult(
            answer=seen.answer,
            sources=seen.sources,
            usage=usage,
            documents=state.get("documents", []),
            processed_query=state.get("processed"),
            mcp_mode=mcp_mode,
            citations=seen.citations,
            unknown_citations=seen.unknown_citations,
            finish_reason=seen.finish_reason,
        )

    async def retrieve(
        self, query: str, chat_history: Sequence[Message] = ()
    ) -> tuple[ProcessedQuery, list[SearchResult]]:
        """The agent's retrieval as its answers get it: query processing on the agent's configured model, then
        the retriever (and its judge when the agent enables it). For measuring what a deployment retrieves
        (``cairo-coder eval retrieval --agent``); it needs the query-processing model, and says so without one.
        """
        if not query.strip():
            raise InvalidRequestError("the query is empty")
        self.router.lm("query_processing", self.agent)  # LLMNotConfiguredError names the settings to provide
        usage = RequestUsage()
        processed = await self._process_query(
            query, format_history(chat_history, self.settings.max_history), False, usage
        )
        return processed, await self._retrieve(processed, False, usage)

    # ---------------------------------------------------------------------------------------------- stages

    async def _events(
        self, query: str, history: Sequence[Message], mcp_mode: bool, usage: RequestUsage, state: dict[str, Any]
    ) -> AsyncIterator[StreamEvent]:
        if not query.strip():
            raise InvalidRequestError("the query is empty")
        agent = self.agent
        history_text = format_history(history, self.settings.max_history)
        options: GenerationOptions = state["options"]
        if not mcp_mode:
            # Fail before any work when the answer cannot be generated (names the settings to provide).
            self.router.lm("generation", agent)
        yield Processing("query_processing", "Processing query")
        processed = await self._process_query(query, history_text, mcp_mode, usage)
        state["processed"] = processed
        yield Processing(
            "retrieval",
            "Retrieving documentation",
            search_queries=tuple(processed.search_queries),
            resources=tuple(processed.resources),
        )
        with observe.stage("retrieval"), tracing.span("stage retrieval", {"cairo_coder.stage": "retrieval"}) as span:
            documents = await self._retrieve(processed, mcp_mode, usage)
            tracing.set_attributes(
                span,
                {
                    "cairo_coder.documents": len(documents),
                    "cairo_coder.search_queries": len(processed.search_queries),
                },
            )
        state["documents"] = documents
        if logger.isEnabledFor(logging.DEBUG):  # user text and scores: DEBUG only
            logger.debug(
                "retrieval",
                extra={
                    "fields": {
                        "question": query,
                        "search_queries": processed.search_queries,
                        "sources": processed.resources,
                        "documents": [
                            {"source": d.document.metadata.source, "url": d.document.metadata.url, "score": d.score}
                            for d in documents
                        ],
                    }
                },
            )
        yield Sources(tuple(source_infos(documents)), tuple(d.document.content for d in documents))
        if mcp_mode:
            text = format_for_agent(documents, self.settings.mcp_max_tokens)
            yield Text(text)
            yield Final(text, usage)
            yield End()
            return
        answer_parts: list[str] = []
        final = ""
        with observe_calls() as outcome:
            async for piece, prediction in self._generate(processed, documents, history_text, usage, options):
                if piece:
                    answer_parts.append(piece)
                    yield Text(piece)
                if prediction is not None:
                    final = str(getattr(prediction, "answer", "") or "")
        streamed = "".join(answer_parts)
        if final and not streamed:
            yield Text(final)  # cache hit or a model that does not stream
        answer = final or streamed
        citations = check_citations(answer, len(documents))
        if citations.unknown:
            logger.warning("the answer cites %s, which no source has (%d sources)", citations.unknown, len(documents))
        # "length": the model stopped at max_tokens, the answer is incomplete; clients must learn it.
        if outcome.truncated:
            logger.warning("the answer was cut at the token limit (max_tokens)")
        yield Final(
            answer,
            usage,
            citations=tuple(citations.cited),
            unknown_citations=tuple(citations.unknown),
            finish_reason="length" if outcome.truncated else "stop",
        )
        yield End()

    @contextmanager
    def _stage(self, stage: Stage, usage: RequestUsage, options: GenerationOptions | None = None) -> Iterator[None]:
        """Run a stage on its model, count its tokens, and turn DSPy/LiteLLM errors into our precise types."""
        lm = self.router.lm(
            stage,
            self.agent,
            temperature=options.temperature if options else None,
            max_tokens=options.max_tokens if options else None,
        )
        # No DSPy call history and no trace: DSPy keeps up to 10,000 of each (prompts, inputs such as the whole
        # retrieved context, predictions) in global lists, hundreds of MB that a server never reads.
        # Streamed generation keeps DSPy's own ChatAdapter (its StreamListener recognises adapters by name).
        adapter = None if stage == "generation" else ADAPTER
        with (
            observe.stage(stage) as record,
            tracing.span(f"stage {stage}", {"cairo_coder.stage": stage, "gen_ai.request.model": lm.model}) as span,
            dspy.context(lm=lm, adapter=adapter, track_usage=True, disable_history=True, trace=None),
            track_usage() as tracker,
        ):
            try:
                yield
            except Exception as exc:
                translated = translate_error(exc)
                if translated is None or translated is exc:
                    raise
                raise translated from exc
            finally:
                spent = usage_from(tracker.get_total_tokens())
                usage.add_stage(stage, spent)
                tracing.set_attributes(
                    span,
                    {
                        "gen_ai.usage.input_tokens": spent.prompt_tokens,
                        "gen_ai.usage.output_tokens": spent.completion_tokens,
                    },
                )
                if record is not None:
                    record.model = lm.model
                    record.prompt_tokens += spent.prompt_tokens
                    record.completion_tokens += spent.completion_tokens

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(call, self.router.settings.retries, self.router.settings.max_retry_wait)

    async def _process_query(self, query: str, history: str, mcp_mode: bool, usage: RequestUsage) -> ProcessedQuery:
        allowed = list(self.agent.sources)
        if mcp_mode and not self.router.is_configured(self.agent, "query_processing"):
            return raw_processed_query(query, allowed)
        try:
            with self._stage("query_processing", usage):
                prediction = await self._retrying(
                    lambda: self.query_processor.acall(query=query, chat_history=history, allowed=allowed)
                )
        except LLMError as exc:
            if not mcp_mode:
                raise
            # Search must not depend on a model: MCP mode answers from the raw question while the model is down.
            logger.warning("query processing failed (%s); MCP mode searches with the question as asked", exc.kind)
            return raw_processed_query(query, allowed)
        processed: ProcessedQuery = prediction.processed_query
        return processed

    async def _retrieve(self, processed: ProcessedQuery, mcp_mode: bool, usage: RequestUsage) -> list[SearchResult]:
        judge = self.agent.retrieval_judge and not (
            mcp_mode and not self.router.is_configured(self.agent, "retrieval_judge")
        )
        if not judge:
            prediction = await self.retriever.acall(processed=processed, config=self.search)
            return list(prediction.documents)
        try:
            with self._stage("retrieval_judge", usage):
                prediction = await self._retrying(
                    lambda: self.retriever.acall(
                        processed=processed, config=self.search, judge_threshold=self.agent.judge_threshold
                    )
                )
        except LLMError as exc:
            if not mcp_mode:
                raise
            logger.warning("the retrieval judge failed (%s); MCP mode returns the unjudged ranking", exc.kind)
            prediction = await self.retriever.acall(processed=processed, config=self.search)
        return list(prediction.documents)

    async def _generate(
        self,
        processed: ProcessedQuery,
        documents: list[SearchResult],
        history: str,
        usage: RequestUsage,
        options: GenerationOptions,
    ) -> AsyncIterator[tuple[str, dspy.Prediction | None]]:
        templates = []
        if processed.is_contract_related and self.templates.get("contract"):
            templates.append(self.templates["contract"])
        if processed.is_test_related and self.templates.get("test"):
            templates.append(self.templates["test"])
        context = format_context(documents, templates)
        settings = self.router.settings
        with self._stage("generation", usage, options):
            attempt = 0
            while True:
                shown = False
                listener = StreamListener(signature_field_name="answer")
                program = dspy.streamify(
                    self.generation,
                    stream_listeners=[listener],
                    is_async_program=True,
                    include_final_prediction_in_output_stream=True,
                )
                try:
                    async for value in program(query=processed.original, context=context, chat_history=history):
                        if isinstance(value, StreamResponse):
                            shown = shown or bool(value.chunk)
                            yield value.chunk, None
                        elif isinstance(value, dspy.Prediction):
                            yield "", value
                    return
                except Exception as exc:
                    if shown:  # part of the answer is out: never retried, never reported as complete
                        translated = translate_error(exc)
                        raise LLMIncompleteError(
                            "the language model's answer broke off before it was complete ("
                            f"{translated or type(exc).__name__}); ask again",
                            model=getattr(exc, "model", None),
                        ) from exc
                    await wait_before_retry(exc, attempt, settings.retries, settings.max_retry_wait)
                    attempt += 1


__all__ = ["GenerationOptions", "RagPipeline", "RagResult"]
