/**
 * What the proxy adds to a request: the same request sent directly to the service (a minimal NDJSON client on
 * `node:http`, kept-alive) and through `AgentFactoryProxy` over each transport, interleaved round by round so that
 * the machine's drift affects every variant alike. Prints p50/p90 per variant and the p50 of the per-round
 * differences (proxy minus direct).
 *
 *   npm run bench                      # MCP mode (retrieval only, no LLM): the proxy's share is largest
 *   npm run bench -- --answer          # full answers from the fake LLM
 *   ROUNDS=500 npm run bench
 */

import http from 'node:http';

import { AgentFactoryProxy } from '../src/index.js';

const url = process.env['CAIRO_CODER_TEST_URL'] ?? 'http://127.0.0.1:3001';
const apiKey = process.env['CAIRO_CODER_TEST_KEY'] ?? process.env['CAIRO_CODER_API_KEY'] ?? '';
const rounds = Number(process.env['ROUNDS'] ?? 300);
const mcpMode = !process.argv.includes('--answer');
const QUESTION = 'How do I declare storage variables in a contract?';

const agent = new http.Agent({ keepAlive: true });

/** The service called directly: POST /agents/process, read to the end event. */
function direct(): Promise<void> {
  const body = JSON.stringify({ query: QUESTION, chat_history: [], mcp_mode: mcpMode, include_content: true });
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${url}/agents/process`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-api-key': apiKey },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => (text.includes('"type":"end"') ? resolve() : reject(new Error(text.slice(0, 300)))));
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

function viaProxy(proxy: AgentFactoryProxy): Promise<void> {
  return new Promise((resolve, reject) => {
    const emitter = proxy.createAgent(QUESTION, [], { mcpMode });
    emitter.on('data', () => {});
    emitter.on('end', () => resolve());
    emitter.on('agentError', reject);
  });
}

async function timed(run: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const proxies = {
  'proxy over http': new AgentFactoryProxy({ baseUrl: url, apiKey, transport: 'http' }),
  'proxy over websocket': new AgentFactoryProxy({ baseUrl: url, apiKey, transport: 'websocket' }),
};
const variants: [string, () => Promise<void>][] = [
  ['direct', direct],
  ...Object.entries(proxies).map(([name, proxy]): [string, () => Promise<void>] => [name, () => viaProxy(proxy)]),
];
const samples = new Map<string, number[]>(variants.map(([name]) => [name, []]));

for (let i = 0; i < 20; i++) for (const [, run] of variants) await run(); // warm-up: connections, caches
for (let round = 0; round < rounds; round++) {
  const order = variants.map((_, i) => variants[(i + round) % variants.length]!); // rotate who goes first
  for (const [name, run] of order) samples.get(name)!.push(await timed(run));
}
for (const proxy of Object.values(proxies)) await proxy.close();
agent.destroy();

const base = samples.get('direct')!;
console.log(`${mcpMode ? 'MCP mode' : 'full answers (fake LLM)'}, ${rounds} interleaved rounds, ms`);
console.log('variant                  p50      p90      p50 of (variant - direct) per round');
for (const [name, values] of samples) {
  const diffs = values.map((v, i) => v - (base[i] ?? NaN));
  const extra = name === 'direct' ? '' : quantile(diffs, 0.5).toFixed(3);
  console.log(`${name.padEnd(22)} ${quantile(values, 0.5).toFixed(3).padStart(7)}  ${quantile(values, 0.9).toFixed(3).padStart(7)}  ${extra.padStart(8)}`);
}
