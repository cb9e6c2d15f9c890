"""The log setup (logs.py) and request records (observe.py) without a server."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cairo_coder import observe
from cairo_coder.logs import Redactor, setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_are_masked_whatever_their_shape() -> None:
    redact = Redactor(["configured-secret-value", "short"])
    line = (
        "key configured-secret-value; Authorization: Bearer abcdef0123456789; OPENAI sk-proj-abcdefghijklmnop; "
        "postgresql://cairo:p4ssw0rd!@db:5432/cairo; x-api-key: zzzzzzzzzz"
    )
    masked = redact(line)
    for secret in (
        "configured-secret-value",
        "abcdef0123456789",
        "sk-proj-abcdefghijklmnop",
        "p4ssw0rd!",
        "zzzzzzzzzz",
    ):
        assert secret not in masked
    assert "postgresql://cairo:***@db:5432/cairo" in masked, "the user stays, the password goes"
    assert "short" in Redactor(["short"])("short"), "values too short to be keys are left alone"


def test_json_lines_carry_the_request_id_fields_and_tracebacks(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", secrets=["sk-secret-in-a-message"], stream=stream)
    logger = logging.getLogger("cairo_coder.test")
    record = observe.RequestRecord("rid-1")
    with observe.request(record):
        logger.info("hello %s", "world", extra={"fields": {"documents": 3}})
        try:
            raise RuntimeError("boom sk-secret-in-a-message")
        except RuntimeError:
            logger.exception("failed")
    logger.warning("outside")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["request_id"], first["documents"], first["level"]) == (
        "hello world",
        "rid-1",
        3,
        "info",
    )
    assert "Traceback" in second["exc"] and "sk-secret-in-a-message" not in second["exc"]
    assert "request_id" not in third


def test_text_lines_for_a_terminal(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    with observe.request(observe.RequestRecord("0123456789abcdef")):
        logging.getLogger("cairo_coder.x").info("done", extra={"fields": {"status": "ok"}})
    logging.getLogger("cairo_coder.x").debug("hidden at INFO")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith('INFO cairo_coder.x [0123456789ab] done status="ok"')


def test_setup_replaces_its_own_handler_only(restore_root: None) -> None:
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    setup_logging("INFO", "json", stream=io.StringIO())
    setup_logging("INFO", "json", stream=io.StringIO())
    assert other in root.handlers and sum(h.get_name() == "cairo-coder" for h in root.handlers) == 1


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123", True),
        ("trace/7f:span=1", True),
        ("with space", False),
        ("x" * 129, False),
        ("", False),
        (None, False),
    ],
)
def test_incoming_request_ids_are_kept_only_when_sane(incoming: str | None, kept: bool) -> None:
    made = observe.new_request_id(incoming)
    assert (made == incoming) is kept and (kept or len(made) == 32)


def test_stages_are_timed_into_the_current_request_only() -> None:
    with observe.stage("retrieval") as nothing:
        assert nothing is None  # the CLI: no request, no record
    record = observe.RequestRecord("r")
    with observe.request(record), observe.stage("retrieval"), observe.stage("retrieval_judge"):
        pass
    assert set(record.stages) == {"retrieval", "retrieval_judge"}
    assert record.summary()["stages"]["retrieval"]["duration_ms"] >= 0
