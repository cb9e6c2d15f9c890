/**
 * `npm test`: starts the service stack (tests/ts_stack.py: `cairo-coder serve` on an embedded PostgreSQL, with
 * the fake OpenAI-compatible server), runs every test file with Node's test runner against it, stops the stack.
 *
 * `node build-test/test/run.js COMMAND...` runs COMMAND against the stack instead (the benchmark).
 * The Python interpreter: `CAIRO_CODER_PYTHON`, else the repository's `.venv`, else `python3`.
 */

import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const venv = `${repo}.venv/bin/python`;
const python = process.env['CAIRO_CODER_PYTHON'] ?? (existsSync(venv) ? venv : 'python3');

const stack = spawn(python, ['-m', 'tests.ts_stack'], { cwd: repo, stdio: ['pipe', 'pipe', 'inherit'] });
const exited = new Promise<number>((resolve) => stack.on('exit', (code) => resolve(code ?? 1)));
const firstLine = await new Promise<string | null>((resolve) => {
  const lines = createInterface({ input: stack.stdout });
  lines.once('line', (line) => resolve(line));
  stack.once('exit', () => resolve(null));
});
if (firstLine === null) {
  console.error(`the service stack did not start (${python} -m tests.ts_stack)`);
  process.exit(1);
}
const { url, fake, apiKey } = JSON.parse(firstLine) as { url: string; fake: string; apiKey: string };
console.log(`service at ${url}`);

// With arguments, run that command against the stack instead of the tests (`npm run bench`).
const command = process.argv.slice(2);
const files = readdirSync(here)
  .filter((name) => name.endsWith('.test.js'))
  .sort()
  .map((name) => `${here}${name}`);
const [program, ...args] = command.length > 0 ? command : [process.execPath, '--test', '--test-concurrency=1', ...files];
const tests = spawn(program as string, args, {
  stdio: 'inherit',
  env: { ...process.env, CAIRO_CODER_TEST_URL: url, CAIRO_CODER_TEST_FAKE: fake, CAIRO_CODER_TEST_KEY: apiKey },
});
const status = await new Promise<number>((resolve) => tests.on('exit', (code) => resolve(code ?? 1)));
stack.stdin.end();
await exited;
process.exit(status);
