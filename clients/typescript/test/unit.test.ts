/** The client's own logic, without the service: line splitting, message conversion, the retry policy (through a
 *  scripted transport), error mapping. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CairoCoderClient, CairoCoderError, toChatMessage, type Transport, type WireEvent } from '../src/index.js';
import { toWire } from '../src/client.js';
import { fromHttpAnswer } from '../src/errors.js';
import { LineSplitter } from '../src/transport.js';

/** A transport that plays one script per attempt: events to yield, then maybe an error to throw. */
class Scripted implements Transport {
  readonly kind = 'http' as const;
  attempts = 0;
  constructor(private readonly scripts: { events?: WireEvent[]; error?: CairoCoderError }[]) {}
  async *send(): AsyncIterable<WireEvent> {
    const script = this.scripts[this.attempts++] ?? {};
    for (const event of script.events ?? []) yield event;
    if (script.error) throw script.error;
  }
  async close(): Promise<void> {}
}

const unavailable = (retryAfter: number | null = null): CairoCoderError =>
  new CairoCoderError({ code: 'llm_unavailable', status: 503, message: 'down', retryAfter });
const sources: WireEvent = { type: 'sources', data: [], request_id: 'abc' };
const end: WireEvent = { type: 'end', data: { usage: null, finish_reason: 'stop' } };

async function drain(client: CairoCoderClient): Promise<unknown[]> {
  const events: unknown[] = [];
  for await (const event of client.stream({ query: 'q' })) events.push(event);
  return events;
}

describe('retry policy', () => {
  it('retries a transient failure before the first event, with backoff', async () => {
    const transport = new Scripted([{ error: unavailable() }, { events: [{ type: 'error', data: { type: 'busy', status: 409, message: 'busy' } }] }, { events: [sources, end] }]);
    const client = new CairoCoderClient({ retryDelay: 10, maxRetries: 2 }, transport);
    const events = await drain(client);
    assert.equal(transport.attempts, 3);
    assert.equal(events.length, 2);
  });

  it('gives up after maxRetries, and never retries once an event arrived', async () => {
    const always = new Scripted([{ error: unavailable() }, { error: unavailable() }, { error: unavailable() }]);
    await assert.rejects(drain(new CairoCoderClient({ retryDelay: 1, maxRetries: 1 }, always)), /down/);
    assert.equal(always.attempts, 2);
    const started = new Scripted([{ events: [sources], error: unavailable() }, { events: [sources, end] }]);
    await assert.rejects(drain(new CairoCoderClient({ retryDelay: 1 }, started)), /down/);
    assert.equal(started.attempts, 1);
  });

  it('does not retry what is not transient, nor wait for a Retry-After beyond maxRetryDelay', async () => {
    const auth = new Scripted([{ error: new CairoCoderError({ code: 'invalid_api_key', status: 401, message: 'key' }) }]);
    await assert.rejects(drain(new CairoCoderClient({ retryDelay: 1 }, auth)), /key/);
    assert.equal(auth.attempts, 1);
    const long = new Scripted([{ error: unavailable(60) }, { events: [sources, end] }]);
    const began = Date.now();
    await assert.rejects(drain(new CairoCoderClient({ retryDelay: 1, maxRetryDelay: 1000 }, long)), /down/);
    assert.equal(long.attempts, 1);
    assert.ok(Date.now() - began < 500);
    const short = new Scripted([{ error: unavailable(0.2) }, { events: [sources, end] }]);
    const start = Date.now();
    await drain(new CairoCoderClient({ retryDelay: 1 }, short));
    assert.ok(Date.now() - start >= 190, 'waited for Retry-After');
  });

  it('carries the request id of the first event into a later error', async () => {
    const transport = new Scripted([{ events: [sources, { type: 'error', data: { type: 'llm_incomplete', status: 502, message: 'cut' } }] }]);
    await assert.rejects(
      drain(new CairoCoderClient({}, transport)),
      (error: unknown) => error instanceof CairoCoderError && error.requestId === 'abc' && error.status === 502,
    );
  });
});

describe('conversions', () => {
  it('splits NDJSON across chunks, multi-byte characters included', () => {
    const splitter = new LineSplitter();
    const bytes = Buffer.from('{"a":"é"}\n{"b":1}\n{"c"');
    assert.deepEqual(splitter.push(bytes.subarray(0, 8)), []);
    assert.deepEqual(splitter.push(bytes.subarray(8)), ['{"a":"é"}', '{"b":1}']);
    assert.deepEqual(splitter.push(':2}'), []);
    assert.deepEqual(splitter.rest(), ['{"c":2}']);
  });

  it('drops a last history message equal to the query and converts LangChain messages', () => {
    const wire = toWire(
      { query: 'q', history: [{ content: 'a', _getType: () => 'human' }, { content: 'b', getType: () => 'ai' }, { role: 'user', content: 'q' }] },
      true,
    );
    assert.deepEqual(wire.chat_history, [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }]);
    assert.equal(wire.include_content, true);
    const developer = toWire({ query: 'q', history: [{ role: 'developer', content: 'rules' }] }, false);
    assert.deepEqual(developer.chat_history, [{ role: 'system', content: 'rules' }], 'the process interface has no developer role');
    assert.equal(wire.mcp_mode, false);
    assert.throws(() => toChatMessage({ content: 'x', _getType: () => 'tool' }), (e: unknown) => e instanceof CairoCoderError && e.param === 'history');
  });

  it('maps HTTP answers with and without the envelope', () => {
    const enveloped = fromHttpAnswer(429, '{"error":{"message":"slow down","type":"rate_limit_error","code":"concurrency_limit","param":null}}', { retryAfter: '3', requestId: 'id1' });
    assert.deepEqual([enveloped.code, enveloped.status, enveloped.retryAfter, enveloped.requestId, enveloped.transient], ['concurrency_limit', 429, 3, 'id1', true]);
    assert.deepEqual(enveloped.toJSON(), { error: { message: 'slow down', type: 'rate_limit_error', code: 'concurrency_limit', param: null } });
    const html = fromHttpAnswer(502, '<html>bad gateway</html>', {});
    assert.deepEqual([html.code, html.type, html.transient], ['http_502', 'server_error', false]);
    assert.match(html.message, /bad gateway/);
  });

  it('rejects nonsense options', () => {
    assert.throws(() => new CairoCoderClient({ timeout: -1 }), RangeError);
  });
});
