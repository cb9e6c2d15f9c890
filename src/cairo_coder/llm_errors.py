"""Language-model errors: the precise types (a branch of the tree in errors.py) and the one translation of DSPy,
LiteLLM and OpenAI-SDK exceptions into them (:func:`translate_error`)."""

from __future__ import annotations

import logging
import re

from cairo_coder.errors import CairoCoderError

logger = logging.getLogger("cairo_coder.llm")


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


class LLMCircuitOpenError(LLMUnavailableError):
    """The provider failed too often in a row: its calls are paused for a while (breaker.py), answered at once."""

    kind = "llm_circuit_open"


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


__all__ = [
    "MAX_DETAIL",
    "RETRYABLE",
    "LLMAuthError",
    "LLMCircuitOpenError",
    "LLMError",
    "LLMIncompleteError",
    "LLMNotConfiguredError",
    "LLMOutputError",
    "LLMRateLimitError",
    "LLMRequestError",
    "LLMUnavailableError",
    "provider_detail",
    "retry_after_of",
    "translate_error",
]
