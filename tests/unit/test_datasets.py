"""The dataset loader reports every bad record by file and line; the repository's datasets are valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cairo_coder.config import load_settings
from cairo_coder.datasets import DatasetError, GenerationItem, QueryProcessingItem, load_items
from tests.conftest import corpus_dir

REPO = Path(__file__).resolve().parents[2]
DATASETS = {
    "query_processing": (REPO / "datasets" / "query_processing" / "v1.jsonl", QueryProcessingItem),
    "generation": (REPO / "datasets" / "generation" / "v1.jsonl", GenerationItem),
}
PAGE_SUFFIXES = (".md", ".mdx", ".adoc")


def test_every_bad_record_is_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"id": "g1", "query": "q", "code_expected": True}
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                json.dumps({"id": "g2", "query": "q"}),  # code_expected missing
                json.dumps({**good, "expected": {"api": "Map"}}),  # a string, not a list
                json.dumps({**good, "colour": "blue"}),  # unknown field
                "",
                json.dumps(good),  # duplicate id
            ]
        )
    )
    with pytest.raises(DatasetError) as caught:
        load_items(path, GenerationItem)
    message = str(caught.value)
    assert message.startswith(f"5 bad record(s) in {path}:")
    assert f"{path}:2: not JSON" in message
    assert f"{path}:3: code_expected: Field required" in message
    assert f"{path}:4: expected.api: Input should be a valid list" in message
    assert f"{path}:5: colour: Extra inputs are not permitted" in message
    assert f"{path}:7: id 'g1' already used on line 1" in message
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_items(tmp_path / "missing.jsonl", GenerationItem)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_repository_datasets_are_valid_and_cover_every_source(name: str) -> None:
    path, model = DATASETS[name]
    items = load_items(path, model)
    assert len(items) >= 60
    settings = load_settings(environ={})
    corpus = corpus_dir()
    covered: dict[str, int] = {}
    for item in items:
        agent = settings.agents[item.agent]  # every item names a known agent
        assert agent.sources is None or set(item.sources) <= set(agent.sources), item.id
        for source in item.sources:
            covered[source] = covered.get(source, 0) + 1
        for page in getattr(item, "relevant", []) + getattr(item, "also_relevant", []):
            if page.source == "corelib_docs":
                assert page.path.startswith("core::"), (item.id, page)
            else:
                assert page.path.endswith(PAGE_SUFFIXES) and (corpus / page.source / page.path).is_file(), (
                    item.id,
                    page,
                )
    corpus_sources = {p.name for p in corpus.iterdir() if p.is_dir()}
    assert {s for s, n in covered.items() if n >= 5} >= corpus_sources, covered
    assert {i.agent for i in items} == {"cairo-coder", "starknet-agent", "scarb-assistant"}
    assert any(i.history for i in items) and any(i.off_topic for i in items)
