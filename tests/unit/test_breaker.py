"""The circuit breaker's states (closed -> open -> half-open -> closed/open), the request deadline in the retry
policy, and the choice of fallback model. A fake clock: no sleeping."""

from __future__ import annotations

import time

import pytest

from cairo_coder import observe
from cairo_coder.breaker import Breakers, CircuitBreaker
from cairo_coder.config import load_settings
from cairo_coder.llm import LLMRouter
from cairo_coder.llm_calls import final_error, retry_delay
from cairo_coder.llm_errors import LLMCircuitOpenError, LLMNotConfiguredError, LLMRateLimitError, LLMUnavailableError
from cairo_coder.types import AgentConfiguration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(provider: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("cairo_coder_llm_circuit_open", {"provider": provider})


def test_the_breaker_opens_after_failures_in_a_row_then_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker("prov-a", failures=3, cooldown=30, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.failed()
    breaker.before_call()
    breaker.succeeded()  # a success resets the count: failures must be in a row
    for _ in range(3):
        breaker.before_call()
        breaker.failed()
    assert breaker.state == "open" and breaker.is_open() and gauge("prov-a") == 1
    clock.now += 10
    with pytest.raises(LLMCircuitOpenError) as refused:
        breaker.before_call("prov-a/model")
    assert refused.value.status == 503 and refused.value.retry_after == 20 and "prov-a" in str(refused.value)
    clock.now += 20
    assert breaker.state == "half_open" and not breaker.is_open()
    breaker.before_call()  # the probe
    assert breaker.is_open()  # while the probe is out, every other call is refused
    with pytest.raises(LLMCircuitOpenError):
        breaker.before_call()
    breaker.failed()  # the probe failed: open for another cooldown
    assert breaker.state == "open"
    clock.now += 30
    breaker.before_call()
    breaker.succeeded()
    assert breaker.state == "closed" and gauge("prov-a") == 0
    breaker.before_call()


def test_a_probe_that_says_nothing_lets_another_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("prov-b", failures=1, cooldown=5, clock=clock)
    breaker.failed()
    clock.now += 5
    breaker.before_call()
    breaker.released()  # cancelled, or a 4xx: not a verdict on the provider
    breaker.before_call()
    assert breaker.state == "half_open"


def test_zero_failures_turns_the_breaker_off() -> None:
    breaker = CircuitBreaker("prov-c", failures=0, cooldown=5)
    for _ in range(100):
        breaker.failed()
        breaker.before_call()
    assert breaker.state == "closed"


def test_one_breaker_per_provider_shared_by_copies() -> None:
    import copy

    breakers = Breakers(2, 5)
    assert breakers.for_provider("openai") is breakers.for_provider("openai")
    assert breakers.for_provider("openai") is not breakers.for_provider("anthropic")
    assert copy.deepcopy(breakers.for_provider("openai")) is breakers.for_provider("openai")
    assert breakers.states() == {"openai": "closed", "anthropic": "closed"}


def test_no_retry_starts_that_the_request_deadline_would_cut() -> None:
    error = LLMUnavailableError("down", retry_after=2.0)
    assert retry_delay(error, 0, 3, 20) == 2.0  # outside a request: no deadline
    record = observe.RequestRecord("req-deadline")
    record.deadline = time.perf_counter() + 1.0
    with observe.request(record):
        assert retry_delay(error, 0, 3, 20) is None  # a 2 s wait cannot end before the deadline
        assert retry_delay(LLMUnavailableError("down", retry_after=0.1), 0, 3, 20) == 0.1
        message = str(final_error(error, 1, out_of_time=True))
        assert "request deadline" in message and "1 attempt" in message
        assert retry_delay(error, 0, 3, 20, within_deadline=False) == 2.0
    assert retry_delay(LLMCircuitOpenError("paused", retry_after=5), 0, 3, 20) is None  # never retried
    assert retry_delay(LLMRateLimitError("slow down"), 3, 3, 20) is None


def test_fallback_model_per_agent_and_stage() -> None:
    settings = load_settings(
        environ={
            "CAIRO_CODER_LLM__CHAT_MODEL": "openai/gpt-4o",
            "CAIRO_CODER_LLM__FAST_MODEL": "openai/gpt-4o-mini",
            "CAIRO_CODER_LLM__FALLBACK_MODEL": "anthropic/claude-sonnet-4-5",
        }
    )
    router = LLMRouter(settings.llm, {"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-b"})
    agent = AgentConfiguration(id="a", name="A", fallback_models={"query_processing": "gemini/gemini-2.5-flash"})
    assert router.fallback_for("generation", agent) == "anthropic/claude-sonnet-4-5"
    assert router.fallback_for("query_processing", agent) == "gemini/gemini-2.5-flash"
    assert router.fallback_for("query_processing") == "anthropic/claude-sonnet-4-5"
    lm = router.lm("generation", agent)
    assert lm.fallback is not None and lm.fallback.model == "anthropic/claude-sonnet-4-5"
    assert lm.breaker is router.breakers.for_provider("openai")
    assert lm.fallback.breaker is router.breakers.for_provider("anthropic")
    # A fallback whose key is missing is named when the stage is asked for, not at the first outage.
    with pytest.raises(LLMNotConfiguredError, match=r"fallback model of query_processing.*GEMINI_API_KEY"):
        router.lm("query_processing", agent)
    plain = LLMRouter(load_settings(environ={"CAIRO_CODER_LLM__MODEL": "openai/gpt-4o"}).llm, {"OPENAI_API_KEY": "k"})
    assert plain.fallback_for("generation") is None and plain.lm("generation").fallback is None
