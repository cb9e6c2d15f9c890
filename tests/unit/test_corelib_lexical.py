"""Core library item extraction and the code-aware tokenizer."""

from __future__ import annotations

from cairo_coder import lexical
from cairo_coder.ingest.corelib import extract_items, humanize, module_path, summary_words

SOURCE = """//! Arrays of things.
//!
//! # Examples
//!
//! ```
//! let a = array![1];
//! ```

/// The array type.
pub extern type Array<T>;

extern fn array_new<T>() -> Array<T> nopanic;

/// Basic trait for the `Array` type.
#[generate_trait]
pub impl ArrayImpl<T> of ArrayTrait<T> {
    /// Constructs a new, empty `Array<T>`.
    #[inline]
    fn new() -> Array<T> nopanic {
        array_new()
    }

    /// Adds a value at the end. "Braces { in strings" do not confuse the scanner.
    fn append(ref self: Array<T>, value: T) nopanic {
        let _s = "}";
        array_append(ref self, value)
    }
}

/// A span.
#[derive(Copy, Drop)]
pub struct Span<T> {
    pub(crate) snapshot: @Array<T>,
}

pub(crate) fn internal_only() {}

/// Divides felts.
pub extern fn felt252_div(lhs: felt252, rhs: NonZero<felt252>) -> felt252 nopanic;

/// A nested module.
pub mod inner {
    /// Answer.
    pub const ANSWER: u32 = 42;
}

#[cfg(not(gas: "disabled"))]
/// Documented variant.
pub extern fn withdraw_gas() -> Option<()> nopanic;
#[cfg(gas: "disabled")]
pub fn withdraw_gas() -> Option<()> nopanic { Some(()) }
"""


def test_module_paths() -> None:
    assert module_path("src/lib.cairo") == "core"
    assert module_path("src/array.cairo") == "core::array"
    assert module_path("src/starknet/storage/vec.cairo") == "core::starknet::storage::vec"
    assert module_path("array.cairo") == "core::array"


def test_extracts_public_items_with_docs_and_signatures() -> None:
    items = {item.path: item for item in extract_items(SOURCE, "src/array.cairo")}
    assert set(items) == {
        "core::array",
        "core::array::Array",
        "core::array::ArrayImpl",
        "core::array::ArrayTrait",
        "core::array::Span",
        "core::array::felt252_div",
        "core::array::inner",
        "core::array::inner::ANSWER",
        "core::array::withdraw_gas",
    }
    assert "internal_only" not in str(items) and "array_new" not in str(items)
    trait = items["core::array::ArrayTrait"]
    assert trait.kind == "trait" and [m.name for m in trait.methods] == ["new", "append"]
    assert trait.methods[0].doc == "Constructs a new, empty `Array<T>`."
    assert trait.methods[1].signature == "fn append(ref self: Array<T>, value: T) nopanic"
    div = items["core::array::felt252_div"]
    assert div.signature.endswith("pub extern fn felt252_div(lhs: felt252, rhs: NonZero<felt252>) -> felt252 nopanic")
    assert div.doc == "Divides felts."
    assert "#[derive(Copy, Drop)]" in items["core::array::Span"].signature
    assert items["core::array::withdraw_gas"].doc == "Documented variant."
    module = items["core::array"]
    assert module.doc.startswith("Arrays of things.") and "### Examples" in module.doc  # demoted heading
    markdown = trait.markdown()
    assert markdown.startswith("# core::array::ArrayTrait") and "### append" in markdown


def test_tokenizer_keeps_identifiers_and_their_parts() -> None:
    terms = lexical.tokenize("Use ArrayTrait::new and felt252_div with get_caller_address in the contracts")
    for term in (
        "arraytrait::new",
        "arraytrait",
        "array",
        "trait",
        "felt252_div",
        "felt252",
        "div",
        "get_caller_address",
        "caller",
        "address",
        "contract",
    ):
        assert term in terms
    assert "the" not in terms and "in" not in terms


def test_identifiers_for_symbol_lookup() -> None:
    assert lexical.identifiers("What does felt252_div do? And core::array::ArrayTrait, SpanTrait, u256?") == [
        "felt252_div",
        "core::array::arraytrait",
        "spantrait",
    ]


