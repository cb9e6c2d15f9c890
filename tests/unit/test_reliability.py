"""Reliability building blocks: storable text, the LLM retry policy and messages, the database's
connection-level failures, and a status for every error kind."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest
from dspy.utils import exceptions as dx

from cairo_coder.llm_calls import final_error, retry_delay
from cairo_coder.llm_errors import LLMRateLimitError, LLMUnavailableError, provider_detail
from cairo_coder.sanitize import clean_json, clean_text
from cairo_coder.store.database import is_connection_error, with_retries
from cairo_coder.store.errors import DatabaseUnavailableError


def test_clean_text_keeps_valid_text_and_replaces_what_postgres_refuses() -> None:
    assert clean_text("plain ✓ 😀") == "plain ✓ 😀"
    assert clean_text("a\ud800b") == "a\ufffdb" and clean_text("\udc00") == "\ufffd"
    assert clean_text("x\x00y") == "xy"
    assert clean_text("\ud83d\ude00") == "😀"  # an unjoined pair is joined back
    assert clean_json({"k\ud800": ["v\x00", 1, None, {"n": "\udfff"}]}) == {"k\ufffd": ["v", 1, None, {"n": "\ufffd"}]}


def test_provider_detail_drops_client_library_names_and_hints() -> None:
    raw = (
        "[openai/m] litellm.MidStreamFallbackError: litellm.RateLimitError: RateLimitError: OpenAIException - "
        "slow down\n\n  To fix:\n    - Retry with backoff (lm15 never retries for you)"
    )
    assert provider_detail(Exception(raw)) == "slow down"
    assert provider_detail(Exception("litellm.Timeout: APITimeoutError - Request timed out")) == "Request timed out"
    assert provider_detail(Exception("x" * 1000)).endswith("...")


def _rate_limited(retry_after: float | None = None) -> Exception:
    return dx.LMRateLimitError("slow down", model="m", retry_after=retry_after)


def test_retry_policy_honours_retry_after_and_gives_up_honestly() -> None:
    assert retry_delay(_rate_limited(3), 0, retries=3, max_wait=20) == 3
    assert retry_delay(_rate_limited(60), 0, retries=3, max_wait=20) is None  # passed on to the client
    assert retry_delay(_rate_limited(), 3, retries=3, max_wait=20) is None  # attempts used up
    assert 0.75 <= (retry_delay(_rate_limited(), 0, retries=3, max_wait=20) or 0) <= 1.25
    assert 3 <= (retry_delay(dx.LMServerError("boom"), 2, retries=3, max_wait=20) or 0) <= 5
    assert retry_delay(dx.LMAuthError("bad key"), 0, retries=3, max_wait=20) is None  # not transient
    assert retry_delay(ValueError("ours"), 0, retries=3, max_wait=20) is None
    error = final_error(_rate_limited(7), attempts=4)
    assert isinstance(error, LLMRateLimitError) and error.retry_after == 7
    assert "gave up after 4 attempts; retry after 7 s" in str(error)
    once = final_error(dx.LMServerError("boom"), attempts=1)
    assert isinstance(once, LLMUnavailableError) and "attempts" not in str(once)


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        FileNotFoundError(2, "socket missing"),
        TimeoutError("timed out"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_connection_level_failure_is_retried_then_database_unavailable(failure: Exception) -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise failure

    with pytest.raises(DatabaseUnavailableError, match="retry shortly") as caught:
        asyncio.run(with_retries(down, deadline=0.3, base_delay=0.01))
    assert calls > 1 and type(failure).__name__ not in str(caught.value)


def test_os_errors_count_as_database_failures_only_from_the_driver() -> None:
    assert is_connection_error(asyncpg.exceptions.AdminShutdownError("bye"))
    assert not is_connection_error(FileNotFoundError(2, "a template file"))  # raised outside asyncpg
    assert not is_connection_error(asyncpg.exceptions.UniqueViolationError("dup"))


def test_importing_cairo_coder_keeps_litellm_offline() -> None:
    """LiteLLM downloads its model cost map when imported unless told not to (offline, a 22 s stall)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run(
        [sys.executable, "-c", "import cairo_coder, os; print(os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "True"
