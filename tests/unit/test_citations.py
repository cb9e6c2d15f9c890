"""Which numbered sources an answer cites: [n] in prose, never an index in code or a Markdown link."""

from __future__ import annotations

from cairo_coder.citations import Citations, check_citations, cited_numbers


def test_the_citation_forms_models_write_in_order_of_first_citation() -> None:
    answer = "Use a `Map` [2]. Reading needs the trait [2][4], see also [1, 3] and [5-7]; again [1]."
    assert cited_numbers(answer) == [2, 4, 1, 3, 5, 6, 7]


def test_code_indexes_and_links_are_not_citations() -> None:
    answer = (
        "Arrays are indexed:\n\n```cairo\nlet x = arr[9];\nlet y = matrix[1][2];\n```\n\n"
        "Inline `a[8]` too, as is arr[10] in prose, and a link [11](https://x.org) or [docs](https://y.org).\n"
        "~~~\nspan[12]\n~~~\n"
        "```cairo\nunclosed[13]"
    )
    assert cited_numbers(answer) == []


def test_citations_split_into_existing_sources_and_unknown_numbers() -> None:
    assert check_citations("A [1]. B [7]. C [0]. D [3].", 5) == Citations(cited=[1, 3], unknown=[7, 0])
    assert check_citations("No citation at all.", 5) == Citations()
    assert check_citations("[1-100] is no range", 5).cited == [1]
