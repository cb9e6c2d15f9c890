"""Circuit breakers, one per language-model provider: while a provider keeps failing, its calls fail at once.

A provider that answers 5xx, times out or refuses connections costs every request the whole retry schedule
(seconds to minutes) before the client hears 503. After ``llm.breaker_failures`` such failures in a row the
breaker *opens*: calls to that provider fail immediately with :class:`LLMCircuitOpenError` (503, with a
Retry-After of the time left), or go to the stage's fallback model when one is configured (llm.py). After
``llm.breaker_cooldown`` seconds it is *half-open*: one call (the probe) goes through; its success closes the
breaker, its failure opens it for another cooldown. Rate limits (429) and rejected requests (4xx) say nothing
about the provider being down and leave the breaker as it is.

The breakers belong to an :class:`~cairo_coder.llm.LLMRouter` (one per server process); the state is per process,
as each process sees its own failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from cairo_coder import metrics
from cairo_coder.llm_errors import LLMCircuitOpenError

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """The breaker of one provider. Thread-safe: LLM calls run on the event loop and in worker threads."""

    def __init__(
        self, provider: str, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.provider = provider
        self.threshold = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    def __deepcopy__(self, memo: dict[int, object]) -> CircuitBreaker:
        return self  # DSPy copies LMs; a copy must share its provider's breaker, not start a closed one

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown else "open"

    def is_open(self) -> bool:
        """True while calls would be refused (open, or half-open with the probe already out)."""
        with self._lock:
            state = self._state()
            return state == "open" or (state == "half_open" and self._probing)

    def before_call(self, model: str | None = None) -> None:
        """Raise :class:`LLMCircuitOpenError` when the call must not go out; in the half-open state, let exactly
        one call through as the probe."""
        if self.threshold <= 0:
            return
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._probing:
                self._probing = True
                return
            assert self._opened_at is not None
            left = max(self.cooldown - (self._clock() - self._opened_at), 1.0)
        raise LLMCircuitOpenError(
            f"the language model provider {self.provider!r} is failing ({self.threshold} failures in a row): "
            f"calls to it are paused; the next try is in {left:.0f} s",
            model=model,
            retry_after=round(left),
        )

    def succeeded(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._probing = False
        if was_open:
            metrics.LLM_CIRCUIT_OPEN.labels(self.provider).set(0)

    def failed(self) -> None:
        """A failure that says the provider is down (5xx, timeout, connection)."""
        if self.threshold <= 0:
            return
        with self._lock:
            self._failures += 1
            probe_failed = self._probing
            self._probing = False
            opens = probe_failed or (self._opened_at is None and self._failures >= self.threshold)
            if opens:
                self._opened_at = self._clock()
        if opens:
            metrics.LLM_CIRCUIT_OPEN.labels(self.provider).set(1)

    def released(self) -> None:
        """The probe ended without saying anything about the provider (cancelled, rejected request): another
        call may probe."""
        with self._lock:
            self._probing = False


class Breakers:
    """One :class:`CircuitBreaker` per provider, created on first use."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def for_provider(self, provider: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(provider)
            if breaker is None:
                breaker = CircuitBreaker(provider, self.failures, self.cooldown, self._clock)
                self._breakers[provider] = breaker
            return breaker

    def states(self) -> dict[str, State]:
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.provider: b.state for b in breakers}


__all__ = ["Breakers", "CircuitBreaker", "State"]
