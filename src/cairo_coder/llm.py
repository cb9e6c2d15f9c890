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
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import dspy

from cairo_coder import metrics
from cairo_coder.config import LLMSettings, provider_of
from cairo_coder.errors import CairoCoderError
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


class LLMError(CairoCoderError):
    """A language-model failure the caller can act on (the tree: errors.py)."""

    kind = "llm_error"
    status = 503

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
    status = 429


class LLMUnavailableError(LLMError):
    """The provider failed (5xx, timeout, connection) after every retry."""

    kind = "llm_unavailable"


class LLMAuthError(LLMError):
    """The provider rejected the credentials."""

    kind = "llm_auth"


class LLMRequestError(LLMError):
    """The provider rejected the request (bad model name, context too long, content policy...)."""

    kind = "llm_bad_request"
    status = 400


class LLMOutputError(LLMError):
    """The model's answer could not be used: no choices, or not parseable into the program's output fields."""

    kind = "llm_bad_output"
    status = 502


class LLMIncompleteError(LLMError):
    """The model's streamed answer broke off after part of it was shown (connection lost mid-stream)."""

    kind = "llm_incomplete"
    status = 502


RETRYABLE: tuple[type[LLMError], ...] = (LLMRateLimitError, LLMUnavailableError)
_SDK_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)?(?:(?:litellm\.\w+|\w*(?:Error|Exception))\s*[:-]\s*)*")
MAX_DETAIL = 240


def provider_detail(exc: BaseException) -> str:
    """What the provider said, without the client libraries' class names, retry counters and fix-it hints."""
    text = str(getattr(exc, "message", None) or exc)
    text = text.split("\n\n  To fix:", 1)[0].split("LiteLLM Retried:", 1)[0]
    text = _SDK_PREFIX.sub("", text.strip()).strip().rstrip(".")
    text = " ".join(text.split())
    return text[:MAX_DETAIL] + ("..." if len(text) > MAX_DETAIL else "") if text else type(exc).__name__


def translate_error(exc: BaseException) -> LLMError | None:
    """Map DSPy/LiteLLM exceptions to our precise types (None: not a language-model error). Messages quote the
    provider's words, never a client library's class names or the model's raw output."""
    if isinstance(exc, LLMError):
        return exc
    from dspy.utils import exceptions as dx

    model = getattr(exc, "model", None)
    where = f" ({model})" if model else ""
    if isinstance(exc, dx.AdapterParseError):
        logger.debug("unparseable model output: %s", exc)
        signature = getattr(exc, "signature", None)
        fields = ", ".join(signature.output_fields) if signature is not None else "?"
        return LLMOutputError(
            f"the language model's answer{where} did not have the expected fields ({fields})", model=model
        )
    if not isinstance(exc, dx.LMError):
        wrapped = _as_dspy_error(exc)
        if wrapped is None:
            return None
        exc = wrapped
    detail = provider_detail(exc)
    retry_after = retry_after_of(exc)
    if isinstance(exc, dx.LMRateLimitError):
        return LLMRateLimitError(
            f"the language model provider{where} is rate-limiting requests: {detail}",
            model=model,
            retry_after=retry_after,
        )
    if isinstance(exc, dx.LMAuthError | dx.LMBillingError | dx.LMNotConfiguredError):
        return LLMAuthError(f"the language model provider{where} rejected the credentials: {detail}", model=model)
    if isinstance(exc, dx.LMInvalidRequestError):
        return LLMRequestError(f"the language model provider{where} rejected the request: {detail}", model=model)
    if isinstance(exc, dx.LMTimeoutError):
        return LLMUnavailableError(
            f"the language model{where} did not answer in time: {detail}", model=model, retry_after=retry_after
        )
    return LLMUnavailableError(
        f"the language model{where} is unavailable: {detail}", model=model, retry_after=retry_after
    )


def _as_dspy_error(exc: BaseException) -> BaseException | None:
    """A LiteLLM, OpenAI-SDK or lm15 exception that escaped DSPy's engine boundary (a stream that broke while
    being read, for one), as the DSPy error the boundary would have raised; None for anything else."""
    from dspy import lm15

    module = type(exc).__module__
    if not (isinstance(exc, lm15.LM15Error) or module.startswith(("litellm", "openai"))):
        return None
    from dspy.clients.engines.litellm_errors import to_lm15_error
    from dspy.clients.errors import wrap_error

    model = getattr(exc, "model", None) or ""
    canonical = exc if isinstance(exc, lm15.LM15Error) else to_lm15_error(exc, model=model)
    wrapped: BaseException = wrap_error(canonical, model=model)
    if wrapped is not exc and wrapped.__cause__ is None:
        wrapped.__cause__ = exc
    return wrapped


def retry_after_of(exc: BaseException) -> float | None:
    """The provider's Retry-After (seconds), found on the exception or the ones it wraps, or None."""
    from dspy.clients._http import finite_seconds, retry_after_seconds

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        value: float | None = finite_seconds(getattr(seen, "retry_after", None))
        if value is not None:
            return value
        for headers in (
            getattr(seen, "litellm_response_headers", None),
            getattr(getattr(seen, "response", None), "headers", None),
            getattr(seen, "headers", None),
        ):
            if headers is not None and hasattr(headers, "get"):
                value = retry_after_seconds(headers.get("retry-after") or headers.get("Retry-After"))
                if value is not None:
                    return value
        seen = seen.__cause__ or seen.__context__
    return None


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
    """``dspy.LM`` whose responses are checked: a response without choices (a 200 with ``choices: []``) is a
    provider failure, not an empty answer; one cut at ``max_tokens`` (``finish_reason: "length"``) is noted in the
    request's :class:`CallOutcome`, so that transports report ``length`` instead of ``stop``.

    The bodies are DSPy 3.4's ``LM.forward``/``aforward`` with the call result inspected before it is projected
    to the legacy response shape (which loses the native finish reason)."""

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        from dspy.clients.execution import execute, prepare

        with metrics.llm_call(self.model):
            return _checked(execute(self, prepare(self, prompt, messages, kwargs, direct=True)))

    async def aforward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        from dspy.clients.execution import aexecute, prepare

        with metrics.llm_call(self.model):
            call = await asyncio.to_thread(prepare, self, prompt, messages, kwargs, asynchronous=True, direct=True)
            return _checked(await aexecute(self, call))


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
        key = (model, temperature, max_tokens)
        with self._lock:
            lm = self._lms.get(key)
            if lm is not None:
                self._lms.move_to_end(key)
                return lm
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
        with self._lock:
            self._lms[key] = lm
            while len(self._lms) > MAX_CACHED_LMS:
                self._lms.popitem(last=False)
        return lm
