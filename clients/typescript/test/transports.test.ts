/** The async-iterator API, the two transports giving the same events, and one WebSocket for many requests. */

import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';

import { CairoCoderError, WebSocketTransport, type AgentEvent } from '../src/index.js';
import { QUESTION, TRANSPORTS, clientFor, control, proxyFor, record } from './support.js';

beforeEach(() => control({ reset: true }));

async function collect(events: AsyncIterable<AgentEvent>): Promise<AgentEvent[]> {
  const all: AgentEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

/** The events without what differs between two runs of one request (its id). */
function comparable(events: AgentEvent[]): unknown[] {
  return events.map((event) => (event.type === 'sources' ? { ...event, requestId: null } : event));
}

describe('async iterator', () => {
  for (const transport of TRANSPORTS) {
    it(`streams typed events over ${transport}`, async () => {
      const client = clientFor(transport);
      try {
        const events = await collect(client.stream({ query: QUESTION, history: [{ role: 'user', content: 'hi' }] }));
        assert.equal(events[0]?.type, 'sources');
        const sources = events[0]?.type === 'sources' ? events[0] : null;
        assert.match(sources?.requestId ?? '', /\S/, 'the service request id');
        assert.equal(sources?.sources[0]?.number, 1);
        const end = events.at(-1);
        assert.equal(end?.type, 'end');
        assert.ok(end?.type === 'end' && end.usage !== null && end.usage.total_tokens > 0);
        assert.ok(end?.type === 'end' && end.finishReason === 'stop');
        const answer = events.map((event) => (event.type === 'response' ? event.text : '')).join('');
        assert.ok(answer.trim().startsWith(`ANSWER<${QUESTION}>`));
        const whole = await client.complete({ query: QUESTION, mcpMode: true });
        assert.match(whole.answer, /Contract Storage/);
        assert.equal(whole.sources[0]?.title, 'Contract Storage');
        await assert.rejects(
          collect(client.stream({ query: QUESTION, agentId: 'ghost' })),
          (error: unknown) => error instanceof CairoCoderError && error.status === 404 && error.code === 'unknown_agent',
        );
      } finally {
        await client.close();
      }
    });
  }
});

describe('both transports give identical events', () => {
  for (const mcpMode of [false, true]) {
    it(`for the same request (${mcpMode ? 'MCP mode' : 'an answer'})`, async () => {
      const http = clientFor('http');
      const ws = clientFor('websocket');
      try {
        const request = { query: QUESTION, history: [{ role: 'user' as const, content: 'hi' }], mcpMode };
        const overHttp = await collect(http.stream(request));
        const overWs = await collect(ws.stream(request));
        assert.ok(overHttp.length >= 3);
        assert.deepEqual(comparable(overWs), comparable(overHttp));
      } finally {
        await http.close();
        await ws.close();
      }
    });
  }

  it('and identical legacy events', async () => {
    const http = proxyFor('http');
    const ws = proxyFor('websocket');
    try {
      const overHttp = await record(http.createAgent(QUESTION, []));
      const overWs = await record(ws.createAgent(QUESTION, []));
      assert.deepEqual(overWs.data, overHttp.data);
    } finally {
      await http.close();
      await ws.close();
    }
  });
});

describe('one WebSocket', () => {
  it('carries 20 concurrent requests, each getting its own answer', async () => {
    await control({ chunk_delay: 0.01, chunk_size: 6 }); // long enough streams to interleave
    const client = clientFor('websocket');
    try {
      const questions = Array.from({ length: 20 }, (_, i) => `How do I write storage variable number ${i}?`);
      const answers = await Promise.all(questions.map((query) => client.complete({ query })));
      answers.forEach((answer, i) => {
        assert.ok(answer.answer.trim().startsWith(`ANSWER<${questions[i]}>`), `request ${i}: ${answer.answer.slice(0, 80)}`);
        assert.ok(answer.sources.length > 0);
      });
      assert.equal(new Set(answers.map((a) => a.requestId)).size, 20, 'twenty requests on the service');
      assert.equal((client.transport as WebSocketTransport).connections, 1, 'one connection for all');
    } finally {
      await client.close();
    }
  });

  it('queues requests beyond maxInFlight instead of failing them', async () => {
    const client = clientFor('websocket', { maxInFlight: 2 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 5 }, (_, i) => client.complete({ query: `storage question ${i}`, mcpMode: true })),
      );
      assert.ok(answers.every((answer) => /Contract Storage/.test(answer.answer)));
      // A request aborted while it waits for a place leaves the queue: the one behind it still gets the place.
      await control({ chunk_size: 4, chunk_delay: 0.02 });
      const one = clientFor('websocket', { maxInFlight: 1 });
      try {
        const first = one.complete({ query: 'first' });
        const controller = new AbortController();
        const second = one.complete({ query: 'second' }, { signal: controller.signal });
        const third = one.complete({ query: 'third' });
        controller.abort();
        await assert.rejects(second, (error: unknown) => error instanceof CairoCoderError && error.code === 'aborted');
        assert.ok((await first).answer.includes('ANSWER<first>'));
        assert.ok((await third).answer.includes('ANSWER<third>'));
      } finally {
        await one.close();
      }
    } finally {
      await client.close();
    }
  });
});
