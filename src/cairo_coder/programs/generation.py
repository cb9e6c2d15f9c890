"""Answer generation: ``dspy.ChainOfThought`` over numbered documentation, with inline [n] citations."""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from cairo_coder.types import NO_HISTORY, SearchResult

CAIRO_INSTRUCTIONS = """You are Cairo Coder, an expert assistant for Cairo (version 2.x) and Starknet smart
contract development. Answer the user's question using the numbered documentation in `context`.

- Ground every claim in the context and cite it inline with the document's number in brackets, like [1] or
  [2][4], right after the sentence it supports. Cite only numbers that exist in the context; never invent URLs.
  When the context does not cover something, say so briefly and answer from general Cairo knowledge, marked
  as such.
- Write correct modern Cairo 2.x: `#[starknet::interface]` traits generic over `TContractState`,
  `#[starknet::contract]` modules, `#[storage]` structs with `Map` and the `starknet::storage` access traits,
  `#[event]` enums deriving `starknet::Event`, `#[abi(embed_v0)]` impls, `component!` for components,
  `ref self: ContractState` for writes and `self: @ContractState` for views. Include every `use` the code
  needs. Never use the Cairo 0 / pre-2.0 syntax (`%lang`, `@storage_var`, `@external`, `felt`,
  `LegacyMap`, `#[contract]`).
- Put code in fenced ```cairo blocks (```toml for Scarb.toml, ```bash for commands); keep explanations short.
- If a template is given in the context, follow its structure and adapt it to the question.
- If the question has nothing to do with Cairo, Starknet or their tooling, do not answer it: say politely that
  you can only help with Cairo and Starknet development, and suggest what you can help with."""

SCARB_INSTRUCTIONS = """You are the Scarb Assistant, an expert on Scarb, the build tool and package manager of
Cairo and Starknet projects. Answer using the numbered documentation in `context`.

- Give the exact commands (```bash) and Scarb.toml snippets (```toml) the user needs: sections such as
  [package], [dependencies], [dev-dependencies], [[target.starknet-contract]], [cairo], [profile.<name>],
  [workspace], [scripts], [tool.<name>], with correct keys and value types.
- For errors, explain the likely cause first, then the fix, then how to verify it (e.g. `scarb build`,
  `scarb metadata`, `scarb clean`).
- Cite the documentation inline with its number in brackets, like [1]; cite only numbers in the context.
- If the question is not about Scarb, Cairo or Starknet, say politely that you only help with Scarb and
  Cairo project tooling."""


class GenerationSignature(dspy.Signature):
    chat_history: str = dspy.InputField(desc="Earlier messages of the conversation, oldest first; may be empty.")
    query: str = dspy.InputField(desc="The user's question.")
    context: str = dspy.InputField(desc="Numbered documentation excerpts ([1], [2], ...) and optional templates.")
    answer: str = dspy.OutputField(desc="The answer in Markdown, with code blocks and inline [n] citations.")


CairoGenerationSignature = GenerationSignature.with_instructions(CAIRO_INSTRUCTIONS)
ScarbGenerationSignature = GenerationSignature.with_instructions(SCARB_INSTRUCTIONS)


class GenerationProgram(dspy.Module):
    """``chat_history?, query, context -> answer`` through chain of thought (the reasoning is not shown)."""

    def __init__(self, signature: type[dspy.Signature] = CairoGenerationSignature) -> None:
        super().__init__()
        self.generate = dspy.ChainOfThought(signature)

    def forward(self, query: str, context: str, chat_history: str = "") -> dspy.Prediction:
        return self.generate(query=query, context=context, chat_history=chat_history or NO_HISTORY)

    async def aforward(self, query: str, context: str, chat_history: str = "") -> dspy.Prediction:
        return await self.generate.acall(query=query, context=context, chat_history=chat_history or NO_HISTORY)


def format_document(number: int, result: SearchResult) -> str:
    meta = result.document.metadata
    return f"[{number}] {meta.heading()}\nsource: {meta.source} — {meta.url}\n\n{result.document.content.strip()}"


def format_context(documents: Sequence[SearchResult], templates: Sequence[str] = ()) -> str:
    """The generation context: numbered documents (the numbers the [n] citations use), then templates."""
    parts = [format_document(i, doc) for i, doc in enumerate(documents, start=1)]
    if not parts:
        parts.append("(no documentation was found for this question)")
    parts.extend(t.strip() for t in templates if t.strip())
    return "\n\n---\n\n".join(parts)
