"""One retry policy for every language-model call (checked responses: ``llm.CheckedLM``).

:func:`retry_delay` is the retry policy of every stage: rate limits, 5xx, timeouts and transport errors are
retried ``llm.retries`` times, after the provider's Retry-After when it sends one (else jittered exponential
backoff), unless that wait is longer than ``llm.max_retry_wait``: then the client gets the error, and the
Retry-After, at once. A stream is never retried after any of it was shown.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cairo_coder import metrics, observe
from cairo_coder.llm_errors import RETRYABLE, LLMCircuitOpenError, translate_error

T = TypeVar("T")


def retry_delay(
    exc: BaseException, attempt: int, retries: int, max_wait: float, *, within_deadline: bool = True
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when ``exc`` must be raised now (not retryable, no
    retries left, a wait beyond ``max_wait``, or a retry that could not end before the request's deadline)."""
    error = translate_error(exc)
    if error is None or not isinstance(error, RETRYABLE) or isinstance(error, LLMCircuitOpenError):
        return None
    if attempt >= retries:
        return None
    if error.retry_after is not None:
        wait = float(error.retry_after)
        if wait > max_wait:
            return None
    else:
        wait = min(2.0**attempt * (0.75 + 0.5 * random.random()), max_wait)  # 1 s, 2 s, 4 s ... jittered ±25%
    left = observe.remaining() if within_deadline else None
    if left is not None and wait >= left:
        return None
    return wait


def final_error(exc: BaseException, attempts: int, *, out_of_time: bool = False) -> BaseException:
    """The error to raise after ``attempts`` attempts: ours, saying how many were made (and, ``out_of_time``,
    that the request's deadline stopped the retries)."""
    error = translate_error(exc)
    if error is None:
        return exc
    if isinstance(error, RETRYABLE) and not isinstance(error, LLMCircuitOpenError) and (attempts > 1 or out_of_time):
        wait = f"; retry after {error.retry_after:g} s" if error.retry_after else ""
        why = ": the request deadline (llm.request_deadline) leaves no time for another" if out_of_time else ""
        error = type(error)(
            f"{error} (gave up after {attempts} attempt{'s' if attempts > 1 else ''}{why}{wait})",
            model=error.model,
            retry_after=error.retry_after,
        )
    return error


async def wait_before_retry(exc: Exception, attempt: int, retries: int, max_wait: float) -> None:
    """After attempt ``attempt`` failed with ``exc``: wait the policy's delay, or raise the final error (ours, saying
    how many attempts were made). The one loop body of every retry, streamed generation's included."""
    delay = retry_delay(exc, attempt, retries, max_wait)
    if delay is None:
        out_of_time = retry_delay(exc, attempt, retries, max_wait, within_deadline=False) is not None
        raised = final_error(exc, attempt + 1, out_of_time=out_of_time)
        if raised is exc:
            raise exc  # not ours to translate: unchanged, its own cause kept
        raise raised from exc
    metrics.LLM_RETRIES.labels(metrics.provider_label(getattr(exc, "model", None))).inc()
    await asyncio.sleep(delay)


async def retrying(call: Callable[[], Awaitable[T]], retries: int, max_wait: float) -> T:
    """``call()`` under the retry policy; the last failure is raised as our precise :class:`LLMError`."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            await wait_before_retry(exc, attempt, retries, max_wait)
            attempt += 1


__all__ = ["final_error", "retry_delay", "retrying", "wait_before_retry"]
