"""Offline detection of a question's natural language, for evaluation breakdowns (and logs).

No model is involved: a question's prose (code, paths, hex and error output removed) is classified by its
script (Han, Kana, Hangul, Cyrillic, ...) and, for Latin-script text, by the letters and the common words of
the languages users of a Cairo assistant write in. It tells English from the rest reliably; which other Latin
language it is matters only for reporting. Returns an ISO 639-1 code, or "und" for text with no prose.
"""

from __future__ import annotations

import re
import unicodedata

# Fenced code, inline code, hex values, identifiers with underscores or ::, paths and URLs carry no language.
_CODE_RE = re.compile(
    r"```.*?(```|$)|`[^`\n]*`|0x[0-9a-fA-F]+|\S*(::|_|/|\\|=|\{|\}|\(|\)|<|>|;)\S*|https?://\S+",
    re.DOTALL,
)
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)

# Letters that, in Latin-script text, belong to one language (or a small family).
_LETTERS: dict[str, str] = {
    "vi": "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
    "pl": "ąćęłńśźż",
    "es": "ñ¿¡",
    "pt": "ãõ",
    "de": "ßäöü",
    "fr": "œçèêëîïûù",
    "tr": "ğış",
}
_WORD_TEXT: dict[str, str] = {
    "en": "the and is are to of in how what do does can i my you it this that with for on be",
    "es": "el la los las de que y en un una para por con como cómo qué es mi se al del lo quiero puedo hacer esto "
    "pero tengo ayuda ayudame",
    "pt": "de que em um uma para com como não meu minha do da isso é você está quero posso",
    "fr": "le la les de des et un une pour avec comment est je mon dans pas que du",
    "de": "der die das und ist ich wie nicht mit für ein eine zu auf mein was",
    "it": "il gli di che un una per con come non è mio",
    "pl": "jak jest nie i w na z do czy się że mam co",
    "vi": "tôi có không của là và được cho một với này làm",
    "tr": "ve bir bu ne nasıl için ile mi değil",
}
_WORDS = {language: frozenset(text.split()) for language, text in _WORD_TEXT.items()}


def prose(text: str) -> str:
    """The text without code, hex values, identifiers, paths and URLs."""
    return _CODE_RE.sub(" ", text)


# Unicode blocks whose letters name the language (or its script) outright.
_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x4E00, 0x9FFF, "han"),
    (0x3400, 0x4DBF, "han"),
    (0x3040, 0x30FF, "ja"),
    (0xAC00, 0xD7AF, "ko"),
    (0x0400, 0x04FF, "ru"),
    (0x0600, 0x06FF, "ar"),
    (0x0590, 0x05FF, "he"),
    (0x0900, 0x097F, "hi"),
    (0x0E00, 0x0E7F, "th"),
)


def _script(char: str) -> str | None:
    code = ord(char)
    return next((name for low, high, name in _SCRIPTS if low <= code <= high), None)


def detect_language(text: str) -> str:
    """The language of a question's prose: "en", "es", "zh", "ru", "vi", ... or "und" (no prose)."""
    body = prose(text)
    letters = [c for c in body if c.isalpha()]
    if not letters:
        return "und"
    scripts: dict[str, int] = {}
    for char in letters:
        script = _script(char)
        if script:
            scripts[script] = scripts.get(script, 0) + 1
    if scripts:
        script, count = max(scripts.items(), key=lambda item: item[1])
        if count >= max(2, len(letters) * 0.2):
            if script == "han":
                return "ja" if scripts.get("ja") else "zh"
            return script
    words = [w.casefold() for w in _WORD_RE.findall(body)]
    if not words:
        return "und"
    scores = {lang: sum(1 for w in words if w in vocabulary) for lang, vocabulary in _WORDS.items()}
    lowered = body.casefold()
    for lang, marks in _LETTERS.items():
        hits = sum(lowered.count(mark) for mark in marks)
        scores[lang] = scores.get(lang, 0) + 2 * hits
    best, score = max(scores.items(), key=lambda item: (item[1], item[0] == "en"))
    if score == 0:
        # No telling word at all: plain ASCII prose is English (technical terms), accents say "not English".
        accented = any(unicodedata.decomposition(c) for c in letters)
        return "und" if accented else "en"
    return best
