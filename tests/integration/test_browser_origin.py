"""In a real browser (Debian's Chromium driven by Playwright): a page served from another origin cannot use a
local server's API or WebSocket, while a page of the server's own origin can.

The attacker's page is served by a second HTTP server on another port (another origin, as any site the user
visits). It tries what a malicious page would: a "simple" cross-origin POST that needs no preflight, a JSON POST
(preflighted), and a WebSocket (which browsers never subject to CORS). The fake LLM must not see a single call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from cairo_coder.embeddings import LocalEmbedder
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer

CHROMIUM = "/usr/bin/chromium"
# As the machine's browser probe runs it: headless, no sandbox as root, no background connections (the closed
# network refuses them), a fresh profile.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TRY_EVERYTHING = """async (base) => {
  const body = JSON.stringify({messages: [{role: "user", content: "How do I declare storage variables?"}]});
  const result = {simple: null, json: null, ws: null};
  try {  // a "simple" request: sent without a preflight, its answer hidden from the page
    const r = await fetch(base + "/v1/chat/completions", {method: "POST", body,
                                                          headers: {"content-type": "text/plain"}});
    result.simple = r.status;
  } catch (e) { result.simple = "blocked"; }
  try {
    const r = await fetch(base + "/v1/chat/completions", {method: "POST", body,
                                                          headers: {"content-type": "application/json"}});
    result.json = (await r.json()).choices ? "answered" : r.status;
  } catch (e) { result.json = "blocked"; }
  result.ws = await new Promise((resolve) => {
    const events = [];
    const ws = new WebSocket(base.replace("http", "ws") + "/agents/process/ws");
    ws.onopen = () => ws.send(JSON.stringify({query: "How do I declare storage variables?", id: 1}));
    ws.onmessage = (m) => { const e = JSON.parse(m.data); events.push(e.type);
                            if (e.type === "end" || e.type === "error") { ws.close(); resolve(events); } };
    ws.onerror = () => resolve(events.length ? events : "refused");
    setTimeout(() => resolve(events.length ? events : "timeout"), 15000);
  });
  return result;
}"""


def ensure_chromium() -> str:
    """Debian's Chromium, installed by the test run itself when it is missing (as CI's fresh machine has it
    not): the suite needs nothing installed by hand."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
            subprocess.run(install, env=env, capture_output=True, check=True)
    if not Path(CHROMIUM).exists():
        pytest.fail("browser tests need Debian's Chromium at /usr/bin/chromium: apt-get install chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
def attacker_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another origin: a static page on another port of the same machine."""
    root = tmp_path_factory.mktemp("attacker")
    (root / "index.html").write_text("<!doctype html><title>Free Cairo tips</title><p>Nothing to see here.</p>")
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment,method-assign]
    site = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}/index.html"
    site.shutdown()
    site.server_close()


async def test_a_page_of_another_origin_cannot_use_the_server_its_own_page_can(
    kb_url: str, local_embedder: LocalEmbedder, fake: FakeOpenAI, attacker_site: str
) -> None:
    server = LiveServer(llm_settings(kb_url, fake), local_embedder).start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=ensure_chromium(), args=FLAGS)
            try:
                page = await browser.new_page()
                await page.goto(attacker_site)
                fake.reset()
                attacked: dict[str, Any] = await page.evaluate(TRY_EVERYTHING, server.url)
                assert attacked["simple"] in (403, "blocked"), attacked
                assert attacked["json"] == "blocked" and attacked["ws"] in ("refused", []), attacked
                assert fake.chat_requests() == [], "a page of another origin made the server call the LLM"

                await page.goto(server.url + "/health")  # a document of the server's own origin
                own: dict[str, Any] = await page.evaluate(TRY_EVERYTHING, server.url)
                assert own["json"] == "answered" and own["ws"][-1] == "end", own
                assert fake.chat_requests(), "the server's own page is answered"
            finally:
                await browser.close()
    finally:
        server.stop()
