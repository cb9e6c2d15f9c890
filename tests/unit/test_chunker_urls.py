"""Chunking (code blocks never split, heading trails, anchors) and the public URL rules of every source."""

from __future__ import annotations

import pytest

from cairo_coder.config import load_settings
from cairo_coder.ingest.chunker import blocks, chunk_page
from cairo_coder.ingest.readers import read_asciidoc, read_markdown
from cairo_coder.ingest.urls import page_url, slugify, with_anchor

SETTINGS = load_settings(environ={})


def test_code_fence_with_blank_lines_is_one_block() -> None:
    text = "para one\n\n```cairo\nfn a() {}\n\nfn b() {}\n```\n\npara two"
    assert blocks(text) == ["para one", "```cairo\nfn a() {}\n\nfn b() {}\n```", "para two"]


def test_large_sections_split_between_blocks_never_inside_code() -> None:
    code = "```cairo\n" + "\n".join(f"fn f{i}() {{}}\n" for i in range(200)) + "```"
    prose = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(12))
    page = read_markdown(f"# Big\n\n## Part\n\n{prose}\n\n{code}\n\n{prose}\n", "big.md", None)
    chunks = chunk_page(page, "mdbook", target_chars=1200, max_chars=2500)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.content.count("```") % 2 == 0, "a chunk boundary fell inside a code block"
    assert any(c.content.startswith("```cairo") and c.content.endswith("```") for c in chunks)
    assert all(c.trail == ["Big", "Part"] and c.anchor == "part" for c in chunks[1:])
    assert [c.number for c in chunks] == list(range(len(chunks)))


def test_small_sections_merge_forward_and_keep_trail() -> None:
    page = read_markdown(
        "# Title\n\nShort intro.\n\n## A\n\nshort a\n\n### A1\n\n"
        + "long text " * 80
        + "\n\n## B\n\n"
        + "b text " * 80,
        "t.md",
        None,
    )
    chunks = chunk_page(page, "mdbook", target_chars=1000, max_chars=2000, min_chars=200)
    assert chunks[0].trail == ["Title"] and "## A" in chunks[0].content and chunks[0].headings
    last = chunks[-1]
    assert last.trail == ["Title", "B"] and last.anchor == "b"


@pytest.mark.parametrize(
    ("style", "heading", "slug"),
    [
        ("mdbook", "The `Option` Enum and Its Advantages", "the-option-enum-and-its-advantages"),
        ("mdbook", "What is Ownership?", "what-is-ownership"),
        ("github", "Storing Custom Types: structs & enums", "storing-custom-types-structs--enums"),
        ("vitepress", "`[package]` section", "package-section"),
        ("vitepress", "2. Install", "_2-install"),
        ("antora", "Role-Based AccessControl", "role_based_accesscontrol"),
        ("antora", "Computing the interface ID", "computing_the_interface_id"),
    ],
)
def test_slugs_match_each_site_generator(style: str, heading: str, slug: str) -> None:
    assert slugify(heading, style) == slug  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "path", "url"),
    [
        ("cairo_book", "ch06-01-enums.md", "https://book.cairo-lang.org/ch06-01-enums.html"),
        (
            "starknet_foundry",
            "testing/testing.md",
            "https://foundry-rs.github.io/starknet-foundry/testing/testing.html",
        ),
        ("starknet_foundry", "README.md", "https://foundry-rs.github.io/starknet-foundry/index.html"),
        ("scarb_docs", "reference/manifest.md", "https://docs.swmansion.com/scarb/docs/reference/manifest.html"),
        ("cairo_by_example", "components/ownable.md", "https://starknet-by-example.voyager.online/components/ownable"),
        (
            "cairo_by_example",
            "advanced-concepts/account_abstraction/index.md",
            "https://starknet-by-example.voyager.online/advanced-concepts/account_abstraction",
        ),
        (
            "openzeppelin_docs",
            "modules/ROOT/pages/api/token_common.adoc",
            "https://docs.openzeppelin.com/contracts-cairo/2.x/api/token-common",
        ),
        ("openzeppelin_docs", "modules/ROOT/pages/index.adoc", "https://docs.openzeppelin.com/contracts-cairo/2.x"),
        ("dojo_docs", "pages/toolchain/katana/index.md", "https://book.dojoengine.org/toolchain/katana"),
        ("dojo_docs", "pages/overview.mdx", "https://book.dojoengine.org/overview"),
        (
            "starknet_js",
            "account/connect_account.md",
            "https://starknetjs.com/docs/next/guides/account/connect_account",
        ),
    ],
)
def test_page_urls(source: str, path: str, url: str) -> None:
    assert page_url(SETTINGS.source(source), path) == url


def test_section_anchor_in_chunk_url_and_duplicates_numbered() -> None:
    book = SETTINGS.source("cairo_book")
    page = read_markdown(
        "# Enums\n\n" + "x " * 300 + "\n\n## Example\n\n" + "y " * 300 + "\n\n## Example\n\n" + "z " * 300,
        "ch06-01-enums.md",
        None,
    )
    chunks = chunk_page(page, book.slug)
    urls = [with_anchor(book, page_url(book, "ch06-01-enums.md"), c.anchor) for c in chunks]
    assert urls == [
        "https://book.cairo-lang.org/ch06-01-enums.html#enums",
        "https://book.cairo-lang.org/ch06-01-enums.html#example",
        "https://book.cairo-lang.org/ch06-01-enums.html#example-1",
    ]


def test_openzeppelin_explicit_anchor_wins() -> None:
    oz = SETTINGS.source("openzeppelin_docs")
    page = read_asciidoc(
        "= Access\n\n"
        + "a " * 300
        + "\n\n[#ownership-and-ownable]\n== Ownership and `Ownable`\n\n"
        + "b " * 300
        + "\n\n== Role-Based AccessControl\n\n"
        + "c " * 300,
        "modules/ROOT/pages/access.adoc",
        None,
    )
    anchors = [c.anchor for c in chunk_page(page, oz.slug)]
    assert anchors == ["access", "ownership-and-ownable", "role_based_accesscontrol"]
