"""The core library's API documentation, extracted from the doc comments of its Cairo sources.

One page per public item (module, struct, enum, trait, impl, function, constant, type alias), like the
generated docs site: its full path (``core::array::ArrayTrait``), kind, signature and doc comment. Traits (and
``#[generate_trait]`` impls, which define their trait) list their methods with signatures and docs, one section
each. Module pages carry the module's ``//!`` docs and an index of its items.

An impl of a trait declared in the same file documents its methods on the trait's page only (docs written on
the impl's methods move to the trait where the trait has none): two pages with the same methods would compete
for every question about them, and questions are asked, and labelled, against the trait users call.

Each documented item and method also has a one-line description in words (:meth:`Item.summaries`), embedded as
a vector of its own, so that a question describing what an item does ("get my contract's own address") finds it
without naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from cairo_coder.ingest.readers import outside_code

ITEM_RE = re.compile(
    r"^\s*(?P<vis>pub(?:\s*\([^)]*\))?\s+)?(?:(?:extern|unsafe|const)\s+)*"
    r"(?P<kind>fn|struct|enum|trait|impl|const|type|mod)\s+(?P<name>[A-Za-z_]\w*)"
)
GENERATED_TRAIT_RE = re.compile(r"\bof\s+(?P<trait>[A-Za-z_]\w*)")
STRING_RE = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
MAX_DEFINITION_LINES = 60
KIND_NAMES = {
    "fn": "Function",
    "struct": "Struct",
    "enum": "Enum",
    "trait": "Trait",
    "impl": "Impl",
    "const": "Constant",
    "type": "Type alias",
    "mod": "Module",
}


@dataclass
class Method:
    name: str
    signature: str
    doc: str


@dataclass
class Item:
    path: str
    kind: str
    signature: str
    doc: str
    methods: list[Method] = field(default_factory=list)
    items: list[tuple[str, str, str]] = field(default_factory=list)  # for modules: (kind, name, summary)

    implements: str | None = None  # for impls: the trait they implement, when it is declared in the same file

    @property
    def name(self) -> str:
        return self.path.rsplit("::", 1)[-1]

    def summaries(self, method_names: set[str] | None = None) -> list[str]:
        """One line per documented item or method, in words: "get contract address: Returns the address of the
        contract being executed." The item's own line when ``method_names`` is None, else those methods'."""
        if method_names is None:
            if self.kind in ("impl", "mod") or not self.doc:
                return []  # an impl is never what a question describes; a module's docs are its page
            return [f"{humanize(self.name)}: {summary_words(self.doc)}"]
        return [
            f"{humanize(m.name)} ({humanize(self.name)}): {summary_words(m.doc)}"
            for m in self.methods
            if m.name in method_names and m.doc
        ]

    def markdown(self) -> str:
        parent = self.path.rsplit("::", 1)[0] if "::" in self.path else ""
        lines = [f"# {self.path}", ""]
        lines.append(f"{KIND_NAMES[self.kind]} `{self.name}`" + (f" in module `{parent}`." if parent else "."))
        if self.signature and self.kind != "mod":
            lines += ["", "```cairo", self.signature, "```"]
        if self.doc:
            lines += ["", self.doc]
        if self.items:
            lines += ["", "## Items", ""]
            lines += [f"- {KIND_NAMES[k].lower()} `{n}`" + (f": {s}" if s else "") for k, n, s in self.items]
        if self.implements:
            lines += [
                "",
                f"Implements `{self.implements}`; its methods are documented on `{parent}::{self.implements}`."
                if parent
                else "",
            ]
        if self.methods:
            lines += ["", "## Methods" if self.kind in ("trait", "impl") else "## Members"]
            for method in self.methods:
                lines += [
                    "",
                    f"### {method.name}",
                    "",
                    f"Method `{self.name}::{method.name}`.",
                    "",
                    "```cairo",
                    method.signature,
                    "```",
                ]
                if method.doc:
                    lines += ["", method.doc]
        return "\n".join(lines).strip() + "\n"


def _strip_code(line: str) -> str:
    """A line without string literals and comments, for brace counting."""
    line = STRING_RE.sub('""', line)
    return line.split("//", 1)[0]


def _doc_text(lines: list[str], demote: int = 2) -> str:
    """Doc comment text, its Markdown headings pushed ``demote`` levels down (they sit under the item's)."""
    out = []
    for line in lines:
        text = line.strip()[3:]
        out.append(text[1:] if text.startswith(" ") else text)
    text = "\n".join(out).strip()
    return outside_code(text, lambda ln: "#" * demote + ln if re.match(r"#{1,4}\s", ln) else ln)


def module_path(rel: str) -> str:
    """core::<file path without .cairo>, with lib.cairo as `core`."""
    path = PurePosixPath(rel).with_suffix("")
    parts = [p for p in path.parts if p not in ("src",)]
    if parts == ["lib"]:
        return "core"
    return "::".join(["core", *parts])


CAMEL_RE = re.compile(r"[A-Z]+[0-9]*(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")
SUMMARY_WORDS = 60


def humanize(name: str) -> str:
    """An identifier in words: get_contract_address -> "get contract address", ArrayTrait -> "array trait"."""
    words: list[str] = []
    for segment in name.split("_"):
        words += [w.lower() for w in CAMEL_RE.findall(segment)] or ([segment.lower()] if segment else [])
    return " ".join(words)


def summary_words(doc: str) -> str:
    """The first paragraph of a doc comment, without code marks, at most SUMMARY_WORDS words."""
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(first.replace("`", "").split()[:SUMMARY_WORDS])


