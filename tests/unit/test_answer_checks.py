"""The answer checks of `eval generation` on hand-checked answers (each expected verdict was decided by reading
the answer, not by running the code under test)."""

from __future__ import annotations

from cairo_coder.answer_checks import (
    answer_score,
    cairo_code,
    check_citations_of,
    check_code_block,
    check_expected,
    check_legacy,
    code_blocks,
    deterministic_checks,
    feedback,
)
from cairo_coder.datasets import Expected, GenerationItem

GOOD = """Declare the map in the storage struct [1] and read it with `read` [2].

```cairo
use starknet::storage::{Map, StorageMapReadAccess, StorageMapWriteAccess};
use starknet::ContractAddress;

#[starknet::contract]
mod Balances {
    use super::{Map, ContractAddress};

    #[storage]
    struct Storage {
        balances: Map<ContractAddress, u256>,
    }
}
```
"""

LEGACY = """Use a legacy map [1]:

```cairo
#[storage]
struct Storage {
    balances: LegacyMap::<felt, u256>,
}
```
"""


def item(**fields: object) -> GenerationItem:
    base: dict[str, object] = {"id": "gen-x", "query": "How do I keep balances per address?", "code_expected": True}
    return GenerationItem.model_validate({**base, **fields})


def test_code_blocks_and_cairo_code() -> None:
    blocks = code_blocks(GOOD + '\n```toml\n[dependencies]\nstarknet = "2.12.2"\n```\n')
    assert [b.language for b in blocks] == ["cairo", "toml"]
    assert blocks[1].code == '[dependencies]\nstarknet = "2.12.2"'
    assert cairo_code(GOOD).startswith("use starknet::storage::{Map,") and "```" not in cairo_code(GOOD)


def test_code_block_check() -> None:
    assert check_code_block(item(), GOOD).status == "passed"
    missing = check_code_block(item(), "Use a Map in storage [1].")
    assert missing.status == "failed" and missing.score == 0.0 and "no fenced code block" in missing.detail
    assert check_code_block(item(code_expected=False), "prose only").status == "skipped"


def test_legacy_syntax_check() -> None:
    assert check_legacy(item(), GOOD).status == "passed"
    legacy = check_legacy(item(), LEGACY)
    assert legacy.status == "failed" and "LegacyMap" in legacy.detail and "felt type" in legacy.detail
    cairo0 = "```cairo\n%lang starknet\n@storage_var\nfunc balance() -> (res: felt):\nend\n```"
    detail = check_legacy(item(), cairo0).detail
    assert "%lang" in detail and "func" in detail and "@storage_var" in detail
    assert check_legacy(item(), "```cairo\nlet x: felt252 = 'felt';\n```").status == "passed"
    forbidden = check_legacy(item(forbidden=["#[external(v0)]"]), "```cairo\n#[external(v0)]\nimpl A of B {}\n```")
    assert forbidden.status == "failed" and "#[external(v0)]" in forbidden.detail


def test_citations_check() -> None:
    assert check_citations_of(GOOD, 2).score == 1.0
    half = check_citations_of("See [1] and [3].", 2)
    assert half.score == 0.5 and "[3]" in half.detail
    none = check_citations_of("No citation here.", 3)
    assert none.status == "failed" and none.score == 0.0
    assert check_citations_of("```cairo\nlet a = arr[1];\n```", 0).status == "skipped", "an index is not a citation"


def test_expected_elements_check() -> None:
    expected = Expected(
        api=["Map", "StorageMapReadAccess"], attributes=["#[storage]"], imports=["starknet::storage::Map"]
    )
    assert check_expected(item(expected=expected.model_dump()), GOOD).score == 1.0, "imports from a brace list"
    partial = check_expected(item(expected={"api": ["Map", "get_caller_address"], "imports": ["core::poseidon"]}), GOOD)
    assert partial.score == round(1 / 3, 4)
    assert "API item get_caller_address" in partial.detail and "import core::poseidon" in partial.detail
    assert check_expected(item(), GOOD).status == "skipped"


def test_off_topic_must_be_declined_and_score_is_the_mean_of_what_ran() -> None:
    off = item(query="Best pasta recipe?", code_expected=False)
    declined = deterministic_checks(off, "I can only help with Cairo and Starknet development.", 0)
    assert [c.name for c in declined] == ["declines", "legacy_syntax"] and answer_score(declined) == 1.0
    answered = deterministic_checks(off, "Boil water, add salt, then the pasta.", 0)
    assert answer_score(answered) == 0.5
    checks = deterministic_checks(item(expected={"api": ["Map", "Vec"]}), GOOD, 2)
    assert [c.status for c in checks] == ["passed", "passed", "passed", "failed"]
    assert answer_score(checks) == round((1 + 1 + 1 + 0.5) / 4, 4)
    assert "expected: failed: missing: API item Vec" in feedback(checks)
