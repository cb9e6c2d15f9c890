"""Rank fusion and page support: pure functions, checked against their definitions."""

from __future__ import annotations

import random

from cairo_coder.store.search import PageKinds, lift_page, lifts_api_item, page_support, reciprocal_rank_fusion


def _page_support_by_definition(
    scored: list[tuple[int, float]], page_of: dict[int, tuple[str, str]], top: int, decay: float
) -> list[tuple[int, float]]:
    out = []
    for doc_id, score in scored:
        others = sorted((s for d, s in scored if page_of[d] == page_of[doc_id] and d != doc_id), reverse=True)
        out.append((doc_id, score + decay * sum(others[:top])))
    return sorted(out, key=lambda item: (-item[1], item[0]))


def test_page_support_matches_its_definition_with_ties_and_single_chunk_pages() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 40)
        # Few distinct scores, so that equal scores on one page (the case a naive removal gets wrong) are common.
        scored = [(doc_id, rng.choice([0.1, 0.2, 0.25, 0.5, 1.0])) for doc_id in range(n)]
        page_of = {doc_id: ("book", f"page-{rng.randint(0, n // 3)}") for doc_id in range(n)}
        for top in (1, 2, 3):
            assert page_support(scored, page_of, top=top, decay=0.3) == _page_support_by_definition(
                scored, page_of, top, 0.3
            )


def test_page_support_lifts_a_page_that_several_chunks_come_from() -> None:
    scored = [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.1)]
    page_of = {1: ("s", "lucky"), 2: ("s", "solid"), 3: ("s", "solid"), 4: ("s", "solid")}
    ranked = page_support(scored, page_of, top=2, decay=0.3)
    assert [doc_id for doc_id, _ in ranked[:2]] == [2, 3]
    assert ranked[0][1] == 0.9 + 0.3 * (0.8 + 0.1)


def test_reciprocal_rank_fusion_sums_weighted_reciprocal_ranks_and_breaks_ties_by_id() -> None:
    fused = reciprocal_rank_fusion([([(7, 9.0), (3, 5.0)], 1.0), ([(3, 0.9), (7, 0.8)], 1.0)], rrf_k=60)
    assert fused == [(3, 1 / 61 + 1 / 62), (7, 1 / 61 + 1 / 62)]  # equal scores: the lower id first
    weighted = reciprocal_rank_fusion([([(1, 0.0)], 2.0), ([(2, 0.0)], 1.0)], rrf_k=10)
    assert weighted == [(1, 2 / 11), (2, 1 / 11)]


def test_page_kinds_match_reference_globs_per_source() -> None:
    kinds = PageKinds({"openzeppelin_docs": ["modules/ROOT/pages/api/*"], "corelib_docs": ["*"]}, 0.8)
    assert kinds.is_reference(("openzeppelin_docs", "modules/ROOT/pages/api/erc20.adoc"))
    assert not kinds.is_reference(("openzeppelin_docs", "modules/ROOT/pages/erc20.adoc"))
    assert kinds.is_reference(("corelib_docs", "core::array::ArrayTrait"))
    assert not kinds.is_reference(("cairo_book", "modules/ROOT/pages/api/erc20.adoc")), "globs are per source"


def test_page_kinds_weigh_reference_pages_and_rerank() -> None:
    page_of = {
        1: ("openzeppelin_docs", "modules/ROOT/pages/api/erc20.adoc"),
        2: ("openzeppelin_docs", "modules/ROOT/pages/erc20.adoc"),
        3: ("cairo_book", "ch01.md"),
    }
    scored = [(1, 1.0), (2, 0.9), (3, 0.5)]
    assert PageKinds({"openzeppelin_docs": ["modules/ROOT/pages/api/*"]}, 0.8).weigh(scored, page_of) == [
        (2, 0.9),
        (1, 0.8),
        (3, 0.5),
    ]
    assert PageKinds({"openzeppelin_docs": ["modules/ROOT/pages/api/*"]}, 1.0).weigh(scored, page_of) == scored
    assert PageKinds({}, 0.5).weigh(scored, page_of) == scored


def test_lift_page_moves_or_inserts_a_chunk_to_a_page_position() -> None:
    page_of = {1: ("s", "a"), 2: ("s", "a"), 3: ("s", "b"), 4: ("s", "c"), 5: ("s", "d"), 9: ("r", "item")}
    ranked = [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7), (5, 0.6)]
    # Not ranked: inserted before the chunk that starts the third page, with that chunk's score.
    assert lift_page(ranked, page_of, 9, 3) == [(1, 1.0), (2, 0.9), (3, 0.8), (9, 0.7), (4, 0.7), (5, 0.6)]
    # Ranked lower: moved up.
    ranked_low = [*ranked, (9, 0.1)]
    assert lift_page(ranked_low, page_of, 9, 2) == [(1, 1.0), (2, 0.9), (9, 0.8), (3, 0.8), (4, 0.7), (5, 0.6)]
    # Its page already at or above the position: unchanged (also when another chunk of the page is there).
    assert lift_page(ranked, page_of, 3, 3) == ranked
    assert lift_page(ranked, page_of, 2, 1) == ranked
    # Fewer pages than the position: appended at the end.
    assert lift_page([(1, 1.0)], page_of, 9, 3) == [(1, 1.0), (9, 1.0)]
    assert lift_page([], page_of, 9, 1) == [(9, 0.0)]
    assert lift_page(ranked, page_of, 9, 1)[0] == (9, 1.0)


def test_an_api_item_is_lifted_when_its_description_is_similar_enough_and_near_the_best_chunk() -> None:
    from cairo_coder.config import SearchSettings

    defaults = SearchSettings()
    floor, margin = defaults.api_item_similarity, defaults.api_item_margin
    assert (floor, margin) == (0.4, -0.05)
    assert lifts_api_item(0.62, 0.66, floor, margin)  # within the margin of the best chunk
    assert not lifts_api_item(0.60, 0.66, floor, margin)  # the guide is clearly nearer: left alone
    assert lifts_api_item(0.70, 0.66, floor, margin)
    assert not lifts_api_item(0.39, 0.30, floor, margin)  # never below the floor, however weak the chunks
    assert lifts_api_item(0.40, 0.30, floor, margin)
    assert not lifts_api_item(0.99, 0.0, 1.0, margin)  # api_item_similarity = 1.0: never
