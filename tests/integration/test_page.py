"""The chat page at `/`, in a real browser (Debian's Chromium driven by Playwright) against the real server and the
fake OpenAI-compatible LLM: a streamed answer with its citations and sources, stopping, the documentation search
of a server without a model, errors in words, persistence across a reload, the API key, and nothing fetched from
elsewhere. With CAIRO_CODER_SCREENSHOTS=DIR the main states are saved there as PNG (docs/screenshots)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from cairo_coder.server.page import ASSETS
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import llm_settings
from tests.integration.live_server import LiveServer
from tests.integration.test_browser_origin import FLAGS, ensure_chromium

QUESTION = "How do I declare storage variables in a contract?"
WEB = Path(__file__).resolve().parents[2] / "src" / "cairo_coder" / "web"
SHOTS = os.environ.get("CAIRO_CODER_SCREENSHOTS")
ANSWER = (
    "Declare them in the `#[storage]` struct [1]; read and write them through `self` [1][2].\n\n"
    "```cairo\n#[storage]\nstruct Storage {\n    counter: u128, // a counter\n}\n```\n\n"
    "Then build with:\n\n```bash\nscarb build\n```"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=ensure_chromium(), args=FLAGS)
        yield launched
        await launched.close()


async def open_page(browser: Browser, url: str, dark: bool = False, **options: Any) -> tuple[Page, list[str]]:
    context = await browser.new_context(color_scheme="dark" if dark else "light", **options)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(url + "/")
    return page, requested


async def shot(page: Page, name: str) -> None:
    if SHOTS:  # Playwright creates the directory
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


async def ask(page: Page, question: str) -> None:
    await page.get_by_label("Your question").fill(question)
    await page.get_by_label("Your question").press("Enter")


def test_root_answers_json_to_clients_and_the_page_to_browsers(start: Callable[..., LiveServer], kb_url: str) -> None:
    server = start(make_settings(kb_url))
    assert httpx.get(server.url + "/").json()["status"] == "ok"
    assert httpx.get(server.url + "/", headers={"accept": "application/json"}).json()["status"] == "ok"
    page = httpx.get(server.url + "/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and "<title>cairo-coder</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    asset = httpx.get(server.url + "/ui/app.js")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert httpx.get(server.url + "/ui/app.js", headers={"if-none-match": asset.headers["etag"]}).status_code == 304
    assert httpx.get(server.url + "/ui/secrets.txt").json()["error"]["code"] == "not_found"
    sizes = {name: len(gzip.compress((WEB / name).read_bytes())) for name in [*ASSETS, "index.html"]}
    print(f"page assets, gzip-compressed: {sum(sizes.values())} bytes {sizes}")
    assert sum(sizes.values()) < 300_000


async def test_ask_and_watch_the_answer_stream_with_citations_and_sources(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI, browser: Browser
) -> None:
    server = start(llm_settings(kb_url, fake))
    fake.fields["answer"] = ANSWER
    fake.chunk_size = 6
    fake.chunk_delay = 0.01
    page, requested = await open_page(browser, server.url)
    await ask(page, QUESTION)
    answer = page.locator("article.message.assistant").last
    await expect(answer.locator(".sources li")).not_to_have_count(0, timeout=20_000)
    await expect(answer.locator("pre code.language-cairo")).to_contain_text("struct Storage")
    await expect(page.locator("#stop")).to_be_hidden(timeout=20_000)
    sources = await page.evaluate(
        "JSON.parse(localStorage.getItem('cairo-coder.conversations'))[0].messages[1].sources"
    )
    first = answer.locator("a.cite").first
    assert await first.get_attribute("href") == sources[0]["url"]
    assert sources[0]["title"] in (await first.get_attribute("title") or "")
    assert await answer.locator(".sources li a").first.get_attribute("href") == sources[0]["url"]
    assert await answer.locator(".tok-keyword", has_text="struct").count() == 1, "Cairo is highlighted"
    assert await answer.locator(".tok-comment").count() == 1
    await answer.locator("button.copy").first.click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("#[storage]\nstruct Storage")
    metrics = await page.evaluate("window.cairoCoderMetrics")
    delay = metrics["firstTextShownAt"] - metrics["firstChunkAt"]
    print(f"first answer text on screen {delay:.1f} ms after the first SSE content chunk")
    await shot(page, "answer-light")
    assert all(url.startswith(server.url) for url in requested), [u for u in requested if not u.startswith(server.url)]

    # Persistence: after a reload the conversation is listed and shown again.
    await page.reload()
    await expect(page.locator("#conversations li")).to_have_count(1)
    await expect(page.locator("article.message.user")).to_have_text(QUESTION)
    await expect(page.locator("article.message.assistant a.cite").first).to_have_attribute("href", sources[0]["url"])

    # A new conversation with another agent: its own entry, and the agent's own prompts on the server.
    await page.get_by_role("button", name="New conversation").click()
    await expect(page.locator("#conversations li")).to_have_count(2)
    await expect(page.locator("article.message")).to_have_count(0)
    await page.get_by_label("Agent").select_option("scarb-assistant")
    await ask(page, "What does the edition key of Scarb.toml do?")
    await expect(page.locator("article.message.assistant .answer").last).to_contain_text("Declare them", timeout=20_000)
    await expect(page.locator("#stop")).to_be_hidden(timeout=20_000)
    saved = await page.evaluate("JSON.parse(localStorage.getItem('cairo-coder.conversations'))")
    assert [c["agent"] for c in saved] == ["scarb-assistant", "cairo-coder"]
    assert "Scarb Assistant" in json.dumps(fake.chat_requests()[-1]["body"]["messages"])

    # Dark theme and a narrow screen.
    dark, _ = await open_page(browser, server.url, dark=True)
    assert await dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 24, 28)"
    await ask(dark, QUESTION)
    await expect(dark.locator("article.message.assistant .sources li")).not_to_have_count(0, timeout=20_000)
    await expect(dark.locator("#stop")).to_be_hidden(timeout=20_000)
    await shot(dark, "answer-dark")
    narrow, _ = await open_page(browser, server.url, viewport={"width": 390, "height": 800})
    assert not await narrow.locator("#sidebar").is_visible()
    await narrow.get_by_label("Show conversations").click()
    assert await narrow.locator("#sidebar").is_visible()
    await shot(narrow, "narrow")


async def test_stop_generation(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI, browser: Browser
) -> None:
    server = start(llm_settings(kb_url, fake))
    fake.chunk_size = 2
    fake.chunk_delay = 0.05
    page, _ = await open_page(browser, server.url)
    await ask(page, QUESTION)
    answer = page.locator("article.message.assistant").last
    await expect(answer.locator(".answer")).to_contain_text("ANSWER", timeout=20_000)
    await page.get_by_role("button", name="Stop").click()
    await expect(answer.locator(".note")).to_have_text("Stopped.")
    assert await asyncio.to_thread(outcomes, fake) == ["aborted"], "the server stopped generating"
    await expect(page.get_by_role("button", name="Send")).to_be_visible()


def outcomes(fake: FakeOpenAI) -> list[str]:
    """The fake LLM's stream outcomes, once there is one (or after 10 s)."""
    deadline = time.monotonic() + 10
    while not fake.stream_outcomes and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(fake.stream_outcomes)


