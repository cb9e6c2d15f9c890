"""Server pieces that need no running server: strict header flags, the error table, the concurrency limiter."""

from __future__ import annotations

import pytest

from cairo_coder.agents import UnknownAgentError
from cairo_coder.errors import CairoCoderError, InvalidRequestError
from cairo_coder.llm_errors import LLMNotConfiguredError, LLMOutputError, LLMRateLimitError
from cairo_coder.server.errors import APIError, from_exception
from cairo_coder.server.schemas import ChatMessage, parse_flag
from cairo_coder.server.state import ConcurrencyLimiter
from cairo_coder.store.errors import DatabaseUnavailableError


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("1", True), ("YES", True), (" Yes ", True), ("false", False), ("0", False), ("No", False)],
)
def test_flags_parse_strictly(raw: str, value: bool) -> None:
    assert parse_flag(raw) is value


@pytest.mark.parametrize("raw", ["", "on", "2", "truthy", "y"])
def test_other_flag_values_are_errors(raw: str) -> None:
    with pytest.raises(ValueError, match="expected true/1/yes or false/0/no"):
        parse_flag(raw)


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (UnknownAgentError("nope", ["cairo-coder"]), 404, "not_found_error"),
        (LLMRateLimitError("slow down"), 429, "rate_limit_error"),
        (LLMNotConfiguredError("no model"), 503, "service_unavailable"),
        (DatabaseUnavailableError("down"), 503, "service_unavailable"),
        (LLMOutputError("garbage"), 502, "server_error"),
        (CairoCoderError("a bug"), 500, "server_error"),
        (InvalidRequestError("empty"), 400, "invalid_request_error"),
    ],
)
def test_error_kinds_map_to_statuses(error: CairoCoderError, status: int, error_type: str) -> None:
    api = from_exception(error)
    assert (api.status, api.type, api.code) == (status, error_type, error.kind)
    assert set(api.payload()["error"]) == {"message", "type", "code", "param"}
    assert ("retry-after" in api.headers) == (status in (429, 503))


def test_a_providers_retry_after_is_passed_on() -> None:
    assert from_exception(LLMRateLimitError("slow down", retry_after=7.2)).headers == {"retry-after": "8"}


def test_unexpected_exceptions_become_500_without_details() -> None:
    error = from_exception(RuntimeError("secret internals"))
    assert error.status == 500 and "secret internals" not in error.message and "RuntimeError" in error.message


def test_concurrency_limiter_refuses_beyond_its_limit_and_gives_slots_back() -> None:
    limiter = ConcurrencyLimiter(2)
    limiter.acquire()
    limiter.acquire()
    with pytest.raises(APIError) as caught:
        limiter.acquire()
    assert caught.value.status == 429 and limiter.refused == 1
    limiter.release()
    limiter.acquire()
    assert limiter.in_flight == 2


def test_chat_messages_flatten_text_parts_and_drop_nul() -> None:
    message = ChatMessage.model_validate(
        {
            "role": "developer",
            "content": [{"type": "text", "text": "be\x00 terse"}, {"type": "image_url"}, {"type": "text", "text": "!"}],
        }
    )
    assert message.to_message().role.value == "system"
    assert message.text() == "be terse!"
