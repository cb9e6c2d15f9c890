"""Integration fixtures: a knowledge base (mini corpus + a Foundry and a Starknet.js page, local embeddings)
shared by the pipeline and server tests, and settings that point every LLM call at the fake server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from cairo_coder.config import Settings
from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.ingest.loader import Ingester
from cairo_coder.store import DocumentStore
from cairo_coder.store.embedded import EmbeddedPostgres
from cairo_coder.types import DocumentSource
from tests.conftest import create_database, drop_database, make_settings
from tests.fake_openai import FakeOpenAI
from tests.integration.live_server import LiveServer
from tests.integration.mini_corpus import write_mini_corpus

EXTRA_PAGES = {
    "starknet_foundry/testing/cheatcodes.md": (
        "# Cheatcodes\n\nCheatcodes change the state seen by a contract in tests. `start_cheat_caller_address` "
        "makes calls to a contract appear to come from another address.\n"
    ),
    "starknet_js/guides/connect_contract.md": (
        "# Interact with your contract\n\nCreate a `Contract` object with the ABI, the address and a provider "
        "or an account to call or invoke a contract from JavaScript.\n"
    ),
}


async def build_kb(url: str, work_dir: Path, embedder: LocalEmbedder) -> None:
    """Ingest the mini corpus plus EXTRA_PAGES into the (empty) database at ``url``."""
    corpus = write_mini_corpus(work_dir)
    for rel, text in EXTRA_PAGES.items():
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text)
    settings = make_settings(url)
    async with await DocumentStore.open(settings.database, embedder, settings.search, for_writing=True) as store:
        ingester = Ingester(settings, store)
        for source in ("cairo_book", "scarb_docs", "starknet_foundry", "starknet_js"):
            await ingester.ingest_source(DocumentSource(source), corpus)


@pytest.fixture(scope="session")
async def kb_url(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory, local_embedder: LocalEmbedder
) -> AsyncIterator[str]:
    """A database holding the mini corpus plus a Foundry and a Starknet.js page, indexed with the local embedder."""
    name = f"kb_{uuid.uuid4().hex[:8]}"
    url = await create_database(pg_server, name)
    await build_kb(url, tmp_path_factory.mktemp("corpus"), local_embedder)
    yield url
    await drop_database(pg_server, name)


def llm_settings(url: str, fake: FakeOpenAI, **env: str) -> Settings:
    return make_settings(
        url, CAIRO_CODER_MODEL="openai/fake-model", OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="sk-test", **env
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """The fake OpenAI-compatible server of one test module (reset before each test that uses it)."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def reset_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture(scope="module")
def start(kb_url: str, local_embedder: LocalEmbedder) -> Iterator[Callable[..., LiveServer]]:
    """Start a live server on the knowledge base with the given settings; all stopped at the module's end."""
    servers: list[LiveServer] = []

    def run(settings: Settings) -> LiveServer:
        live = LiveServer(settings, local_embedder).start()
        servers.append(live)
        return live

    yield run
    for live in servers:
        live.stop()
