"""The TypeScript client (clients/typescript): its own tests under Node's test runner against the real service,
and its packed tarball installed into an empty project whose TypeScript compiles and runs against the types.

Node 20 and npm are part of this project's machines (DEVELOPERS.md); the packages come from the npm registry
through the committed lockfile (`npm ci`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def npm(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    """Run npm; its standard output on success, a failure with the output's tail otherwise."""
    executable = shutil.which("npm")
    assert executable, "npm (Node.js 20 or newer) is needed for the TypeScript client's tests"
    done = subprocess.run(
        [executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"npm {' '.join(args)} failed ({done.returncode}):\n{output[-12000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed() -> Path:
    """The package's dependencies installed from its lockfile (once per run)."""
    npm("ci", "--no-audit", "--no-fund", cwd=PACKAGE)
    return PACKAGE


def test_node_tests_against_the_service(installed: Path) -> None:
    """`npm test`: builds with tsc (strict), starts the service (tests/ts_stack.py, this interpreter) and runs every
    test file: legacy events, both transports, the handler with the openai client, abort, timeouts, retries."""
    output = npm("test", cwd=installed, timeout=900, env={"CAIRO_CODER_PYTHON": sys.executable})
    assert "# fail 0" in output, output[-12000:]
    passed = int(output.rsplit("# pass ", 1)[1].split()[0])
    assert passed >= 40, output[-4000:]


def test_packed_tarball_installs_and_its_types_compile(installed: Path, tmp_path: Path) -> None:
    npm("run", "build", cwd=installed)
    printed = npm("pack", "--json", "--pack-destination", str(tmp_path), cwd=installed)
    packed = json.loads(printed[printed.index("\n[") + 1 :] if not printed.startswith("[") else printed)
    files = {f["path"] for f in packed[0]["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "README.md", "package.json"} <= files
    assert not any(f.startswith(("src/", "test/", "node_modules/")) for f in files), files
    tarball = tmp_path / packed[0]["filename"]
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "consumer", "private": True, "type": "module"}))
    typescript = json.loads((installed / "package.json").read_text())["devDependencies"]
    npm(
        "install",
        "--no-audit",
        "--no-fund",
        str(tarball),
        f"typescript@{typescript['typescript']}",
        f"@types/node@{typescript['@types/node']}",
        cwd=project,
    )
    (project / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "strict": True,
                    "outDir": "out",
                    "types": ["node"],
                },
                "include": ["index.ts"],
            }
        )
    )
    (project / "index.ts").write_text(CONSUMER)
    npm("exec", "--", "tsc", "-p", ".", cwd=project)
    ran = subprocess.run(
        [shutil.which("node") or "node", "out/index.js"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["connection_refused", "503", "api_connection_error", "true", "function"], ran.stdout
    # A misuse is a compile error in the consumer's code: the types are real, not `any`.
    (project / "index.ts").write_text(CONSUMER + "\nconst wrong: number = new CairoCoderClient().baseUrl;\n")
    failed = subprocess.run(
        [shutil.which("npm") or "npm", "exec", "--", "tsc", "-p", "."],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0 and "TS2322" in failed.stdout, failed.stdout


# A consumer of the installed package: every public entry point, typed; run against a port nobody listens on.
CONSUMER = """
import {
  AgentFactoryProxy, CairoCoderClient, CairoCoderError, createChatCompletionHandler,
  type AgentEvent, type ChatMessage, type ClientOptions, type LegacyDocument,
} from '@cairo-coder/client';

const options: ClientOptions = { baseUrl: 'http://127.0.0.1:9', transport: 'http', maxRetries: 0, timeout: 5000 };
const client = new CairoCoderClient(options);
const history: ChatMessage[] = [{ role: 'user', content: 'hi' }];
try {
  for await (const event of client.stream({ query: 'How do I emit an event?', history })) {
    const typed: AgentEvent = event;
    if (typed.type === 'response') console.log(typed.text.length);
  }
} catch (error) {
  if (error instanceof CairoCoderError) console.log(error.code, error.status, error.type, error.transient);
}
const proxy = new AgentFactoryProxy(client);
const handler = createChatCompletionHandler(proxy, { agentId: 'cairo-coder' });
console.log(typeof handler);
const legacy: LegacyDocument[] = [];
void legacy;
await proxy.close();
"""
