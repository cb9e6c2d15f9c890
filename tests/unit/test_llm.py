"""LLM router: model choice per agent and stage, connection settings, clear errors."""

from __future__ import annotations

import pytest

from cairo_coder.config import load_settings
from cairo_coder.llm import LLMRouter
from cairo_coder.llm_errors import LLMNotConfiguredError, translate_error
from cairo_coder.types import AgentConfiguration


def router(**env: str) -> LLMRouter:
    settings = load_settings(environ=env)
    return LLMRouter(settings.llm, environ=env)


def test_nothing_configured_names_the_settings_to_provide() -> None:
    r = router()
    assert r.model_for("generation") is None and not r.is_configured()
    with pytest.raises(LLMNotConfiguredError) as caught:
        r.lm("generation")
    message = str(caught.value)
    assert "CAIRO_CODER_MODEL" in message and "llm.chat_model" in message and "OPENAI_API_KEY" in message


def test_per_stage_and_per_agent_models() -> None:
    r = router(
        CAIRO_CODER_LLM__CHAT_MODEL="anthropic/claude-strong",
        CAIRO_CODER_LLM__FAST_MODEL="gemini/flash",
        ANTHROPIC_API_KEY="a",
        GEMINI_API_KEY="g",
    )
    assert r.model_for("generation") == "anthropic/claude-strong"
    assert r.model_for("query_processing") == "gemini/flash"
    agent = AgentConfiguration(id="x", name="X", chat_model="openai/gpt-agent")
    assert r.model_for("generation", agent) == "openai/gpt-agent"
    assert r.model_for("retrieval_judge", agent) == "gemini/flash"
    # Only a chat model: fast stages use it too.
    solo = router(CAIRO_CODER_LLM__MODEL="ollama_chat/llama3.1")
    assert solo.describe() == dict.fromkeys(
        ("query_processing", "generation", "retrieval_judge", "suggestions"), "ollama_chat/llama3.1"
    )


def test_cairo_coder_model_overrides_every_stage_of_every_agent() -> None:
    r = router(CAIRO_CODER_MODEL="openai/gpt-4o-mini", CAIRO_CODER_LLM__CHAT_MODEL="anthropic/x", OPENAI_API_KEY="sk")
    agent = AgentConfiguration(id="x", name="X", chat_model="gemini/y", fast_model="gemini/z")
    assert set(r.describe(agent).values()) == {"openai/gpt-4o-mini"}


def test_openai_base_url_points_openai_models_at_a_compatible_server() -> None:
    r = router(CAIRO_CODER_MODEL="openai/local-model", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    lm = r.lm("generation")
    assert lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert lm.kwargs["api_key"] == "unused"  # a local server needs no key
    assert r.lm("generation") is lm, "LMs are cached"
    # DSPy does not retry: llm_calls.retrying does, after Retry-After (tests/unit/test_llm_calls.py)
    assert lm.kwargs["temperature"] == 0.0 and lm.kwargs["max_tokens"] == 4096 and lm.num_retries == 0


def test_a_missing_provider_key_is_named() -> None:
    r = router(CAIRO_CODER_MODEL="anthropic/claude-x")
    with pytest.raises(LLMNotConfiguredError, match="ANTHROPIC_API_KEY"):
        r.lm("generation")
    configured = router(CAIRO_CODER_MODEL="anthropic/claude-x", ANTHROPIC_API_KEY="k")
    assert configured.lm("generation").kwargs["api_key"] == "k"


def test_agent_temperature_and_max_tokens() -> None:
    r = router(CAIRO_CODER_MODEL="openai/m", OPENAI_API_KEY="sk", CAIRO_CODER_LLM__TEMPERATURE="0.3")
    agent = AgentConfiguration(id="x", name="X", temperature=0.7, max_tokens=1000)
    assert r.lm("generation", agent).kwargs["temperature"] == 0.7
    assert r.lm("generation", agent).kwargs["max_tokens"] == 1000
    assert r.lm("generation").kwargs["temperature"] == 0.3


def test_dspy_errors_map_to_precise_types() -> None:
    from dspy.utils import exceptions as dx

    assert translate_error(dx.LMRateLimitError("slow down", model="m")).kind == "llm_rate_limited"
    assert translate_error(dx.LMServerError("boom")).kind == "llm_unavailable"
    assert translate_error(dx.LMTimeoutError("late")).kind == "llm_unavailable"
    assert translate_error(dx.LMAuthError("bad key")).kind == "llm_auth"
    assert translate_error(dx.ContextWindowExceededError(model="m")).kind == "llm_bad_request"
    assert translate_error(ValueError("x")) is None


def test_invalid_llm_settings_fail_at_load() -> None:
    from cairo_coder.config import ConfigError

    with pytest.raises(ConfigError, match=r"llm\.temperature"):
        load_settings(environ={"CAIRO_CODER_LLM__TEMPERATURE": "5"})
    with pytest.raises(ConfigError, match="default_agent"):
        load_settings(environ={"CAIRO_CODER_PIPELINE__DEFAULT_AGENT": "ghost"})
