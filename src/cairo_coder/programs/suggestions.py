"""Follow-up question suggestions: one small Predict call over the conversation so far."""

from __future__ import annotations

from typing import Any

import dspy

MAX_SUGGESTIONS = 5
MAX_SUGGESTION_CHARS = 300


class SuggestionsSignature(dspy.Signature):
    """Suggest follow-up questions a Cairo / Starknet developer would ask next in this conversation.

    Each suggestion is one short, specific question (under 20 words) that the documentation of Cairo, Starknet,
    Scarb, Starknet Foundry or OpenZeppelin can answer, and that moves the user's task forward. Do not repeat
    questions already asked. Give 3 to 5 suggestions."""

    chat_history: str = dspy.InputField(desc="The conversation so far, one 'role: message' per line.")
    suggestions: list[str] = dspy.OutputField(desc="3 to 5 follow-up questions.")


class SuggestionsProgram(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(SuggestionsSignature)

    def forward(self, chat_history: str) -> dspy.Prediction:
        return self._clean(self.predict(chat_history=chat_history))

    async def aforward(self, chat_history: str) -> dspy.Prediction:
        return self._clean(await self.predict.acall(chat_history=chat_history))

    @staticmethod
    def _clean(prediction: Any) -> dspy.Prediction:
        seen: set[str] = set()
        cleaned: list[str] = []
        for item in prediction.suggestions or []:
            text = " ".join(str(item).split())[:MAX_SUGGESTION_CHARS]
            if text and text.lower() not in seen:
                seen.add(text.lower())
                cleaned.append(text)
        return dspy.Prediction(suggestions=cleaned[:MAX_SUGGESTIONS])