def test_an_impl_of_a_trait_in_the_same_file_documents_its_methods_on_the_trait_only() -> None:
    items = {item.path: item for item in extract_items(SOURCE, "src/array.cairo")}
    impl, trait = items["core::array::ArrayImpl"], items["core::array::ArrayTrait"]
    assert impl.methods == [] and impl.implements == "ArrayTrait"
    assert "its methods are documented on `core::array::ArrayTrait`" in impl.markdown()
    assert "### append" not in impl.markdown() and [m.name for m in trait.methods] == ["new", "append"]
    separate = """/// Things that hold.
pub trait HoldTrait<T> {
    fn hold(self: T) -> T;
    /// Documented on the trait.
    fn keep(self: T) -> T;
}

/// The impl.
pub impl HoldImpl<T> of HoldTrait<T> {
    /// Holds a value (documented on the impl).
    fn hold(self: T) -> T { self }
    /// Not copied: the trait has its own doc.
    fn keep(self: T) -> T { self }
}
"""
    held = {item.path: item for item in extract_items(separate, "src/hold.cairo")}
    methods = {m.name: m.doc for m in held["core::hold::HoldTrait"].methods}
    assert methods == {"hold": "Holds a value (documented on the impl).", "keep": "Documented on the trait."}
    assert held["core::hold::HoldImpl"].methods == []


def test_summaries_describe_items_and_methods_in_words() -> None:
    assert humanize("get_contract_address") == "get contract address"
    assert humanize("ArrayTrait") == "array trait" and humanize("u256") == "u256"
    assert humanize("EvalCircuitTrait") == "eval circuit trait"
    items = {item.path: item for item in extract_items(SOURCE, "src/array.cairo")}
    assert items["core::array::felt252_div"].summaries() == ["felt252 div: Divides felts."]
    trait = items["core::array::ArrayTrait"]
    assert trait.summaries() == ["array trait: Basic trait for the Array type."]
    assert trait.summaries({"new"}) == ["new (array trait): Constructs a new, empty Array<T>."]
    assert items["core::array::ArrayImpl"].summaries() == [], "an impl is never what a question describes"
    assert items["core::array"].summaries() == []
    long = "word " * 100
    assert len(summary_words(f"{long}\n\nsecond paragraph").split()) == 60


def test_hex_felts_that_encode_short_strings_are_decoded_first() -> None:
    failure = (
        "[FAIL] tests::test_withdraw\n\nFailure data:\n    0x7536345f737562204f766572666c6f77 "
        "('u64_sub Overflow')\n contract 0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d"
    )
    assert lexical.short_strings(failure) == ["u64_sub Overflow"], "an address is not a message"
    assert lexical.with_decoded_messages(failure) == "u64_sub Overflow\n" + failure
    assert lexical.short_strings("chain id 0x534e5f5345504f4c4941, hash 0x1234abcd") == ["SN_SEPOLIA"]
    assert lexical.with_decoded_messages("How do I emit an event?") == "How do I emit an event?"
    assert lexical.short_strings("0x0000000000000000000000000000000000000000004661696c6564") == ["Failed"]


def test_a_long_paste_is_searched_by_its_prose_and_error_lines() -> None:
    failure = (
        "problem persist: [FAIL] starkpulse_integrationtest::test_user_management_contract::test_update_reputation\n"
        "\nFailure data:\n    0x7536345f737562204f766572666c6f77 ('u64_sub Overflow')\n\n"
        "note: run with `SNFORGE_BACKTRACE=1` environment variable to display a backtrace\n"
    )
    assert lexical.salient_text(failure).splitlines() == [
        "problem persist: [FAIL] starkpulse_integrationtest::test_user_management_contract::test_update_reputation",
        "('u64_sub Overflow')",  # the hex number is dropped, the message it encodes stays
        "note: run with `SNFORGE_BACKTRACE=1` environment variable to display a backtrace",
    ]
    code = "fn create_invoice(ref self: ContractState, amount: u256) -> u128 {\n    let caller = get_caller();\n"
    question = "why does the write to my storage map not compile? it says"
    pasted = f"{question}\n\n{code * 3}error: Method `write` could not be called on type `StoragePath`.\n"
    assert lexical.salient_text(pasted).splitlines() == [
        question,
        "error: Method `write` could not be called on type `StoragePath`.",
    ]
    short = "how do I fix: let x: u8 = 300; error: overflow"
    assert lexical.salient_text(short) == short, "a short question is searched whole"
    only_code = "fn main() {\n    let mut arr = ArrayTrait::new();\n    arr.append(1);\n}\n" * 5
    assert lexical.salient_text(only_code) == only_code, "a paste with nothing else is searched as it is"
