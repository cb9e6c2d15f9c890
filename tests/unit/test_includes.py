"""Include directives resolve to the real code (anchors, ranges, regions, tags), never the directive."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from cairo_coder.ingest.includes import IncludeError, IncludeResolver

LISTING = """// ANCHOR: all
use core::array::ArrayTrait;
// ANCHOR: main
fn main() {
    let mut a = ArrayTrait::new();
    // ANCHOR: append
    a.append(1);
    // ANCHOR_END: append
}
// ANCHOR_END: main
// ANCHOR_END: all
"""


@pytest.fixture
def book(tmp_path: Path) -> Path:
    (tmp_path / "listings" / "ch01" / "src").mkdir(parents=True)
    (tmp_path / "listings" / "ch01" / "src" / "lib.cairo").write_text(LISTING)
    (tmp_path / "listings" / "ch01" / "Scarb.toml").write_text('[package]\nname = "x"\n')
    return tmp_path


def resolver(root: Path) -> IncludeResolver:
    return IncludeResolver(root, {"../listings/": "listings/"})


def test_mdbook_anchor_excludes_markers_and_dedents(book: Path) -> None:
    text = "```cairo\n{{#include ../listings/ch01/src/lib.cairo:append}}\n```"
    out = resolver(book).resolve_mdbook(text, PurePosixPath("ch01-01.md"))
    assert out == "```cairo\na.append(1);\n```"


def test_mdbook_nested_anchor_drops_inner_markers(book: Path) -> None:
    out = resolver(book).resolve_mdbook(
        "{{#rustdoc_include ../listings/ch01/src/lib.cairo:main}}", PurePosixPath("ch01-01.md")
    )
    assert "fn main()" in out and "a.append(1);" in out
    assert "ANCHOR" not in out and "use core::array" not in out


def test_mdbook_whole_file_and_line_ranges(book: Path) -> None:
    r = resolver(book)
    whole = r.resolve_mdbook("{{#include ../listings/ch01/Scarb.toml}}", PurePosixPath("a.md"))
    assert whole == '[package]\nname = "x"'
    lines = r.resolve_mdbook("{{#include ../listings/ch01/src/lib.cairo:4:5}}", PurePosixPath("a.md"))
    assert lines == "fn main() {\n    let mut a = ArrayTrait::new();"
    single = r.resolve_mdbook("{{#include ../listings/ch01/src/lib.cairo:2}}", PurePosixPath("a.md"))
    assert single == "use core::array::ArrayTrait;"
    tail = r.resolve_mdbook("{{#include ../listings/ch01/src/lib.cairo:8:}}", PurePosixPath("a.md"))
    assert tail == "}"  # anchor marker lines in the range are dropped


def test_mdbook_page_in_subfolder_resolves_relative_to_page(book: Path) -> None:
    out = resolver(book).resolve_mdbook(
        "{{#include ../../listings/ch01/src/lib.cairo:append}}", PurePosixPath("sub/dir/page.md")
    )
    assert out == "a.append(1);"


def test_missing_target_and_missing_anchor_raise(book: Path) -> None:
    r = resolver(book)
    with pytest.raises(IncludeError, match="not found"):
        r.resolve_mdbook("{{#include ../listings/nope.cairo}}", PurePosixPath("a.md"))
    with pytest.raises(IncludeError, match="anchor 'nope' not found"):
        r.resolve_mdbook("{{#include ../listings/ch01/src/lib.cairo:nope}}", PurePosixPath("a.md"))
    assert "../listings/nope.cairo" in r.missing


def test_vocs_include_with_region(tmp_path: Path) -> None:
    (tmp_path / "listings" / "app" / "src").mkdir(parents=True)
    (tmp_path / "listings" / "app" / "src" / "c.cairo").write_text(
        "// [!region contract]\n#[starknet::contract]\nmod C {\n    // [!region inner]\n    fn f() {}\n"
        "    // [!endregion inner]\n}\n// [!endregion contract]\n// [!region tests]\n#[test]\nfn t() {}\n"
        "// [!endregion tests]\n"
    )
    page = "# Title\n\n```cairo\n// [!include ~/listings/app/src/c.cairo:contract]\n```\n"
    out = IncludeResolver(tmp_path, {"~/": ""}).resolve_vocs(page, PurePosixPath("apps/page.md"))
    assert "#[starknet::contract]\nmod C {\n    fn f() {}\n}" in out
    assert "[!include" not in out and "[!region" not in out and "#[test]" not in out


def test_asciidoc_tags_and_partials(tmp_path: Path) -> None:
    pages = tmp_path / "modules" / "ROOT" / "pages"
    (pages / "api").mkdir(parents=True)
    (pages / "utils").mkdir()
    (pages / "api" / "access.adoc").write_text(
        "= Access\n// tag::owner[]\n`owner()` returns the owner.\n// end::owner[]\nother\n"
        "// tag::renounce[]\n`renounce_ownership()` leaves the contract without owner.\n// end::renounce[]\n"
    )
    (pages / "utils" / "_common.adoc").write_text(":shared: value\n")
    page = "= Ownable\ninclude::../utils/_common.adoc[]\n\ninclude::./access.adoc[tag=owner]\n"
    out = IncludeResolver(tmp_path).resolve_asciidoc(page, PurePosixPath("modules/ROOT/pages/api/ownable.adoc"))
    assert ":shared: value" in out
    assert "`owner()` returns the owner." in out
    assert "tag::" not in out and "other" not in out and "include::" not in out
    both = IncludeResolver(tmp_path).resolve_asciidoc(
        "include::access.adoc[tags=owner;renounce]", PurePosixPath("modules/ROOT/pages/api/x.adoc")
    )
    assert "owner()" in both and "renounce_ownership()" in both
