"""The service the TypeScript client's tests run against (clients/typescript/test/run.ts starts it).

A real `cairo-coder serve` process on an embedded PostgreSQL (pgserver) with the mini corpus, its LLM calls going
to the fake OpenAI-compatible server, with an API key required. It prints one JSON line (``url``, ``fake``: the
fake server's control URL, ``apiKey``) when the server is healthy, then runs until its standard input closes.

    python -m tests.ts_stack
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from cairo_coder.store.embedded import EmbeddedPostgres
from tests.fake_openai import FakeOpenAI
from tests.integration.mini_corpus import write_mini_corpus

API_KEY = "ts-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cairo-coder serve exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"cairo-coder serve did not become ready:\n{log.read_text()}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cairo-coder-ts-") as tmp, FakeOpenAI() as fake:
        work = Path(tmp)
        postgres = EmbeddedPostgres(work / "pg")
        postgres.start()
        log = work / "serve.log"
        process: subprocess.Popen[bytes] | None = None
        try:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRO_CODER_", "OPENAI"))}
            env.update(
                {
                    "DATABASE_URL": postgres.uri,
                    "CAIRO_CODER_CORPUS": str(write_mini_corpus(work / "corpus")),
                    "CAIRO_CODER_EMBEDDINGS__PROVIDER": "none",  # lexical search: no model to load
                    "CAIRO_CODER_SERVER__INSIGHTS": "false",
                    "CAIRO_CODER_SERVER__API_KEYS": json.dumps([API_KEY]),
                    "CAIRO_CODER_MODEL": "openai/fake-model",
                    "OPENAI_BASE_URL": fake.base_url,
                    "OPENAI_API_KEY": "sk-test",
                    # A scripted provider failure reaches the client at once (the client's retries are tested),
                    # and a few of them do not open the circuit breaker for the tests after.
                    "CAIRO_CODER_LLM__RETRIES": "0",
                    "CAIRO_CODER_LLM__BREAKER_FAILURES": "0",
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                }
            )
            command = [sys.executable, "-m", "cairo_coder", "serve", "--port", str(port)]
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
            base = f"http://127.0.0.1:{port}"
            wait_healthy(process, base, log)
            control = fake.base_url.removesuffix("/v1") + "/control"
            print(json.dumps({"url": base, "fake": control, "apiKey": API_KEY}), flush=True)
            sys.stdin.read()  # until the test runner closes our stdin
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            postgres.stop()


if __name__ == "__main__":
    main()
