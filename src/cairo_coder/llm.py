"""LLM router: which ``dspy.LM`` (LiteLLM underneath) serves each stage of each agent, and what its errors mean.

Model choice, most specific first: ``CAIRO_CODER_MODEL`` (forces every stage) > the agent's own model for the
stage > ``llm.chat_model`` / ``llm.fast_model`` > ``llm.model``. Fast stages (query processing, retrieval judge,
suggestions) fall back to the agent's and then the global chat model, so one configured model serves everything.

Retries are cairo-coder's (llm_calls.py): rate limits, 5xx, timeouts and transport errors are retried
``llm.retries`` times after the provider's Retry-After (else jittered exponential backoff), never longer than
``llm.max_retry_wait`` per wait, and never after any token of a stream was shown. DSPy's, LiteLLM's and the
OpenAI SDK's own retries are switched off so that one setting controls the number of attempts and error messages
can say how many were made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import dspy

from cairo_coder import metrics, observe, tracing
from cairo_coder.breaker import Breakers, CircuitBreaker
from cairo_coder.config import LLMSettings, provider_of
from cairo_coder.llm_errors import (
    LLMCircuitOpenError,
    LLMNotConfiguredError,
    LLMOutputError,
    LLMUnavailableError,
    translate_error,
)
from cairo_coder.types import AgentConfiguration, Usage

logger = logging.getLogger(__name__)
# CheckedLM uses DSPy 3.4's LM.aforward hook on purpose (pinned below 3.5, where an engine must replace it); the
# deprecation notice would otherwise reach every server log.
warnings.filterwarnings("ignore", message="Implementing custom LMs through BaseLM", category=DeprecationWarning)

Stage = Literal["query_processing", "generation", "retrieval_judge", "suggestions"]
FAST_STAGES: frozenset[str] = frozenset({"query_processing", "retrieval_judge", "suggestions"})

MAX_CACHED_LMS = 32

NOT_CONFIGURED_HINT = (
    "set CAIRO_CODER_MODEL to a LiteLLM model string (e.g. openai/gpt-4o-mini, anthropic/claude-sonnet-4-5, "
    "gemini/gemini-2.5-flash, ollama_chat/llama3.1), or llm.model / llm.chat_model in cairo-coder.toml, together "
    "with the provider's key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY) or OPENAI_BASE_URL for an "
    "OpenAI-compatible server"
)


@dataclass
class CallOutcome:
    """What the model calls of one stage reported beyond their text."""

    truncated: bool = False  # a response stopped at max_tokens


_OUTCOME: ContextVar[CallOutcome | None] = ContextVar("cairo_coder_call_outcome", default=None)


@contextmanager
def observe_calls() -> Iterator[CallOutcome]:
    """Collect the outcome of the model calls made inside (tasks started inside share the same object)."""
    outcome = CallOutcome()
    token = _OUTCOME.set(outcome)
    try:
        yield outcome
    finally:
        # ValueError: an async generator closed from another context (its consumer's task is gone)
        with suppress(ValueError):
            _OUTCOME.reset(token)


def _finish_reasons(result: Any) -> list[Any]:
    """The finish reasons of a DSPy call result: native responses (lm15 engine) or the provider's raw choices
    (the LiteLLM engine). Read before DSPy's legacy projection, which reports every native answer as "stop"."""
    if getattr(result, "responses", None):
        return [getattr(r, "finish_reason", None) for r in result.responses]
    raw = getattr(result, "raw", None)
    choices = getattr(raw, "choices", None)
    if choices is None and isinstance(raw, dict):
        choices = raw.get("choices")
    return [
        getattr(c, "finish_reason", None) or (c.get("finish_reason") if isinstance(c, dict) else None)
        for c in choices or []
    ]


def _checked(result: Any) -> Any:
    response = result.provider_response()
    choices = getattr(response, "choices", None)
    if choices is None and isinstance(response, dict):
        choices = response.get("choices")
    if not choices:
        raise LLMOutputError("the language model returned no answer (a response without choices)")
    outcome = _OUTCOME.get()
    if outcome is not None and "length" in _finish_reasons(result):
        outcome.truncated = True
    return response


