"""The error tree (cairo_coder/errors.py): every error is in it, every kind has one status, and every
third-party failure that can reach the server is mapped to a precise kind (never an anonymous 500)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import asyncpg
import dspy
import httpx
import litellm
import openai
import pytest
from dspy import lm15
from dspy.utils import exceptions as dx

import cairo_coder
from cairo_coder.errors import all_error_classes, as_error
from cairo_coder.server.errors import STATUS_TYPE, from_exception
from cairo_coder.store.database import CONNECTION_ERRORS

MODULES = [
    info.name
    for info in pkgutil.walk_packages(cairo_coder.__path__, "cairo_coder.")
    if not info.name.endswith("__main__")  # importing it runs the CLI
]


@pytest.fixture(scope="module", autouse=True)
def every_module() -> None:
    for name in MODULES:
        importlib.import_module(name)


def _defined_exceptions() -> list[type[BaseException]]:
    found = []
    for name in MODULES:
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("cairo_coder"):
                found.append(cls)
    return found


# Raised inside pydantic validators only (pydantic needs a ValueError); they reach users as a ConfigError. And
# CallBudgetExceeded: a BaseException on purpose (like KeyboardInterrupt), so that DSPy's optimizers, which count
# and skip ordinary exceptions, stop; `cairo-coder optimize` catches it and exits 1 with a message.
VALIDATOR_ERRORS = {"cairo_coder.config.settings.UnknownReference", "cairo_coder.optimizing.CallBudgetExceeded"}


def test_every_exception_class_of_cairo_coder_is_in_the_tree() -> None:
    outside = sorted(
        {f"{c.__module__}.{c.__qualname__}" for c in _defined_exceptions()}
        - {f"{c.__module__}.{c.__qualname__}" for c in all_error_classes()}
        - VALIDATOR_ERRORS
    )
    assert not outside, f"exception classes outside CairoCoderError: {outside}"


def test_every_kind_has_one_status_and_only_the_root_is_a_500() -> None:
    statuses: dict[str, set[int]] = {}
    for cls in all_error_classes():
        assert isinstance(cls.kind, str) and cls.kind, cls
        assert cls.exit_code in (1, 2), cls
        statuses.setdefault(cls.kind, set()).add(cls.status)
    statuses.pop("internal_error")
    conflicting = {kind: s for kind, s in statuses.items() if len(s) > 1}
    assert not conflicting, f"kinds answered with several statuses: {conflicting}"
    flat = {kind: s.pop() for kind, s in statuses.items()}
    assert all(status != 500 for status in flat.values()), flat
    unknown = {kind: status for kind, status in flat.items() if status not in STATUS_TYPE and status != 499}
    assert not unknown, f"statuses with no OpenAI error type: {unknown}"
    assert {"llm_rate_limited", "database_unavailable", "unknown_agent", "llm_incomplete", "invalid_page"} <= set(flat)


def test_the_tree_in_the_docstring_lists_every_class() -> None:
    doc = importlib.import_module("cairo_coder.errors").__doc__ or ""
    drawn = set(re.findall(r"[├└]── (\w+)", doc)) | {"CairoCoderError"}
    assert {cls.__name__ for cls in all_error_classes()} == drawn


# Raises of other classes that never reach users as such: (file, class) -> why.
OTHER_RAISES = {
    ("config/sections.py", "ValueError"): "inside pydantic validators: becomes a ConfigError naming the key",
    ("config/sources.py", "ValueError"): "inside pydantic validators: becomes a ConfigError naming the key",
    ("config/settings.py", "UnknownReference"): "inside a pydantic validator: becomes a ConfigError naming the key",
    ("server/schemas.py", "ValueError"): "parse_flag: its callers turn it into a 400 naming the header",
    ("server/process.py", "ValueError"): "caught a line below: an invalid_json error event",
    ("server/process.py", "WebSocketDisconnect"): "control flow: the client left",
    ("server/middleware.py", "HTTPException"): "answered through server/errors.http_error (408, 413)",
    ("server/mcp_server.py", "ToolError"): "the MCP transport's own error envelope (tool_errors maps ours to it)",
    ("datasets.py", "ValueError"): "inside a pydantic validator: becomes a DatasetError naming file and line",
    ("optimizing.py", "CallBudgetExceeded"): "stops DSPy's optimizers; cli/optimizing.py turns it into exit 1",
}


def test_every_raise_in_the_source_raises_one_of_ours() -> None:
    """`raise SomeError(...)` of a built-in or third-party class would reach users as internal_error."""
    allowed = {"NotImplementedError", "AssertionError"}
    src = Path(cairo_coder.__file__).parent
    ours = {cls.__name__ for cls in all_error_classes()}
    found = []
    for path in src.rglob("*.py"):
        relative = path.relative_to(src).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"\s*raise (?:\w+\.)*([A-Z]\w*)\(", line)
            if match is None or match.group(1) in ours | allowed:
                continue
            if (relative, match.group(1)) not in OTHER_RAISES and not match.group(1).endswith("Exit"):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "raised outside the error tree:\n" + "\n".join(found)


def _third_party() -> list[BaseException]:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    errors: list[BaseException] = [
        litellm.RateLimitError("slow down", llm_provider="openai", model="m"),
        litellm.APIConnectionError("refused", llm_provider="openai", model="m"),
        litellm.Timeout("timed out", model="m", llm_provider="openai"),
        litellm.AuthenticationError("bad key", llm_provider="openai", model="m"),
        litellm.BadRequestError("bad", model="m", llm_provider="openai"),
        litellm.ContextWindowExceededError("too long", model="m", llm_provider="openai"),
        litellm.InternalServerError("boom", llm_provider="openai", model="m"),
        litellm.ServiceUnavailableError("down", llm_provider="openai", model="m"),
        litellm.APIError(500, "mid-stream", llm_provider="openai", model="m"),
        openai.RateLimitError("slow", response=httpx.Response(429, request=request), body=None),
        openai.APIConnectionError(request=request),
        lm15.TransportError("connection reset"),
        dx.AdapterParseError(adapter_name="ChatAdapter", signature=dspy.Signature("q -> a"), lm_response="?"),
    ]
    # Every DSPy language-model error class, including ones a future DSPy adds.
    pending: list[type[BaseException]] = [dx.LMError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        try:
            errors.append(cls("x"))
        except TypeError:
            errors.append(cls(model="m"))  # type: ignore[call-arg]
    for cls in CONNECTION_ERRORS:
        if cls is OSError:
            continue
        errors.append(cls("connection lost"))
    return errors


@pytest.mark.parametrize("exc", _third_party(), ids=lambda e: type(e).__name__)
def test_third_party_failures_that_reach_the_server_are_mapped(exc: BaseException) -> None:
    mapped = as_error(exc)
    assert mapped.kind != "internal_error", f"{type(exc).__module__}.{type(exc).__name__} is not mapped"
    api = from_exception(exc)
    assert api.status == mapped.status and api.code == mapped.kind
    assert "Traceback" not in api.message and type(exc).__name__ not in api.message


def test_an_os_error_raised_inside_the_database_driver_is_a_database_failure() -> None:
    try:
        # A frame of asyncpg's on the traceback is what marks the driver's OSError (store/database.py).
        code = compile("raise exc", str(Path(asyncpg.__file__).parent / "connection.py"), "exec")
        exec(code, {"exc": ConnectionResetError(104, "Connection reset by peer")})
    except ConnectionResetError as exc:
        assert as_error(exc).kind == "database_unavailable"
    else:
        pytest.fail("not raised")


def test_anything_else_is_an_internal_error_that_tells_nothing() -> None:
    mapped = as_error(KeyError("secret internals"))
    assert (mapped.kind, mapped.status) == ("internal_error", 500)
    assert "secret" not in str(mapped) and isinstance(mapped.__cause__, KeyError)


def test_cli_exit_codes_follow_the_tree() -> None:
    from cairo_coder.agents import UnknownAgentError
    from cairo_coder.errors import ConfigError
    from cairo_coder.store.errors import DatabaseUnavailableError

    assert ConfigError("x").exit_code == 2 and UnknownAgentError("a", []).exit_code == 2
    assert DatabaseUnavailableError("x").exit_code == 1
