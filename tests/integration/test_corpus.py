"""The whole shared corpus ingested with the offline default (local MiniLM, hybrid search): ingestion
summary, retrieval quality against the targets, corelib exact lookups, every mode and filter, and the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cairo_coder.embeddings import LocalEmbedder
from cairo_coder.evaluation import CHUNKS_PER_QUERY, distinct_pages, evaluate, load_dataset
from cairo_coder.ingest.loader import Ingester, SourceReport
from cairo_coder.store import DocumentStore
from cairo_coder.store.embedded import EmbeddedPostgres
from cairo_coder.types import DocumentSource
from tests.conftest import REPO, corpus_dir, create_database, drop_database, eval_dataset, make_settings, shared_dir
from tests.fake_openai import FakeOpenAI
from tests.helpers import run_cli

CORPUS_SOURCES = [
    DocumentSource(s)
    for s in (
        "cairo_book",
        "starknet_foundry",
        "scarb_docs",
        "cairo_by_example",
        "openzeppelin_docs",
        "corelib_docs",
        "dojo_docs",
        "starknet_js",
    )
]
# recall@5 and MRR@10 floors per set: what the offline default reaches now, less a margin of one or two items.
# cairo-minilm-l6-v1 at int8: train 0.865 / 0.690 (trained on train: 2-fold cross-validated 0.719 / 0.555),
# dev 0.886 / 0.712, API items 18 of 40 in the top 3 (the base model: 0.708 / 0.547, 0.914 / 0.679, 15 of 40).
TARGETS = {"retrieval_train.jsonl": (0.84, 0.66), "retrieval_dev.jsonl": (0.86, 0.69)}
# Core library item in the top 3: 18 of 40 (api_items_nl) and 85 of 197 (api_items_train) now; 8 of 40 before
# the API-item descriptions.
API_ITEMS_TOP3_TARGET = 0.4


@dataclass
class Corpus:
    url: str
    store: DocumentStore
    reports: list[SourceReport]
    seconds: float


@pytest.fixture(scope="session")
async def corpus(pg_server: EmbeddedPostgres, local_embedder: LocalEmbedder) -> AsyncIterator[Corpus]:
    if not (corpus_dir() / "MANIFEST.json").is_file():
        pytest.fail(f"the shared corpus is missing at {corpus_dir()} (set CAIRO_CODER_CORPUS)")
    await drop_database(pg_server, "corpus")
    url = await create_database(pg_server, "corpus")
    settings = make_settings(url)
    store = await DocumentStore.open(settings.database, local_embedder, settings.search, for_writing=True)
    started = time.perf_counter()
    ingester = Ingester(settings, store)
    reports = [await ingester.ingest_source(source, corpus_dir()) for source in CORPUS_SOURCES]
    seconds = time.perf_counter() - started
    print(f"\nshared corpus ingested in {seconds:.1f}s: {sum(r.chunks for r in reports)} chunks")
    yield Corpus(url, store, reports, seconds)
    await store.close()


async def test_whole_corpus_ingests_with_commits_and_no_failures(corpus: Corpus) -> None:
    by_source = {r.source: r for r in corpus.reports}
    assert set(by_source) == {s.value for s in CORPUS_SOURCES}
    for report in corpus.reports:
        assert report.pages > 0 and report.chunks >= report.pages, report.source
        assert report.failed == [], report.failed
        assert report.commit and len(report.commit) == 40, report.source
    assert by_source["cairo_book"].pages == 130  # every .md of src/ except SUMMARY.md
    assert by_source["openzeppelin_docs"].pages == 45  # 47 .adoc minus the 2 '_' partials
    assert by_source["corelib_docs"].pages > 500  # one page per public item
    # The one upstream include that does not exist is reported, not fatal.
    warnings = by_source["cairo_by_example"].warnings
    assert len(warnings) == 1 and "account_spending_limits" in warnings[0]
    conn = await asyncpg.connect(corpus.url)
    try:
        leftovers = await conn.fetchval(
            r"SELECT count(*) FROM documents WHERE content ~ '\{\{#(include|rustdoc_include)|\[!include|^include::'"
        )
        assert leftovers == 0, "include directives must be resolved"
    finally:
        await conn.close()


async def test_rerun_with_nothing_changed_makes_no_embedding_call(
    corpus: Corpus, local_embedder: LocalEmbedder
) -> None:
    settings = make_settings(corpus.url)
    calls = local_embedder.calls
    started = time.perf_counter()
    ingester = Ingester(settings, corpus.store)
    reports = [await ingester.ingest_source(source, corpus_dir()) for source in CORPUS_SOURCES]
    seconds = time.perf_counter() - started
    print(f"\nre-run with nothing changed: {seconds:.1f}s")
    assert local_embedder.calls == calls
    assert all(r.new == r.updated == r.deleted == 0 for r in reports)


@pytest.mark.parametrize("name", ["retrieval_train.jsonl", "retrieval_dev.jsonl"])
async def test_retrieval_quality_meets_targets(corpus: Corpus, name: str) -> None:
    dataset = eval_dataset() if name == "retrieval_dev.jsonl" else shared_dir() / "eval" / name
    items = load_dataset(dataset)
    report = await evaluate(items, lambda q: corpus.store.search(q, CHUNKS_PER_QUERY, None, "hybrid"))
    metrics = report.metrics()
    print(
        f"\nretrieval (hybrid) on {name}:",
        metrics,
        "\nby origin:",
        report.by_origin(),
        "\nby source:",
        report.by_source(),
        "\nby language:",
        report.by_language(),
    )
    recall_target, mrr_target = TARGETS[name]
    assert report.recall(5) >= recall_target, metrics
    assert report.mrr() >= mrr_target, metrics


@pytest.mark.parametrize("name", ["api_items_nl.jsonl", "api_items_train.jsonl"])
async def test_questions_in_words_find_the_core_library_item_in_the_top_3(corpus: Corpus, name: str) -> None:
    """Questions that describe what a core library item does without naming it: api_items_nl.jsonl (the check
    set) and api_items_train.jsonl (other items, the set the API-item lift was tuned on)."""
    loaded = load_dataset(REPO / "datasets" / "retrieval" / name)
    items = [item for item in loaded if any(ref.source == "corelib_docs" for ref in item.relevant)]
    found, missed = 0, []
    for item in items:
        pages = distinct_pages(await corpus.store.search(item.query, CHUNKS_PER_QUERY, None, "hybrid"), 3)
        wanted = {ref.path for ref in item.relevant if ref.source == "corelib_docs"}
        if any(p.source == "corelib_docs" and p.path in wanted for p in pages):
            found += 1
        else:
            missed.append((item.id, [p.path for p in pages]))
    print(f"\ncore library item in the top 3: {found}/{len(items)}; missed: {missed}")
    assert found >= API_ITEMS_TOP3_TARGET * len(items), missed


async def test_every_page_the_repository_datasets_name_is_a_page_of_the_store(corpus: Corpus) -> None:
    """A mistyped label would count as a miss forever: each relevant page must exist in the ingested corpus."""
    stored = {(r["source"], r["path"]) for r in await corpus.store.pool.fetch("SELECT source, path FROM pages")}
    for path in sorted((REPO / "datasets" / "retrieval").glob("*.jsonl")):
        for item in load_dataset(path):
            for ref in [*item.relevant, *item.also_relevant]:
                assert (ref.source, ref.path) in stored, (path.name, item.id, ref)


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("ArrayTrait", "core::array::ArrayTrait"),
        ("felt252_div", "core::felt252_div"),
        ("core::array::ArrayTrait", "core::array::ArrayTrait"),
        ("How do I use felt252_div?", "core::felt252_div"),
        ("what does SpanTrait::slice do", "core::array::SpanTrait"),
    ],
)
async def test_exact_corelib_item_comes_first(corpus: Corpus, query: str, path: str) -> None:
    for mode in ("hybrid", "lexical"):
        top = (await corpus.store.search(query, k=3, mode=mode))[0]  # type: ignore[arg-type]
        assert top.document.metadata.source == "corelib_docs" and top.document.metadata.path == path, mode
        assert top.document.metadata.url == "https://docs.starknet.io/build/corelib/" + path.replace("::", "-")


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
async def test_modes_and_source_filters_on_the_corpus(corpus: Corpus, mode: Any) -> None:
    results = await corpus.store.search("How do I emit an event from a contract?", k=10, mode=mode)
    assert len(results) == 10
    for result in results:
        meta = result.document.metadata
        assert meta.url.startswith("https://") and meta.title and meta.content_hash and meta.indexed_at
    for source in ("starknet_js", "scarb_docs", "dojo_docs"):
        filtered = await corpus.store.search(
            "How do I emit an event from a contract?", k=5, sources=[source], mode=mode
        )
        assert len(filtered) == 5 and {r.document.metadata.source for r in filtered} == {source}


def _cli(corpus: Corpus, *args: str, embeddings: str = "none", **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": corpus.url, "CAIRO_CODER_EMBEDDINGS__PROVIDER": embeddings, **extra}
    return run_cli(*args, env=env, timeout=600, unset=("CAIRO_CODER_*", "OPENAI_*"))


def test_cli_search_json(corpus: Corpus) -> None:
    result = _cli(corpus, "search", "ArrayTrait append", "--source", "corelib_docs", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and set(rows[0]) == {"source", "path", "title", "url", "score", "content"}
    assert {r["source"] for r in rows} == {"corelib_docs"}
    bad = _cli(corpus, "search", "x", "--source", "nope")
    assert bad.returncode == 2 and "unknown source 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_search_with_the_default_embedder(corpus: Corpus) -> None:
    result = _cli(corpus, "search", "How do I write a storage mapping?", "-k", "2", embeddings="local")
    assert result.returncode == 0, result.stderr
    assert "https://" in result.stdout and "score" in result.stdout


def test_cli_eval_retrieval_json(corpus: Corpus) -> None:
    result = _cli(corpus, "eval", "retrieval", "--dataset", str(eval_dataset()), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"n", "recall@1", "recall@3", "recall@5", "recall@10", "MRR@10", "items"} <= set(data)
    assert data["n"] == len(data["items"]) == len(load_dataset(eval_dataset()))
    item = data["items"][0]
    assert item["id"] == "dev-001" and 0 < len(item["ranked"]) <= 10
    assert set(item["ranked"][0]) == {"source", "path", "url", "score"}
    assert "#" not in item["ranked"][0]["url"]
    assert 0.0 <= data["recall@1"] <= data["recall@5"] <= data["recall@10"] <= 1.0
    text = _cli(corpus, "eval", "retrieval", "--dataset", str(eval_dataset()))
    assert "recall@5" in text.stdout and "origin=user" in text.stdout and "source=cairo_book" in text.stdout


def test_cli_db_status(corpus: Corpus) -> None:
    result = _cli(corpus, "db", "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["schema_version"] >= 1 and status["server"].startswith("PostgreSQL 16")
    assert status["embedder"] == {"id": "local:cairo-minilm-l6-v1:128:int8-per-channel", "dimensions": 384}
    assert status["reindex_note"] is None  # built with the default model
    assert status["sources"]["cairo_book"]["chunks"] > 100


AGENT_ITEMS = [
    {
        "id": "a-1",
        "query": "como despliego la cuenta creada con sncast",
        "origin": "user",
        "relevant": [{"source": "starknet_foundry", "path": "starknet/account.md"}],
    },
    {
        "id": "a-2",
        "query": "How do I write to a storage mapping?",
        "origin": "written",
        "relevant": [{"source": "cairo_book", "path": "ch101-01-01-storage-mappings.md"}],
    },
    {
        "id": "a-3",
        "query": "How do I add a dependency in Scarb.toml?",
        "origin": "written",
        "relevant": [{"source": "scarb_docs", "path": "guides/dependencies.md"}],
    },
]
TRANSLATIONS = {"como despliego la cuenta creada con sncast": ["sncast account deploy", "deploy an account"]}


def test_cli_eval_retrieval_of_an_agent_compare_and_languages(corpus: Corpus, tmp_path: Path) -> None:
    """--agent runs the agent's own query processing (its model: the fake server, through LiteLLM) and retriever;
    a non-English question is searched with the English queries the model writes; --compare reports per-item
    rank changes; the breakdown by language detects the Spanish question offline."""
    dataset = tmp_path / "agent.jsonl"
    dataset.write_text("\n".join(json.dumps(item) for item in AGENT_ITEMS) + "\n")
    refused = _cli(corpus, "eval", "retrieval", "--dataset", str(dataset), "--agent", "cairo-coder")
    assert refused.returncode == 1 and "needs a language model" in refused.stderr, refused.stderr
    assert "CAIRO_CODER_MODEL" in refused.stderr and "Traceback" not in refused.stderr
    unknown = _cli(corpus, "eval", "retrieval", "--dataset", str(dataset), "--agent", "nope")
    assert unknown.returncode == 2 and "unknown agent 'nope'" in unknown.stderr
    bad_mode = _cli(corpus, "eval", "retrieval", "--dataset", str(dataset), "--mode", "foo")
    assert bad_mode.returncode == 2 and "'foo' is not one of" in bad_mode.stderr

    raw = _cli(corpus, "eval", "retrieval", "--dataset", str(dataset), "--json", embeddings="local")
    assert raw.returncode == 0, raw.stderr
    raw_report = json.loads(raw.stdout)
    assert raw_report["by_language"]["es"]["n"] == 1 and raw_report["by_language"]["en"]["n"] == 2
    (tmp_path / "raw.json").write_text(raw.stdout)

    with FakeOpenAI() as fake:
        # The fake reads the question with the adapter's closing instruction after it: match its start.
        fake.fields["search_queries"] = lambda body, query: next(
            (queries for question, queries in TRANSLATIONS.items() if query.startswith(question)), [query[:200]]
        )
        fake.fields["resources"] = ["starknet_foundry", "cairo_book", "scarb_docs"]
        agent = _cli(
            corpus,
            "eval",
            "retrieval",
            "--dataset",
            str(dataset),
            "--agent",
            "cairo-coder",
            "--json",
            "--compare",
            str(tmp_path / "raw.json"),
            embeddings="local",
            CAIRO_CODER_MODEL="openai/fake-model",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test",
        )
        prompts = [r["body"]["messages"] for r in fake.chat_requests()]
    assert agent.returncode == 0, agent.stderr
    report = json.loads(agent.stdout)
    assert len(prompts) == 3, "one query-processing call per item"
    spanish = next(p for p in prompts if "como despliego" in p[-1]["content"])
    assert "in English" in spanish[0]["content"], "query processing asks for English search queries"
    ranks = {item["id"]: item["rank"] for item in report["items"]}
    assert ranks["a-1"] is not None and ranks["a-1"] <= 3, report["items"][0]
    comparison = report["comparison"]
    assert len(comparison["wins"]) + len(comparison["losses"]) + comparison["unchanged"] == 3
    before = {item["id"]: item["rank"] for item in raw_report["items"]}
    assert {c["id"] for c in comparison["wins"]} == {i for i in ranks if (ranks[i] or 11) < (before[i] or 11)}
    text = _cli(
        corpus,
        "eval",
        "retrieval",
        "--dataset",
        str(dataset),
        "--compare",
        str(tmp_path / "raw.json"),
        embeddings="local",
    )
    assert text.returncode == 0, text.stderr
    assert "language=es" in text.stdout and "0 wins, 0 losses, 3 unchanged" in text.stdout
