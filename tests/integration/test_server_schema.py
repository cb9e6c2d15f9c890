"""Schemathesis against the server's own OpenAPI schema: generated requests (valid and invalid) to every
operation find no 5xx, no undocumented status, and no response that violates its documented schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairo_coder.embeddings import LocalEmbedder
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

ADMIN = "schema-admin"
CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,"
    "response_headers_conformance"
)


@pytest.fixture(scope="module")
def server(kb_url: str, local_embedder: LocalEmbedder) -> Iterator[LiveServer]:
    with FakeOpenAI() as fake:
        live = LiveServer(
            llm_settings(
                kb_url, fake, CAIRO_CODER_SERVER__ADMIN_KEY=ADMIN, CAIRO_CODER_SERVER__MAX_CONCURRENT_REQUESTS="1000"
            ),
            local_embedder,
        ).start()
        yield live
        live.stop()


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(server: LiveServer, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    seed = os.environ.get("CAIRO_CODER_SCHEMATHESIS_SEED", "20261124")
    command = [
        st,
        "run",
        server.url + "/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "25",
        "--request-timeout",
        "60",
        "--seed",
        seed,
        "--header",
        f"x-admin-key: {ADMIN}",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        "--no-color",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": ""}
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert "Tested: 11" in summary, "every operation of the schema was exercised"
