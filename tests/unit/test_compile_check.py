"""The compile check, run against a STAND-IN `scarb`: a small script that prints Scarb 2.x's real output formats
(the `Compiling`/`Finished` lines, `error[E....]: message` + ` --> file:line:col` diagnostics, `warn[E....]:`
warnings, the `could not compile` summary, `scarb --version`) and decides success by looking for markers in the
code. No test here compiles Cairo: these check the package we write, the parsing and the verdicts."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from cairo_coder.compile_check import CompileSettings, compile_answer, library_source, manifest, parse_diagnostics

STAND_IN = r'''#!{python}
"""Stand-in for scarb (tests only): prints scarb's formats; not a compiler."""
import pathlib, sys, time
if sys.argv[1:] == ["--version"]:
    print("scarb 2.12.2 (dc0dbfd50 2025-09-15)\ncairo: 2.12.2 (https://crates.io/crates/cairo-lang-compiler/2.12.2)"
          "\nsierra: 1.7.0")
    sys.exit(0)
assert sys.argv[1:] == ["build"], sys.argv
root = pathlib.Path.cwd()
(pathlib.Path({log!r})).write_text((root / "Scarb.toml").read_text())
code = (root / "src" / "lib.cairo").read_text()
print("   Compiling answer_check v0.1.0 (" + str(root / "Scarb.toml") + ")")
if "SLEEP" in code:
    time.sleep(30)
lines = code.splitlines()
if "unused_var" in code:
    n = next(i for i, l in enumerate(lines, 1) if "unused_var" in l)
    print("warn[E0001]: Unused variable. Consider ignoring by prefixing with `_`.")
    print(" --> " + str(root / "src" / "lib.cairo") + ":" + str(n) + ":13")
    print("        let unused_var = 1;")
    print("            ^^^^^^^^^^\n")
if "LegacyMap" in code:
    n = next(i for i, l in enumerate(lines, 1) if "LegacyMap" in l)
    print("error[E0006]: Type not found.")
    print(" --> " + str(root / "src" / "lib.cairo") + ":" + str(n) + ":19")
    print("        balances: LegacyMap<felt252, u256>,")
    print("                  ^^^^^^^^^\n")
    print("error: could not compile `answer_check` due to 1 previous error")
    sys.exit(1)
print("    Finished `dev` profile target(s) in 3 seconds")
'''

CONTRACT = """```cairo
use openzeppelin::access::ownable::OwnableComponent;

#[starknet::contract]
mod Vault {
    #[storage]
    struct Storage {
        balances: %s<felt252, u256>,
    }
}
```"""


@pytest.fixture
def scarb(tmp_path: Path) -> tuple[CompileSettings, Path]:
    log = tmp_path / "manifest-seen.toml"
    path = tmp_path / "bin" / "scarb"
    path.parent.mkdir()
    path.write_text(STAND_IN.replace("{python}", sys.executable).replace("{log!r}", repr(str(log))))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return CompileSettings(scarb=str(path), timeout=5), log


async def test_without_scarb_the_check_is_skipped_never_passed() -> None:
    result = await compile_answer(CONTRACT % "Map", CompileSettings(scarb="no-such-scarb-here"))
    assert result.status == "skipped" and "not installed" in result.detail
    assert result.check().status == "skipped" and result.check().score is None
    assert (await compile_answer("no code at all", CompileSettings())).status == "skipped"


async def test_a_build_that_succeeds(scarb: tuple[CompileSettings, Path]) -> None:
    settings, seen = scarb
    code = CONTRACT % "Map" + "\n\n```cairo\nfn f() {\n    let unused_var = 1;\n}\n```"
    result = await compile_answer(code, settings)
    assert result.status == "passed" and result.check().score == 1.0
    assert result.scarb_version == "scarb 2.12.2 (dc0dbfd50 2025-09-15)"
    assert result.detail == "scarb build succeeded (1 warning(s))"
    assert [(d.severity, d.code, d.line) for d in result.diagnostics] == [("warning", "E0001", 12)]
    written = seen.read_text()
    assert 'openzeppelin = "2.0.0"' in written and "[[target.starknet-contract]]" in written
    assert "snforge_std" not in written


async def test_a_build_that_fails_keeps_the_diagnostics(scarb: tuple[CompileSettings, Path]) -> None:
    settings, _ = scarb
    result = await compile_answer(CONTRACT % "LegacyMap", settings)
    assert result.status == "failed" and result.check().score == 0.0
    assert result.detail == "scarb build failed: line 7: Type not found."
    assert [(d.severity, d.code, d.message, d.line, d.column) for d in result.diagnostics] == [
        ("error", "E0006", "Type not found.", 7, 19)
    ]


async def test_a_build_that_hangs_fails_after_the_timeout(scarb: tuple[CompileSettings, Path]) -> None:
    settings, _ = scarb
    quick = CompileSettings(scarb=settings.scarb, timeout=1)
    result = await compile_answer("```cairo\nfn f() { SLEEP(); }\n```", quick)
    assert result.status == "failed" and "did not finish in 1 s" in result.detail


def test_package_for_tests_and_fragments() -> None:
    written = manifest("use snforge_std::{declare, ContractClassTrait};\nfn t() {}", CompileSettings())
    assert '[dev-dependencies]\nsnforge_std = "0.62.1"' in written and "openzeppelin" not in written
    assert 'edition = "2024_07"' in written and 'starknet = "2.12.2"' in written
    assert (
        library_source("let x = 1;\nlet y = x + 1;")
        == "fn answer_fragment() {\n    let x = 1;\n    let y = x + 1;\n}\n"
    )
    assert library_source("fn main() {}") == "fn main() {}\n"
    assert parse_diagnostics("error: could not compile `x` due to 2 previous errors") == []
