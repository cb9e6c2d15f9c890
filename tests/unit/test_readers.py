"""Markdown, MDX and AsciiDoc readers: titles, sections, front matter, JSX and AsciiDoc conversion."""

from __future__ import annotations

import pytest

from cairo_coder.ingest.readers import BadPageError, read_asciidoc, read_markdown


def test_markdown_front_matter_title_and_sections() -> None:
    page = read_markdown(
        "---\ntitle: Storage\nsidebar_position: 2\n---\n\nIntro text.\n\n## Reading\n\nread it\n\n"
        "```cairo\n# not a heading\nfn f() {}\n```\n\n### Deeper\n\nmore\n",
        "guide/storage.md",
        None,
    )
    assert page.title == "Storage"
    assert page.front_matter["sidebar_position"] == "2"
    assert [(s.level, s.heading) for s in page.sections] == [(0, ""), (2, "Reading"), (3, "Deeper")]
    assert "# not a heading" in page.sections[1].text  # headings inside code fences are code


def test_title_falls_back_to_first_heading_then_file_name() -> None:
    assert read_markdown("# The Book\n\ntext", "x.md", None).title == "The Book"
    assert read_markdown("just text", "guides/fuzz_testing.md", None).title == "Fuzz testing"


def test_broken_front_matter_is_a_bad_page() -> None:
    with pytest.raises(BadPageError, match="no closing '---'"):
        read_markdown("---\ntitle: x\n\n# Body\n", "bad.md", None)
    with pytest.raises(BadPageError, match="broken front matter"):
        read_markdown("---\ntitle: x\nthis is not yaml\n---\n# Body\n", "bad.md", None)


def test_mdbook_variables_and_cross_references() -> None:
    page = read_markdown(
        '# Setup\n\n{{#label setup}}\nsnforge_std = "{{snforge_std_version}}"\nSee {{#ref my-listing}}.\n'
        "{{#quiz ../quizzes/ch01.toml}}\n",
        "a.md",
        None,
        {"snforge_std_version": "0.63.0"},
    )
    text = page.sections[0].text
    assert 'snforge_std = "0.63.0"' in text
    assert "See my listing." in text
    assert "{{#" not in text


def test_mdx_drops_imports_and_jsx_but_keeps_text_and_code() -> None:
    page = read_markdown(
        '---\ntitle: Overview\n---\nimport { LinkCard } from "../components/LinkCard";\n'
        'import Logo from "./logo.svg";\n\n<Logo />\n\n<LinkCard\n  title="Katana"\n  href="/katana"\n/>\n\n'
        '<p className="text-xl">\n    Dojo is an ECS framework.\n</p>\n\n## Code\n\n```tsx\nimport x from "y";\n'
        "<App />\n```\n",
        "pages/overview.mdx",
        None,
        mdx=True,
    )
    body = "\n".join(s.text for s in page.sections)
    assert "Dojo is an ECS framework." in body
    assert "LinkCard" not in body and "<Logo" not in body and "<p" not in body
    assert 'import x from "y";\n<App />' in body  # code is untouched


def test_asciidoc_conversion_keeps_code_and_explicit_anchors() -> None:
    page = read_asciidoc(
        "= ERC20\n:eip20: https://eips.ethereum.org/EIPS/eip-20[EIP-20]\n\nImplements {eip20}. See "
        "xref:access.adoc#ownership[Ownership].\n\n[#custom-id]\n== Usage\n\n[,cairo]\n----\n"
        "#[starknet::contract]\nmod MyToken {}\n----\n\n=== Sub section\n\nNOTE: careful\n\n"
        "////\nhidden comment\n////\n// a line comment\n",
        "modules/ROOT/pages/erc20.adoc",
        None,
    )
    assert page.title == "ERC20"
    texts = [s.text for s in page.sections]
    assert "Implements EIP-20. See Ownership." in texts[0]
    usage = page.sections[1]
    assert (usage.level, usage.heading, usage.explicit_anchor) == (2, "Usage", "custom-id")
    assert "```cairo\n#[starknet::contract]\nmod MyToken {}\n```" in usage.text
    assert "hidden comment" not in "\n".join(texts) and "a line comment" not in "\n".join(texts)
