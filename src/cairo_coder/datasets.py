"""The labelled datasets of ``datasets/`` (and ``../shared/eval``): formats, and a loader that reports every bad
record by file and line instead of stopping at the first.

Three formats, one JSON object per line:

- retrieval (``../shared/eval/README.md``): ``id, query, origin, relevant, also_relevant, note``;
- query processing (``datasets/query_processing``): the retrieval fields plus ``agent``, ``history`` and the
  ``sources`` the query processor must select;
- generation (``datasets/generation``): ``id, agent, query, history, code_expected, expected{api, attributes,
  imports, scarb_keys}, forbidden, sources, note``.

Files are versioned (``v1.jsonl``, ``v2.jsonl``...): an item is never edited in place, so that scores recorded
against a file (an optimized program's metadata keeps its hash) stay comparable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cairo_coder.errors import InvalidRequestError

MAX_REPORTED = 20  # bad records listed in one error; the rest are counted


class DatasetError(InvalidRequestError):
    """A dataset file is missing or has bad records; the message names each one by file and line."""

    kind = "invalid_dataset"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageRef(_Record):
    source: str = Field(min_length=1)
    path: str = Field(min_length=1)


class Turn(_Record):
    role: Literal["user", "assistant", "system"]
    content: str


class RetrievalItem(_Record):
    """A question and the pages that answer it (the shared evaluation format)."""

    model_config = ConfigDict(extra="ignore")  # the shared files may gain fields; ours are checked strictly
    id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    origin: str = "written"
    relevant: list[PageRef] = Field(min_length=1)
    also_relevant: list[PageRef] = Field(default_factory=list)
    note: str = ""


class QueryProcessingItem(_Record):
    """A question (with its history) -> the sources to search and the pages that must be retrieved.

    An off-topic question has no sources and no pages: the query processor must choose none."""

    id: str = Field(min_length=1)
    agent: str = "cairo-coder"
    query: str = Field(min_length=1)
    history: list[Turn] = Field(default_factory=list)
    origin: str = "written"
    sources: list[str] = Field(default_factory=list)
    relevant: list[PageRef] = Field(default_factory=list)
    also_relevant: list[PageRef] = Field(default_factory=list)
    note: str = ""

    @property
    def off_topic(self) -> bool:
        return not self.sources and not self.relevant


class Expected(_Record):
    """Elements a correct answer contains (case-sensitive substrings; imports inside ``use`` lines)."""

    api: list[str] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)
    imports: list[str] = Field(default_factory=list)
    scarb_keys: list[str] = Field(default_factory=list)

    def count(self) -> int:
        return len(self.api) + len(self.attributes) + len(self.imports) + len(self.scarb_keys)


class GenerationItem(_Record):
    """A question (with its history) -> what its answer must contain and must not."""

    id: str = Field(min_length=1)
    agent: str = "cairo-coder"
    query: str = Field(min_length=1)
    history: list[Turn] = Field(default_factory=list)
    code_expected: bool
    expected: Expected = Field(default_factory=Expected)
    forbidden: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    note: str = ""

    @field_validator("forbidden")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise ValueError("forbidden strings must not be blank")
        return value

    @property
    def off_topic(self) -> bool:
        return not self.sources and not self.code_expected and self.expected.count() == 0


Item = TypeVar("Item", bound=BaseModel)


def load_items(path: Path, model: type[Item]) -> list[Item]:
    """Every record of ``path`` as ``model``; a :class:`DatasetError` listing each bad record (file:line: what
    is wrong), duplicate ids included, when there is any."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror}") from exc
    items: list[Item] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = model.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not JSON: {exc.msg} (column {exc.colno})")
            continue
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"]) or "record"
                problems.append(f"{path}:{number}: {where}: {error['msg']}")
            continue
        item_id = getattr(item, "id", None)
        if isinstance(item_id, str):
            if item_id in seen:
                problems.append(f"{path}:{number}: id {item_id!r} already used on line {seen[item_id]}")
                continue
            seen[item_id] = number
        items.append(item)
    if problems:
        listed = problems[:MAX_REPORTED]
        more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DatasetError(f"{len(problems)} bad record(s) in {path}:\n" + "\n".join(listed) + more)
    if not items:
        raise DatasetError(f"{path}: no items")
    return items


def file_hash(path: Path) -> str:
    """The SHA-256 of a dataset file, recorded with the scores measured on it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
