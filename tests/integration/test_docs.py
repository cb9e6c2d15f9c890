"""The operator docs stay true: every settings key is in docs/DEPLOYMENT.md's reference, and every example
marked as runnable (```console blocks: `$ cairo-coder ...` commands and `$ curl ...` requests) in docs/ runs
against a real server and database."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from cairo_coder.config import Settings
from cairo_coder.config.sources import SourceConfig
from cairo_coder.types import AgentConfiguration
from tests.conftest import make_settings
from tests.integration.live_server import LiveServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.M | re.S)


def settings_keys() -> list[str]:
    keys: list[str] = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys += [f"{name}.{key}" for key in section.model_fields]
    # The data tables: one entry per source and per agent, each with these fields.
    keys += [f"sources.<id>.{key}" for key in SourceConfig.model_fields if key != "id"]  # the id is the key
    keys += [f"agents.<id>.{key}" for key in AgentConfiguration.model_fields if key != "id"]
    return keys


def test_every_settings_key_is_in_the_deployment_reference() -> None:
    text = (DOCS / "DEPLOYMENT.md").read_text()
    keys = settings_keys()
    assert len(keys) > 60
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"docs/DEPLOYMENT.md does not document {missing}"


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in sorted(DOCS.glob("*.md")):
        for block in CONSOLE.findall(doc.read_text()):
            found += [(doc.name, line[2:].strip()) for line in block.splitlines() if line.startswith("$ ")]
    return found


def curl(command: str, base: str) -> httpx.Response:
    words = shlex.split(command)[1:]
    method, headers, data, url = "GET", {}, None, ""
    while words:
        word = words.pop(0)
        if word in ("-s", "--silent", "-S", "-f", "--fail-with-body", "-N"):
            continue
        if word in ("-X", "--request"):
            method = words.pop(0)
        elif word in ("-H", "--header"):
            name, value = words.pop(0).split(":", 1)
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--json"):
            data, method = words.pop(0), "POST" if method == "GET" else method
            if word == "--json":
                headers.setdefault("content-type", "application/json")
        else:
            url = word
    assert url.startswith("http://127.0.0.1:3001/"), f"examples use the default address: {command}"
    return httpx.request(method, base + url.removeprefix("http://127.0.0.1:3001"), headers=headers, content=data)


@pytest.fixture(scope="module")
def server(start: Callable[..., LiveServer], kb_url: str) -> LiveServer:
    live = start(make_settings(kb_url))
    deadline = time.monotonic() + 60
    while httpx.get(live.url + "/ready").status_code != 200:
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.2)
    return live


def test_there_are_runnable_examples() -> None:
    commands = {command.split()[0] for _, command in examples()}
    assert {"curl", "cairo-coder"} <= commands and len(examples()) >= 8


@pytest.mark.parametrize(("doc", "command"), examples(), ids=[f"{d}: {c}" for d, c in examples()])
def test_the_example_runs(doc: str, command: str, server: LiveServer, kb_url: str) -> None:
    if command.startswith("curl "):
        response = curl(command, server.url)
        assert response.status_code == 200, f"{doc}: {command} -> {response.status_code} {response.text[:300]}"
        return
    assert command.startswith("cairo-coder "), f"{doc}: only cairo-coder and curl examples are runnable: {command}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))}
    env.update({"DATABASE_URL": kb_url, "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    result = subprocess.run(
        [sys.executable, "-m", "cairo_coder", *shlex.split(command)[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{doc}: {command}\n{result.stdout[-1000:]}\n{result.stderr[-2000:]}"