async def test_without_a_model_the_page_searches_the_documentation(
    start: Callable[..., LiveServer], kb_url: str, browser: Browser
) -> None:
    server = start(make_settings(kb_url))
    page, _ = await open_page(browser, server.url)
    await expect(page.locator("#banner")).to_contain_text("no language model configured")
    await ask(page, "storage mappings")
    results = page.locator("article.message.assistant .search-results li")
    await expect(results.first).to_contain_text("Contract Storage", timeout=20_000)
    href = await results.first.locator("a").get_attribute("href")
    assert href is not None and href.startswith("https://")
    await shot(page, "search-mode")
    await page.reload()
    await expect(page.locator("#banner")).to_be_hidden()  # said once


async def test_errors_are_shown_in_words(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI, browser: Browser
) -> None:
    server = start(llm_settings(kb_url, fake, CAIRO_CODER_LLM__RETRIES="0"))
    fake.chat_failures.extend([503])
    page, _ = await open_page(browser, server.url)
    await ask(page, QUESTION)
    error = page.locator("article.message.assistant .note.error")
    await expect(error).to_contain_text("language model is unavailable", timeout=20_000)
    await expect(error).to_contain_text("Try again")
    await shot(page, "error")
    # A stream that breaks off mid-answer: the stream's error event.
    fake.stream_faults.extend(["cut"])
    await ask(page, QUESTION)
    await expect(page.locator("article.message.assistant .note.error").last).to_be_visible(timeout=20_000)
    # The server gone: a lost connection is noticed.
    server.stop()
    await ask(page, QUESTION)
    await expect(page.locator("article.message.assistant .note.error").last).to_contain_text(
        "Lost the connection", timeout=20_000
    )


async def test_an_api_key_is_asked_for_and_kept(
    start: Callable[..., LiveServer], kb_url: str, fake: FakeOpenAI, browser: Browser
) -> None:
    server = start(llm_settings(kb_url, fake, CAIRO_CODER_SERVER__API_KEYS=json.dumps(["page-key"])))
    page, _ = await open_page(browser, server.url)
    dialog = page.locator("#key-dialog")
    await expect(dialog).to_be_visible()
    await page.get_by_role("textbox", name="Key").fill("page-key")
    await page.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()
    await ask(page, QUESTION)
    await expect(page.locator("article.message.assistant .answer").last).to_contain_text("ANSWER", timeout=20_000)
    assert await page.evaluate("localStorage.getItem('cairo-coder.api-key')") == "page-key"
