"""The compile check: an answer's Cairo code built by Scarb in a temporary package, diagnostics kept.

The package gets the dependencies the code imports (``starknet``, ``openzeppelin``, ``snforge_std``) at the
versions of the ``[evaluation]`` settings, a Starknet contract target when the code declares a contract, and
the code as ``src/lib.cairo`` (a fragment of statements is wrapped in a function). Without ``scarb`` on PATH
(or at ``evaluation.scarb``) the check is *skipped*, never passed: nothing claims a compile that did not run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairo_coder.answer_checks import Check, cairo_code, scored, skipped

# scarb prints "error: message" or "error[E0006]: message" (warnings: "warn[E0001]:", older "warning:"), then
# " --> path:line:column".
_DIAGNOSTIC = re.compile(r"^(error|warn|warning)(?:\[(\w+)\])?: (.+)$")
_LOCATION = re.compile(r"^\s*--> (.+?):(\d+):(\d+)\s*$")
_SUMMARY = re.compile(r"^error: could not compile")
_ITEM = re.compile(r"^\s*(#\[|(pub(\([\w ]+\))?\s+)?(fn|mod|struct|enum|trait|impl|use|const|type)\b)", re.MULTILINE)
MAX_DIAGNOSTICS = 20


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    message: str
    code: str | None = None
    line: int | None = None
    column: int | None = None


@dataclass
class CompileResult:
    status: str  # "passed", "failed", "skipped"
    detail: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    scarb_version: str | None = None

    def check(self) -> Check:
        if self.status == "skipped":
            return skipped("compile", self.detail)
        return scored("compile", 1.0 if self.status == "passed" else 0.0, self.detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "scarb_version": self.scarb_version,
            "diagnostics": [d.__dict__ for d in self.diagnostics],
        }


@dataclass(frozen=True)
class CompileSettings:
    scarb: str = "scarb"
    edition: str = "2024_07"
    starknet_version: str = "2.12.2"
    openzeppelin_version: str = "2.0.0"
    snforge_version: str = "0.62.1"
    timeout: float = 180.0


def find_scarb(settings: CompileSettings) -> str | None:
    """The scarb executable to use, or None when there is none."""
    if os.sep in settings.scarb:
        return settings.scarb if os.access(settings.scarb, os.X_OK) else None
    return shutil.which(settings.scarb)


def parse_diagnostics(output: str) -> list[Diagnostic]:
    """Scarb's errors and warnings (its summary line "could not compile" is not one)."""
    diagnostics: list[Diagnostic] = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = _DIAGNOSTIC.match(line.strip())
        if not match or _SUMMARY.match(line.strip()):
            continue
        where = next((_LOCATION.match(n) for n in lines[index + 1 : index + 3] if _LOCATION.match(n)), None)
        diagnostics.append(
            Diagnostic(
                severity="error" if match.group(1) == "error" else "warning",
                code=match.group(2),
                message=match.group(3).strip(),
                line=int(where.group(2)) if where else None,
                column=int(where.group(3)) if where else None,
            )
        )
    return diagnostics


def manifest(code: str, settings: CompileSettings) -> str:
    """Scarb.toml for ``code``: the dependencies it imports, a contract target when it declares a contract."""
    lines = ["[package]", 'name = "answer_check"', 'version = "0.1.0"', f'edition = "{settings.edition}"', ""]
    lines += ["[dependencies]", f'starknet = "{settings.starknet_version}"']
    if re.search(r"\bopenzeppelin(_\w+)?::", code):
        lines.append(f'openzeppelin = "{settings.openzeppelin_version}"')
    if "snforge_std" in code:
        lines += ["", "[dev-dependencies]", f'snforge_std = "{settings.snforge_version}"']
    if "#[starknet::contract]" in code:
        lines += ["", "[[target.starknet-contract]]"]
    return "\n".join(lines) + "\n"


def library_source(code: str) -> str:
    """``code`` as a library file: kept as is when it declares items, else wrapped in a function."""
    if _ITEM.search(code):
        return code + "\n"
    body = "\n".join(f"    {line}" for line in code.splitlines())
    return f"fn answer_fragment() {{\n{body}\n}}\n"


async def compile_answer(answer: str, settings: CompileSettings) -> CompileResult:
    """Build the answer's Cairo code with Scarb; skipped without Scarb or without Cairo code."""
    code = cairo_code(answer)
    if not code.strip():
        return CompileResult("skipped", "the answer has no Cairo code to compile")
    scarb = find_scarb(settings)
    if scarb is None:
        return CompileResult("skipped", f"scarb is not installed ({settings.scarb!r} not found on PATH)")
    with tempfile.TemporaryDirectory(prefix="cairo-coder-compile-") as tmp:
        package = Path(tmp)
        (package / "src").mkdir()
        (package / "Scarb.toml").write_text(manifest(code, settings))
        (package / "src" / "lib.cairo").write_text(library_source(code))
        scarb_version = await _version(scarb, package)
        result = await _run([scarb, "build"], package, seconds=settings.timeout)
    if result is None:
        return CompileResult("failed", f"scarb build did not finish in {settings.timeout:.0f} s", [], scarb_version)
    returncode, output = result
    diagnostics = parse_diagnostics(output)[:MAX_DIAGNOSTICS]
    if returncode == 0:
        warnings = sum(1 for d in diagnostics if d.severity == "warning")
        return CompileResult("passed", f"scarb build succeeded ({warnings} warning(s))", diagnostics, scarb_version)
    errors = [d for d in diagnostics if d.severity == "error"]
    summary = "; ".join(f"line {d.line}: {d.message}" if d.line else d.message for d in errors[:5])
    detail = f"scarb build failed: {summary}" if summary else f"scarb build failed: {output.strip()[-300:]}"
    return CompileResult("failed", detail, diagnostics, scarb_version)


_VERSIONS: dict[str, str | None] = {}  # scarb executable -> its `--version` line, asked once per process


async def _version(scarb: str, cwd: Path) -> str | None:
    if scarb not in _VERSIONS:
        version = await _run([scarb, "--version"], cwd, seconds=30)
        _VERSIONS[scarb] = version[1].splitlines()[0].strip() if version and version[1].strip() else None
    return _VERSIONS[scarb]


async def _run(command: list[str], cwd: Path, *, seconds: float) -> tuple[int, str] | None:
    """(exit code, stdout and stderr) of ``command``, or None when it took over ``seconds`` (it is killed)."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(seconds):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return process.returncode or 0, output.decode("utf-8", errors="replace")
