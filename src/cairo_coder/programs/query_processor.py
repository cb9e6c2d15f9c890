"""Query processing: turn a question (and its chat history) into search queries and documentation sources."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import dspy

from cairo_coder.types import NO_HISTORY, DocumentSource, ProcessedQuery

SOURCE_DESCRIPTIONS: dict[DocumentSource, str] = {
    DocumentSource.CAIRO_BOOK: "The Cairo Book: the language (types, ownership, traits, generics, macros) and "
    "Starknet smart contracts (storage, events, interfaces, components, dispatchers).",
    DocumentSource.STARKNET_DOCS: "Starknet documentation: architecture, accounts, fees, transactions, the "
    "protocol, network details, tooling overview.",
    DocumentSource.STARKNET_FOUNDRY: "Starknet Foundry: snforge (tests, cheatcodes, fuzzing, forking) and sncast "
    "(declare, deploy, invoke, call, scripts).",
    DocumentSource.CAIRO_BY_EXAMPLE: "Starknet by Example: complete example contracts and applications "
    "(ERC20, NFTs, upgradeability, factories, staking, ...).",
    DocumentSource.OPENZEPPELIN_DOCS: "OpenZeppelin Contracts for Cairo: audited components (ERC20, ERC721, "
    "ERC1155, Ownable, AccessControl, accounts, upgrades, governance, utilities).",
    DocumentSource.CORELIB_DOCS: "The Cairo core library API: traits, functions and types of core:: (arrays, "
    "spans, dictionaries, integers, felt252, options, results, hashes, starknet:: syscalls).",
    DocumentSource.SCARB_DOCS: "Scarb, the Cairo build tool and package manager: Scarb.toml, dependencies, "
    "targets, profiles, workspaces, scripts, commands.",
    DocumentSource.STARKNET_JS: "Starknet.js: the JavaScript/TypeScript SDK (providers, accounts, contracts, "
    "signing, transactions from a frontend or backend).",
    DocumentSource.STARKNET_BLOG: "The Starknet blog: announcements, upgrades and ecosystem news.",
    DocumentSource.DOJO_DOCS: "The Dojo Book: the Dojo onchain game engine (models, systems, World, Sozo, "
    "Torii, Katana).",
}

CONTRACT_PATTERN = re.compile(
    r"\b(contracts?|storage|#\[starknet::|interface|dispatchers?|events?|components?|constructor|deploy\w*|"
    r"erc-?20|erc-?721|erc-?1155|ownable|access ?control|upgrad\w*|syscalls?|get_caller_address|"
    r"contract_address|abi|entrypoints?|l1 ?handler|account contract)\b",
    re.IGNORECASE,
)
TEST_PATTERN = re.compile(
    r"\b(tests?|testing|unit tests?|snforge|cheat\w*|#\[test\]|assert\w*|fuzz\w*|should_panic|spy_events|"
    r"mock\w*|integration tests?|test coverage|fork testing)\b",
    re.IGNORECASE,
)


def is_contract_related(texts: Sequence[str]) -> bool:
    return any(CONTRACT_PATTERN.search(text) for text in texts)


def is_test_related(texts: Sequence[str]) -> bool:
    return any(TEST_PATTERN.search(text) for text in texts)


def _sources_text(sources: Sequence[DocumentSource]) -> str:
    return "\n".join(f"- {source.value}: {SOURCE_DESCRIPTIONS[source]}" for source in sources)


CAIRO_INSTRUCTIONS = f"""You prepare documentation searches for questions about Cairo (the provable programming
language, version 2.x) and Starknet (the Ethereum L2 whose smart contracts are written in Cairo).

Read the question and the chat history (a follow-up question refers to earlier messages: resolve what "it" or
"that" means). Write up to 5 short, specific search queries in English that would find the documentation
needed to answer (the documentation is in English: translate a question asked in another language). Name the
concepts, APIs, traits, attributes, commands and file names involved (for example "storage Map read write",
"#[starknet::interface] trait", "snforge cheat_caller_address"), one topic per query, from the most to the
least important. Do not answer the question.

Then choose the documentation sources to search, using only these ids:
{_sources_text(list(DocumentSource))}

Pick every source that may hold part of the answer (usually 1 to 4). For a question that has nothing to do with
Cairo or Starknet, return no search queries and no resources."""

SCARB_INSTRUCTIONS = f"""You prepare documentation searches for questions about Scarb, the build tool and package
manager of Cairo and Starknet projects.