def summary(doc: str) -> str:
    first = doc.strip().split("\n\n", 1)[0].replace("\n", " ")
    return first[:160]


def extract_items(source: str, rel: str) -> list[Item]:
    """All public items of one Cairo file (and of its inline modules)."""
    lines = source.split("\n")
    module = module_path(rel)
    index = 0
    module_doc: list[str] = []
    while index < len(lines) and (lines[index].strip().startswith("//!") or not lines[index].strip()):
        if lines[index].strip().startswith("//!"):
            module_doc.append(lines[index])
        index += 1
    items: list[Item] = []
    root = Item(module, "mod", "", _doc_text(module_doc))
    items.append(root)
    _scan(lines, index, len(lines), module, root, items)
    # `#[cfg(...)]` variants define the same item twice: the first (documented) one is its page.
    unique: dict[str, Item] = {}
    for item in items:
        unique.setdefault(item.path, item)
        item.items = list(dict.fromkeys(item.items))
    _methods_on_traits(unique)
    return list(unique.values())


def _methods_on_traits(items: dict[str, Item]) -> None:
    """An impl of a trait declared in the same file keeps no methods of its own: they are the trait's (docs
    written on the impl fill in the trait's undocumented methods)."""
    for item in items.values():
        if item.kind != "impl" or not item.methods:
            continue
        generated = GENERATED_TRAIT_RE.search(item.signature)
        parent = item.path.rsplit("::", 1)[0]
        trait = items.get(f"{parent}::{generated.group('trait')}") if generated else None
        if trait is None or trait.kind != "trait":
            continue
        if trait.methods is not item.methods:  # a trait declared on its own: take the docs it lacks
            documented = {m.name: m for m in item.methods if m.doc}
            for method in trait.methods:
                if not method.doc and method.name in documented:
                    method.doc = documented[method.name].doc
        item.methods = []
        item.implements = trait.name


def _block_end(lines: list[str], start: int, stop: int) -> tuple[int, str]:
    """From an item's first line: (index of its last line, its signature up to '{' or ';')."""
    sig_lines: list[str] = []
    depth = 0
    opened = False
    for i in range(start, stop):
        code = _strip_code(lines[i])
        if not opened:
            head, brace, _ = code.partition("{")
            if brace:
                sig_lines.append(head.rstrip())
                opened = True
                depth = code.count("{") - code.count("}")
                if depth <= 0:
                    return i, "\n".join(sig_lines).strip()
                continue
            sig_lines.append(code.rstrip())
            if code.rstrip().endswith(";"):
                return i, "\n".join(sig_lines).strip().rstrip(";")
            continue
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            return i, "\n".join(sig_lines).strip()
    return stop - 1, "\n".join(sig_lines).strip()


def _scan(lines: list[str], start: int, stop: int, module: str, module_item: Item, items: list[Item]) -> None:
    doc: list[str] = []
    attrs: list[str] = []
    i = start
    while i < stop:
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("///"):
            doc.append(line)
            i += 1
            continue
        if stripped.startswith("#["):
            attrs.append(stripped)
            i += 1
            continue
        match = ITEM_RE.match(line)
        if not match or stripped.startswith("//"):
            if stripped and not stripped.startswith("//"):
                doc, attrs = [], []
            i += 1
            continue
        end, signature = _block_end(lines, i, stop)
        vis = (match.group("vis") or "").strip()
        public = vis == "pub"
        kind, name = match.group("kind"), match.group("name")
        doc_text = _doc_text(doc)
        if kind == "mod":
            if public and end > i:  # an inline module: recurse with its own path
                inner = Item(f"{module}::{name}", "mod", "", doc_text)
                items.append(inner)
                module_item.items.append(("mod", name, summary(doc_text)))
                _scan(lines, i + 1, end, f"{module}::{name}", inner, items)
        elif public:
            item = Item(f"{module}::{name}", kind, _clean_signature(signature, attrs), doc_text)
            if kind in ("trait", "impl") and end > i:
                item.methods = _methods(lines, i + 1, end)
            elif kind in ("struct", "enum") and end > i:
                body = lines[i : end + 1]
                if len(body) <= MAX_DEFINITION_LINES:
                    item.signature = _clean_signature("\n".join(body).strip(), attrs)
            items.append(item)
            module_item.items.append((kind, name, summary(doc_text)))
            generated = GENERATED_TRAIT_RE.search(signature) if kind == "impl" else None
            if generated and any("generate_trait" in a for a in attrs):
                trait_name = generated.group("trait")
                trait = Item(f"{module}::{trait_name}", "trait", f"pub trait {trait_name}", doc_text, item.methods)
                items.append(trait)
                module_item.items.append(("trait", trait_name, summary(doc_text)))
        doc, attrs = [], []
        i = end + 1


def _clean_signature(signature: str, attrs: list[str]) -> str:
    shown = [a for a in attrs if a.startswith(("#[derive", "#[generate_trait"))]
    return "\n".join([*shown, signature.strip()])


def _methods(lines: list[str], start: int, stop: int) -> list[Method]:
    methods: list[Method] = []
    doc: list[str] = []
    i = start
    while i < stop:
        stripped = lines[i].strip()
        if stripped.startswith("///"):
            doc.append(lines[i])
            i += 1
            continue
        if stripped.startswith("#[") or not stripped:
            i += 1
            continue
        match = ITEM_RE.match(lines[i])
        if match and match.group("kind") in ("fn", "const", "type"):
            end, signature = _block_end(lines, i, stop)
            methods.append(Method(match.group("name"), signature.strip(), _doc_text(doc, demote=3)))
            i = end + 1
        else:
            i += 1
        doc = []
    return methods
