"""Shared fixtures: a real embedded PostgreSQL (pgserver) for the session, fresh databases per test,
the real local MiniLM embedder, and the shared corpus ingested once."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cairo_coder.config import EmbeddingSettings, Settings, load_settings
from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.store.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("CAIRO_CODER_SHARED", REPO.parent / "shared"))


def corpus_dir() -> Path:
    return Path(os.environ.get("CAIRO_CODER_CORPUS") or shared_dir() / "corpus")


def eval_dataset() -> Path:
    return Path(os.environ.get("CAIRO_CODER_EVAL_DATASET") or shared_dir() / "eval" / "retrieval_dev.jsonl")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pgdata"))
    server.start()
    yield server
    server.stop()


def database_url(server: EmbeddedPostgres, name: str) -> str:
    base = server.uri
    prefix, _, query = base.partition("?")
    return f"{prefix.rsplit('/', 1)[0]}/{name}?{query}"


async def create_database(server: EmbeddedPostgres, name: str) -> str:
    """Create the (empty) database ``name`` on ``server``; its URL."""
    admin = await asyncpg.connect(server.uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return database_url(server, name)


async def drop_database(server: EmbeddedPostgres, name: str) -> None:
    """Drop the database ``name`` on ``server`` if it exists, whoever is still connected to it."""
    admin = await asyncpg.connect(server.uri)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db_url(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh, empty database on the session's server."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield await create_database(pg_server, name)
    await drop_database(pg_server, name)


def make_settings(url: str, **env: str) -> Settings:
    return load_settings(environ={"DATABASE_URL": url, **env})


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    """The real offline MiniLM embedder, loaded once per session."""
    return LocalEmbedder(EmbeddingSettings())
