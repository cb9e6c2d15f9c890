"""The optional LLM judge of `eval generation` (``evaluation.judge_model``): a score in [0, 1] of how well an
answer answers its item, with the model's one-line justification as the check's detail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import dspy

from cairo_coder.answer_checks import Check, scored, skipped
from cairo_coder.config import Settings
from cairo_coder.datasets import GenerationItem
from cairo_coder.errors import as_error


class JudgeAnswer(dspy.Signature):
    """Judge an answer to a Cairo / Starknet developer's question. Score 1.0 for a correct, complete answer in
    modern Cairo 2.x (or correct tooling: Scarb, Starknet Foundry, Starknet.js) that uses the expected
    elements; 0.5 for a partly correct or incomplete one; 0.0 for a wrong, outdated or unhelpful one. An
    off-topic question (no expected elements, no sources) must be politely declined: that scores 1.0."""

    question: str = dspy.InputField()
    expected: str = dspy.InputField(desc="Elements a correct answer uses (API items, attributes, imports, keys).")
    answer: str = dspy.InputField()
    score: float = dspy.OutputField(desc="From 0.0 to 1.0.")
    justification: str = dspy.OutputField(desc="One sentence.")


def expected_text(item: GenerationItem) -> str:
    e = item.expected
    parts = [
        f"{name}: {', '.join(values)}"
        for name, values in (
            ("API items", e.api),
            ("attributes", e.attributes),
            ("imports", e.imports),
            ("Scarb keys", e.scarb_keys),
        )
        if values
    ]
    if item.forbidden:
        parts.append(f"must not contain: {', '.join(item.forbidden)}")
    return "; ".join(parts) or "(none: the question may be off-topic)"


def make_judge(lm: Any) -> Callable[[GenerationItem, str], Awaitable[Check]]:
    predict = dspy.Predict(JudgeAnswer)

    async def judge(item: GenerationItem, answer: str) -> Check:
        try:
            with dspy.context(lm=lm):
                result = await predict.acall(question=item.query, expected=expected_text(item), answer=answer)
            score = float(result.score)
        except Exception as exc:  # a judge that fails must not fail the evaluation: the check is skipped
            error = as_error(exc)
            return skipped("judge", f"the judge failed ({error.kind}: {error})")
        return scored("judge", score, str(result.justification).strip() or f"judged {score:.2f}")

    return judge


def judge_from_settings(settings: Settings) -> Callable[[GenerationItem, str], Awaitable[Check]] | None:
    """The judge of ``evaluation.judge_model``, or None when none is configured."""
    model = settings.evaluation.judge_model.strip()
    if not model:
        return None
    from cairo_coder.llm import LLMRouter

    return make_judge(LLMRouter(settings.llm).lm_for_model(model))