class CheckedLM(dspy.LM):
    """``dspy.LM`` whose calls are checked and guarded.

    Checked: a response without choices (a 200 with ``choices: []``) is a provider failure, not an empty answer;
    one cut at ``max_tokens`` (``finish_reason: "length"``) is noted in the request's :class:`CallOutcome`, so
    that transports report ``length`` instead of ``stop``. Guarded: the provider's circuit breaker (breaker.py)
    refuses calls while it is open, and then the ``fallback`` LM (the stage's fallback model) answers instead; a
    call's timeout is cut to what is left of the request's deadline. Each call is a trace span and a metric.

    The bodies are DSPy 3.4's ``LM.forward``/``aforward`` with the call result inspected before it is projected
    to the legacy response shape (which loses the native finish reason)."""

    breaker: CircuitBreaker | None = None
    fallback: CheckedLM | None = None

    def _guard(self, kwargs: dict[str, Any]) -> CheckedLM | None:
        """The LM that makes this call: None for this one (after checking its breaker and deadline), or the
        fallback while this one's provider is paused."""
        if self.breaker is not None and self.fallback is not None and self.breaker.is_open():
            return self.fallback
        left = observe.remaining()
        if left is not None:
            if left <= 0:
                raise LLMUnavailableError(
                    "the request deadline (llm.request_deadline) was reached before the language model "
                    f"({self.model}) could answer",
                    model=self.model,
                )
            kwargs["timeout"] = min(float(self.kwargs.get("timeout") or left), left)
        if self.breaker is not None:
            self.breaker.before_call(self.model)
        return None

    def _outcome(self, exc: BaseException | None) -> bool:
        """Tell the breaker how the call went; True when the failure paused the provider and a fallback exists."""
        if self.breaker is None:
            return False
        if exc is None:
            self.breaker.succeeded()
            return False
        translated = translate_error(exc)
        if isinstance(translated, LLMUnavailableError) and not isinstance(translated, LLMCircuitOpenError):
            self.breaker.failed()
            return self.fallback is not None and self.breaker.is_open()
        self.breaker.released()
        return False

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        from dspy.clients.execution import execute, prepare

        other = self._guard(kwargs)
        if other is not None:
            return other.forward(prompt, messages, **kwargs)
        try:
            with self._span() as span, metrics.llm_call(self.model):
                result = _checked(execute(self, prepare(self, prompt, messages, kwargs, direct=True)))
                _usage_attributes(span, result)
        except Exception as exc:
            if self._outcome(exc):
                assert self.fallback is not None
                return self.fallback.forward(prompt, messages, **kwargs)
            raise
        except BaseException:
            if self.breaker is not None:
                self.breaker.released()  # interrupted: says nothing about the provider, and frees the probe
            raise
        self._outcome(None)
        return result

    async def aforward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        from dspy.clients.execution import aexecute, prepare

        other = self._guard(kwargs)
        if other is not None:
            return await other.aforward(prompt, messages, **kwargs)
        try:
            with self._span() as span, metrics.llm_call(self.model):
                call = await asyncio.to_thread(prepare, self, prompt, messages, kwargs, asynchronous=True, direct=True)
                result = _checked(await aexecute(self, call))
                _usage_attributes(span, result)
        except Exception as exc:
            if self._outcome(exc):
                assert self.fallback is not None
                return await self.fallback.aforward(prompt, messages, **kwargs)
            raise
        except BaseException:
            if self.breaker is not None:
                self.breaker.released()  # cancelled: says nothing about the provider, and frees the probe
            raise
        self._outcome(None)
        return result

    def _span(self) -> AbstractContextManager[Any]:
        return tracing.span(
            "llm.call", {"gen_ai.request.model": self.model, "gen_ai.system": metrics.provider_label(self.model)}
        )


def _usage_attributes(span: Any, response: Any) -> None:
    if span is None:
        return
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
    completion = getattr(usage, "completion_tokens", None) if usage is not None else None
    tracing.set_attributes(span, {"gen_ai.usage.input_tokens": prompt, "gen_ai.usage.output_tokens": completion})


def usage_from(tokens: Mapping[str, Mapping[str, Any]]) -> Usage:
    """Sum DSPy's per-model usage (``UsageTracker.get_total_tokens()``) into one :class:`Usage`."""
    usage = Usage()
    for entry in tokens.values():
        prompt = int(entry.get("prompt_tokens") or 0)
        completion = int(entry.get("completion_tokens") or 0)
        total = int(entry.get("total_tokens") or prompt + completion)
        usage = usage + Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
    return usage