Read the question and the chat history. Write up to 5 short search queries in English (the documentation's
language, whatever the question's) that would find the Scarb documentation needed to answer: name the command
(scarb build, scarb test, scarb new, scarb add, scarb fmt, scarb run, scarb execute, ...), the Scarb.toml section
or key ([package], [dependencies], [dev-dependencies], [[target.starknet-contract]], [profile.*], [workspace],
[scripts], [tool.*], [cairo]), the concept (workspaces, profiles, features, registries, lockfile, plugins), or the
error message to troubleshoot. Do not answer.

Resources: use only these ids:
{_sources_text([DocumentSource.SCARB_DOCS])}"""


class QuerySignature(dspy.Signature):
    chat_history: str = dspy.InputField(desc="Earlier messages of the conversation, oldest first; may be empty.")
    query: str = dspy.InputField(desc="The user's question.")
    search_queries: list[str] = dspy.OutputField(desc="Up to 5 specific documentation search queries.")
    resources: list[str] = dspy.OutputField(desc="Ids of the documentation sources to search.")


CairoQuerySignature = QuerySignature.with_instructions(CAIRO_INSTRUCTIONS)
ScarbQuerySignature = QuerySignature.with_instructions(SCARB_INSTRUCTIONS)


def _demo(query: str, queries: list[str], resources: list[str], history: str = NO_HISTORY) -> dspy.Example:
    return dspy.Example(chat_history=history, query=query, search_queries=queries, resources=resources).with_inputs(
        "chat_history", "query"
    )


CAIRO_DEMOS = [
    _demo(
        "How do I store a mapping from addresses to balances in my contract?",
        ["storage Map ContractAddress", "storage mappings read write", "StorageMapReadAccess entry"],
        ["cairo_book", "corelib_docs"],
    ),
    _demo(
        "How can I test that only the owner can call mint?",
        ["snforge start_cheat_caller_address", "should_panic expected error test", "Ownable assert_only_owner"],
        ["starknet_foundry", "openzeppelin_docs", "cairo_book"],
    ),
    _demo(
        "Create an ERC20 token with a capped supply",
        ["ERC20Component embed in contract", "ERC20 mint internal function", "ERC20 hooks"],
        ["openzeppelin_docs", "cairo_by_example"],
    ),
    _demo(
        "And how do I remove an element from it?",
        ["Felt252Dict remove entry", "Felt252Dict squash", "dictionary entry finalize"],
        ["corelib_docs", "cairo_book"],
        history="user: How do I use a dictionary in Cairo?\nassistant: Use Felt252Dict<T> ...",
    ),
    _demo("What's the best pizza in Naples?", [], []),
]

SCARB_DEMOS = [
    _demo(
        "How do I add OpenZeppelin as a dependency?",
        ["scarb add dependency git tag", "[dependencies] Scarb.toml", "registry dependencies version"],
        ["scarb_docs"],
    ),
    _demo(
        "scarb build fails with 'failed to resolve dependencies'",
        ["dependency resolution error", "Scarb.lock lockfile", "[dependencies] version requirements"],
        ["scarb_docs"],
    ),
]


class QueryProcessorProgram(dspy.Module):
    """``chat_history?, query -> search_queries, resources`` validated into a :class:`ProcessedQuery`.

    Resources outside the enum or outside the agent's ``allowed`` sources are dropped; none left means all
    of the agent's sources (a retrieval restricted to nothing would answer from nothing).
    """

    def __init__(
        self,
        signature: type[dspy.Signature] = CairoQuerySignature,
        demos: Sequence[dspy.Example] = CAIRO_DEMOS,
        max_queries: int = 5,
        extra_sources: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.predict = dspy.Predict(signature)
        self.predict.demos = list(demos)
        self.max_queries = max_queries
        self.describe_sources(extra_sources or {})

    def describe_sources(self, extra_sources: Mapping[str, str]) -> None:
        """Add this deployment's own sources (id: what it covers) to the instructions, which list the built-in
        ones. Called again after an optimized program is loaded: its saved instructions replace these."""
        if not extra_sources:
            return
        signature = self.predict.signature
        self.predict.signature = signature.with_instructions(
            f"{signature.instructions}\n\nThis deployment also has these sources:\n"
            + "\n".join(f"- {source}: {description}" for source, description in extra_sources.items())
        )

    def forward(self, query: str, chat_history: str = "", allowed: Sequence[str] | None = None) -> dspy.Prediction:
        out = self.predict(query=query, chat_history=chat_history or NO_HISTORY)
        return self._result(query, out, allowed)

    async def aforward(
        self, query: str, chat_history: str = "", allowed: Sequence[str] | None = None
    ) -> dspy.Prediction:
        out = await self.predict.acall(query=query, chat_history=chat_history or NO_HISTORY)
        return self._result(query, out, allowed)

    def _result(self, query: str, out: Any, allowed: Sequence[str] | None) -> dspy.Prediction:
        processed = build_processed_query(query, out.search_queries, out.resources, allowed, self.max_queries)
        return dspy.Prediction(
            processed_query=processed,
            search_queries=processed.search_queries,
            resources=list(processed.resources),
        )


def build_processed_query(
    query: str, search_queries: Any, resources: Any, allowed: Sequence[str] | None, max_queries: int = 5
) -> ProcessedQuery:
    allowed_list = [str(s) for s in allowed] if allowed is not None else [s.value for s in DocumentSource]
    queries: list[str] = []
    seen: set[str] = set()
    for item in search_queries if isinstance(search_queries, list) else []:
        text = str(item).strip()
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            queries.append(text[:300])
    picked: list[str] = []
    for item in resources if isinstance(resources, list) else []:
        source = str(item).strip().lower()
        if source in allowed_list and source not in picked:
            picked.append(source)
    texts = [query, *queries]
    return ProcessedQuery(
        original=query,
        search_queries=queries[:max_queries],
        resources=picked or allowed_list,
        is_contract_related=is_contract_related(texts),
        is_test_related=is_test_related(texts),
    )


def raw_processed_query(query: str, allowed: Sequence[str]) -> ProcessedQuery:
    """What retrieval searches without a language model: the raw query, over every allowed source."""
    return build_processed_query(query, [], [], allowed)
