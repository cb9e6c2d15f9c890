"""A small corpus laid out like ../shared/corpus, written by tests (two sources, includes, a bad page)."""

from __future__ import annotations

from pathlib import Path

PAGES = {
    "cairo_book/ch01-storage.md": (
        "# Contract Storage\n\nContracts keep persistent data in storage variables declared in the `Storage` "
        "struct.\n\n## Reading and Writing\n\nUse `read` and `write` on storage variables.\n\n```cairo\n"
        "{{#include ../listings/ch01/src/lib.cairo:storage}}\n```\n\n## Storage Mappings\n\n"
        "A `Map` associates keys with values in contract storage, like a hash table.\n"
    ),
    "cairo_book/ch02-arrays.md": (
        "# Arrays\n\nAn array is a collection of elements of the same type. You can append elements and pop "
        "from the front.\n\n```cairo\n{{#rustdoc_include ../listings/ch02/src/lib.cairo:append}}\n```\n"
    ),
    "cairo_book/ch03-broken.md": "---\ntitle: Broken\n\n# Never closed front matter\n",
    "cairo_book/ch04-missing.md": (
        "# Missing listing\n\nThis page explains felt252 arithmetic even though its listing is gone.\n\n"
        "```cairo\n{{#include ../listings/nowhere/src/lib.cairo}}\n```\n"
    ),
    "cairo_book/SUMMARY.md": "# Summary\n\n- [Storage](./ch01-storage.md)\n",
    "cairo_book/listings/ch01/src/lib.cairo": (
        "#[starknet::contract]\nmod Counter {\n    // ANCHOR: storage\n    #[storage]\n    struct Storage {\n"
        "        counter: u128,\n    }\n    // ANCHOR_END: storage\n}\n"
    ),
    "cairo_book/listings/ch02/src/lib.cairo": (
        "fn main() {\n    // ANCHOR: append\n    let mut arr = ArrayTrait::new();\n    arr.append(42);\n"
        "    // ANCHOR_END: append\n}\n"
    ),
    "scarb_docs/reference/manifest.md": (
        "# Manifest Format\n\nThe `Scarb.toml` file of every package is called its manifest.\n\n"
        "## `[package]`\n\n### `edition`\n\nThe edition key selects the Cairo language edition. "
        "When absent, the default edition is assumed.\n"
    ),
    "scarb_docs/guides/dependencies.md": (
        "# Managing dependencies\n\nAdd a dependency with `scarb add` or by editing `[dependencies]` in "
        "Scarb.toml. Git dependencies can pin a tag or a revision.\n"
    ),
}


def write_mini_corpus(root: Path) -> Path:
    for rel, text in PAGES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
