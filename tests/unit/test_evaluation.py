"""Evaluation reports: language detection, breakdowns, the per-item comparison and its sign test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cairo_coder.datasets import PageRef
from cairo_coder.evaluation import (
    DatasetError,
    EvalItem,
    EvalReport,
    ItemResult,
    compare,
    load_report,
    sign_test,
)
from cairo_coder.language import detect_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How do I emit an event from my contract?", "en"),
        ("display felt252 as string", "en"),
        ("Can you fix this?\n```cairo\nfn main() { let x: u8 = 1; }\n```", "en"),
        ("como despliego la cuenta creada con sncast", "es"),
        ("ok antes de proceder vamos paso a paso, ayudame a crear segun la estructura", "es"),
        ("Tôi muốn deploy account lên mainnet, viết comment ít thôi", "vi"),
        ("jaką metodę mam użyć, żeby odpytać przez RPC smart contractem", "pl"),
        ("как я могу локально развернуть сеть старкнет?", "ru"),
        ("介绍一下 Starknet 上的 Paymaster", "zh"),
        ("0x7536345f737562204f766572666c6f77 core::result::Result::<felt252>", "und"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def _result(item_id: str, rank: int | None, query: str = "How do I do it?", origin: str = "user") -> ItemResult:
    item = EvalItem(id=item_id, query=query, origin=origin, relevant=[PageRef(source="cairo_book", path="a.md")])
    return ItemResult(item, [], rank)


def test_breakdown_by_language_and_json_fields() -> None:
    report = EvalReport([_result("a", 1), _result("b", None, "como despliego la cuenta"), _result("c", 4)])
    by_language = report.by_language()
    assert by_language["en"]["n"] == 2 and by_language["en"]["recall@1"] == 0.5
    assert by_language["es"] == {
        "n": 1,
        "recall@1": 0.0,
        "recall@3": 0.0,
        "recall@5": 0.0,
        "recall@10": 0.0,
        "MRR@10": 0.0,
    }
    data = report.to_json()
    assert data["by_language"] == by_language
    assert [item["language"] for item in data["items"]] == ["en", "es", "en"]
    assert data["items"][0]["origin"] == "user"


def test_compare_counts_wins_losses_and_recomputes_earlier_metrics_on_shared_items() -> None:
    earlier = {
        "items": [
            {"id": "a", "rank": 3},
            {"id": "b", "rank": None},
            {"id": "c", "rank": 1},
            {"id": "d", "rank": 2},
            {"id": "gone", "rank": 1},
        ]
    }
    now = EvalReport([_result("a", 1), _result("b", 7), _result("c", None), _result("d", 2), _result("new", 1)])
    result = compare(now, earlier)
    assert [(c.id, c.before, c.after) for c in result.wins] == [("a", 3, 1), ("b", None, 7)]
    assert [(c.id, c.before, c.after) for c in result.losses] == [("c", 1, None)]
    assert result.unchanged == 1
    assert result.only_before == ["gone"] and result.only_after == ["new"]
    # Earlier: ranks 3, -, 1, 2 over a, b, c, d.
    assert result.metrics_before["recall@1"] == 0.25
    assert result.metrics_before["MRR@10"] == round((1 / 3 + 1 + 0.5) / 4, 4)
    assert result.metrics_after["recall@1"] == 0.25 and result.metrics_after["recall@10"] == 0.75
    assert result.to_json()["sign_test_p"] == 1.0


def test_sign_test_matches_the_binomial_by_hand() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    # 8 wins, 2 losses: P(X <= 2) for Binomial(10, 1/2) = (1 + 10 + 45) / 1024, two-sided.
    assert sign_test(8, 2) == pytest.approx(2 * 56 / 1024)
    assert sign_test(3, 3) == 1.0


def test_load_report_rejects_what_is_not_a_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a `cairo-coder eval retrieval --json` report"):
        load_report(bad)
    with pytest.raises(DatasetError, match="no items"):
        compare(EvalReport([_result("a", 1)]), {"n": 3})
    with pytest.raises(DatasetError, match="cannot read report"):
        load_report(tmp_path / "missing.json")
    generation = tmp_path / "generation.json"
    generation.write_text('{"kind": "generation", "items": []}')
    with pytest.raises(DatasetError, match="not a `cairo-coder eval retrieval --json` report"):
        load_report(generation)
    assert load_report(generation, "generation")["kind"] == "generation"
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"items": [{"id": "a", "rank": 2}]}))
    assert compare(EvalReport([_result("a", 1)]), load_report(good)).wins[0].id == "a"
