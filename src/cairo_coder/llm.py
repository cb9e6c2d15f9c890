"""LLM router: which ``dspy.LM`` (LiteLLM underneath) serves each stage of each agent, and what its errors mean.

Model choice, most specific first: ``CAIRO_CODER_MODEL`` (forces every stage) > the agent's own model for the
stage > ``llm.chat_model`` / ``llm.fast_model`` > ``llm.model``. Fast stages (query processing, retrieval judge,
suggestions) fall back to the agent's and then the global chat model, so one configured model serves everything.

Retries are DSPy's: rate limits, 5xx, timeouts and transport errors are retried ``llm.retries`` times with
exponential backoff (or the provider's Retry-After), and never after any token of a stream was shown. LiteLLM's
and the OpenAI SDK's own retries are switched off so that one setting controls the number of attempts.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal

from cairo_coder.config import LLMSettings, provider_of
from cairo_coder.types import AgentConfiguration, Usage

Stage = Literal["query_processing", "generation", "retrieval_judge", "suggestions"]
FAST_STAGES: frozenset[str] = frozenset({"query_processing", "retrieval_judge", "suggestions"})

MAX_CACHED_LMS = 32

NOT_CONFIGURED_HINT = (
    "set CAIRO_CODER_MODEL to a LiteLLM model string (e.g. openai/gpt-4o-mini, anthropic/claude-sonnet-4-5, "
    "gemini/gemini-2.5-flash, ollama_chat/llama3.1), or llm.model / llm.chat_model in cairo-coder.toml, together "
    "with the provider's key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY) or OPENAI_BASE_URL for an "
    "OpenAI-compatible server"
)


class LLMError(Exception):
    """A language-model failure the caller can act on. ``kind`` is stable; the server maps it to a status."""

    kind = "llm_error"

    def __init__(self, message: str, *, model: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.retry_after = retry_after


class LLMNotConfiguredError(LLMError):
    """No model (or no API key for it) is configured; the message names the settings to provide."""

    kind = "llm_not_configured"


class LLMRateLimitError(LLMError):
    """The provider kept rate-limiting the request after every retry."""

    kind = "llm_rate_limited"


class LLMUnavailableError(LLMError):
    """The provider failed (5xx, timeout, connection) after every retry."""

    kind = "llm_unavailable"


class LLMAuthError(LLMError):
    """The provider rejected the credentials."""

    kind = "llm_auth"


class LLMRequestError(LLMError):
    """The provider rejected the request (bad model name, context too long, content policy...)."""

    kind = "llm_bad_request"


class LLMOutputError(LLMError):
    """The model's answer could not be parsed into the program's output fields."""

    kind = "llm_bad_output"


def translate_error(exc: BaseException) -> LLMError | None:
    """Map DSPy/LiteLLM exceptions to our precise types (None: not a language-model error)."""
    if isinstance(exc, LLMError):
        return exc
    from dspy.utils import exceptions as dx

    model = getattr(exc, "model", None)
    retry_after = getattr(exc, "retry_after", None)
    detail = getattr(exc, "message", None) or str(exc)
    where = f" ({model})" if model else ""
    if isinstance(exc, dx.LMRateLimitError):
        return LLMRateLimitError(f"the language model{where} is rate-limiting requests: {detail}",
                                 model=model, retry_after=retry_after)
    if isinstance(exc, dx.LMAuthError | dx.LMBillingError | dx.LMNotConfiguredError):
        return LLMAuthError(f"the language model provider{where} rejected the credentials: {detail}", model=model)
    if isinstance(exc, dx.LMInvalidRequestError):
        return LLMRequestError(f"the language model provider{where} rejected the request: {detail}", model=model)
    if isinstance(exc, dx.LMTimeoutError | dx.LMServerError | dx.LMTransportError | dx.LMProviderError):
        return LLMUnavailableError(f"the language model{where} is unavailable: {detail}", model=model)
    if isinstance(exc, dx.AdapterParseError):
        return LLMOutputError(f"the language model's answer could not be parsed: {str(exc)[:300]}", model=model)
    if isinstance(exc, dx.LMError):
        return LLMUnavailableError(f"the language model call failed{where}: {detail}", model=model)
    return None


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
        self._lms: OrderedDict[tuple[str, float, int], Any] = OrderedDict()
        self._lock = threading.Lock()

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

    def lm(self, stage: Stage, agent: AgentConfiguration | None = None, *, temperature: float | None = None,
           max_tokens: int | None = None) -> Any:
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
        key = (model, temperature, max_tokens)
        with self._lock:
            lm = self._lms.get(key)
            if lm is not None:
                self._lms.move_to_end(key)
                return lm
        connection = self.connection(model)
        import dspy

        lm = dspy.LM(
            model,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=self.settings.cache,
            num_retries=self.settings.retries,
            engine=self.settings.engine,
            timeout=self.settings.timeout,
            **connection,
            # LiteLLM: turn off the OpenAI SDK's own retries, DSPy retries (num_retries) instead. lm15 has none.
            **({"max_retries": 0} if self.settings.engine == "litellm" else {}),
        )
        with self._lock:
            self._lms[key] = lm
            while len(self._lms) > MAX_CACHED_LMS:
                self._lms.popitem(last=False)
        return lm