class LLMRouter:
    """Builds and caches one ``dspy.LM`` per (model, temperature, max_tokens); never opens a connection itself."""

    def __init__(self, settings: LLMSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._lms: OrderedDict[tuple[str, float, int, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown)

    def fallback_for(self, stage: Stage, agent: AgentConfiguration | None = None) -> str | None:
        """The model used for ``stage`` while its own model's provider is down: the agent's for the stage, else
        ``llm.fallback_model``; None when none is configured (or it is the primary itself)."""
        candidates = [agent.fallback_models.get(stage) if agent else None, self.settings.fallback_model]
        fallback = next((m.strip() for m in candidates if m and m.strip()), None)
        return None if fallback == self.model_for(stage, agent) else fallback

    def model_for(self, stage: Stage, agent: AgentConfiguration | None = None) -> str | None:
        s = self.settings
        fast = stage in FAST_STAGES
        agent_fast = agent.fast_model if agent else None
        agent_chat = agent.chat_model if agent else None
        if fast:
            candidates = [s.override_model, agent_fast, s.fast_model, agent_chat, s.chat_model, s.model]
        else:
            candidates = [s.override_model, agent_chat, s.chat_model, s.model]
        return next((m.strip() for m in candidates if m and m.strip()), None)

    def is_configured(self, agent: AgentConfiguration | None = None, stage: Stage = "generation") -> bool:
        try:
            self.lm(stage, agent)
        except LLMNotConfiguredError:
            return False
        return True

    def describe(self, agent: AgentConfiguration | None = None) -> dict[str, str | None]:
        stages: tuple[Stage, ...] = ("query_processing", "generation", "retrieval_judge", "suggestions")
        return {stage: self.model_for(stage, agent) for stage in stages}

    def connection(self, model: str) -> dict[str, Any]:
        """LiteLLM keyword arguments (api_key, api_base) for ``model``; raises when a needed key is missing."""
        s = self.settings
        provider = provider_of(model)
        kwargs: dict[str, Any] = {}
        base = s.api_base or (s.openai_base_url if provider == "openai" else "")
        if base:
            kwargs["api_base"] = base
        key = s.api_key(model, self._environ)
        hint = s.key_hint(model)
        if key:
            kwargs["api_key"] = key
        elif hint and base:
            kwargs["api_key"] = "unused"  # local OpenAI-compatible servers need no key, the SDK needs one
        elif hint:
            raise LLMNotConfiguredError(f"model {model!r} needs an API key: {hint}", model=model)
        return kwargs

    def lm(
        self,
        stage: Stage,
        agent: AgentConfiguration | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Any:
        """The ``dspy.LM`` for ``stage`` of ``agent``; raises :class:`LLMNotConfiguredError` naming what to set.

        ``temperature``/``max_tokens`` (a request's own values) win over the agent's and the global settings;
        ``max_tokens`` is capped by the configured one, so a client cannot raise the deployment's spending limit.
        """
        model = self.model_for(stage, agent)
        if model is None:
            who = f" of agent {agent.id!r}" if agent else ""
            raise LLMNotConfiguredError(f"no language model is configured for {stage}{who}: {NOT_CONFIGURED_HINT}")
        configured_max = agent.max_tokens if agent and agent.max_tokens is not None else self.settings.max_tokens
        if temperature is None:
            temperature = agent.temperature if agent and agent.temperature is not None else self.settings.temperature
        max_tokens = min(max_tokens, configured_max) if max_tokens is not None else configured_max
        fallback = self.fallback_for(stage, agent)
        primary = self._build(model, temperature, max_tokens, fallback or "")
        if fallback is not None and primary.fallback is None:
            try:
                primary.fallback = self._build(fallback, temperature, max_tokens, "")
            except LLMNotConfiguredError as exc:
                raise LLMNotConfiguredError(f"the fallback model of {stage}: {exc}", model=fallback) from exc
        return primary

    def lm_for_model(self, model: str, *, temperature: float = 0.0) -> Any:
        """A ``dspy.LM`` for ``model`` itself (the evaluation's judge, an optimizer's teacher), with the same
        keys, endpoint, timeout and circuit breaker as the stages' models."""
        return self._build(model, temperature, self.settings.max_tokens, "")

    def _build(self, model: str, temperature: float, max_tokens: int, fallback: str) -> CheckedLM:
        key = (model, temperature, max_tokens, fallback)
        with self._lock:
            cached: CheckedLM | None = self._lms.get(key)
            if cached is not None:
                self._lms.move_to_end(key)
                return cached
        connection = self.connection(model)
        lm = CheckedLM(
            model,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=self.settings.cache,
            num_retries=0,  # retried by llm_calls.retrying, which honours Retry-After and counts attempts
            engine=self.settings.engine,
            timeout=self.settings.timeout,
            **connection,
            # LiteLLM: turn off the OpenAI SDK's own retries too. lm15 has none.
            **({"max_retries": 0} if self.settings.engine == "litellm" else {}),
        )
        lm.breaker = self.breakers.for_provider(provider_of(model))
        with self._lock:
            self._lms[key] = lm
            while len(self._lms) > MAX_CACHED_LMS:
                self._lms.popitem(last=False)
        return lm
