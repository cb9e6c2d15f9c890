"""The [n] citations of an answer: which numbered sources it cites, and which numbers point at no source.

Generation is told to cite the numbered context as ``[1]`` or ``[2][4]``; models also write ``[1, 3]`` and
``[1-3]``. Code is not prose: ``arr[1]`` in a fenced block or in inline code is an index, not a citation, and
neither is a Markdown link's ``[1](url)``. A citation is a bracket that does not follow a word character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cairo_coder.ingest.readers import fenced_lines

_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1", re.DOTALL)
_CITATION = re.compile(r"(?<!\w)\[(\d{1,3}(?:\s*[-–,]\s*\d{1,3})*)\](?!\()")
MAX_RANGE = 50  # "[1-3]" expands; a "range" wider than this is not a citation


@dataclass(frozen=True)
class Citations:
    cited: list[int] = field(default_factory=list)  # numbers of existing sources, in order of first citation
    unknown: list[int] = field(default_factory=list)  # numbers cited that no source has


def cited_numbers(answer: str) -> list[int]:
    """Every number the answer cites in its prose, in order of first citation, each once."""
    prose = _INLINE_CODE.sub(" ", "\n".join(line for line, block in fenced_lines(answer) if block is None))
    numbers: dict[int, None] = {}  # ordered, each once
    for match in _CITATION.finditer(prose):
        for part in re.split(r"\s*,\s*", match.group(1)):
            bounds = [int(x) for x in re.split(r"\s*[-–]\s*", part)]
            low, high = bounds[0], bounds[-1]
            numbers.update(dict.fromkeys(range(low, high + 1) if 0 <= high - low <= MAX_RANGE else (low, high)))
    return list(numbers)


def check_citations(answer: str, source_count: int) -> Citations:
    """Split the answer's citations into those of the ``source_count`` numbered sources and the unknown ones."""
    numbers = cited_numbers(answer)
    return Citations(
        cited=[n for n in numbers if 1 <= n <= source_count], unknown=[n for n in numbers if not 1 <= n <= source_count]
    )


__all__ = ["Citations", "check_citations", "cited_numbers"]
