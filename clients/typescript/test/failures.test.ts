/** Cancellation reaching the service, timeouts, and retries only before the first event. */

import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';

import { CairoCoderError } from '../src/index.js';
import {
  QUESTION,
  TRANSPORTS,
  clientFor,
  control,
  fakeState,
  forwarder,
  freePort,
  proxyFor,
  record,
  silentServer,
  waitForFake,
} from './support.js';

const SLOW = { chunk_size: 2, chunk_delay: 0.05 }; // about 3 s per answer

beforeEach(() => control({ reset: true }));

function isCode(code: string, status?: number) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof CairoCoderError, String(error));
    assert.equal(error.code, code, error.message);
    if (status !== undefined) assert.equal(error.status, status);
    return true;
  };
}

for (const transport of TRANSPORTS) {
  describe(`cancellation over ${transport}`, () => {
    it('abort stops generation on the service (the LLM stream is closed)', async () => {
      await control(SLOW);
      const proxy = proxyFor(transport);
      const controller = new AbortController();
      try {
        const emitter = proxy.createAgent(QUESTION, [], { signal: controller.signal });
        const done = record(emitter);
        let responses = 0;
        emitter.on('data', (json) => {
          if ((JSON.parse(json) as { type: string }).type === 'response' && ++responses === 1) controller.abort();
        });
        const recorded = await done;
        const typed = recorded.events.find(([name]) => name === 'agentError')?.[1] as CairoCoderError;
        assert.equal(typed.code, 'aborted');
        const state = await waitForFake((s) => s.stream_outcomes.length > 0);
        assert.deepEqual(state.stream_outcomes, ['aborted']);
        const calls = state.chat_requests;
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal((await fakeState()).chat_requests, calls, 'no LLM call after the abort');
      } finally {
        await proxy.close();
      }
    });

    it('leaving the loop early stops generation too, and emitter.abort() does', async () => {
      await control(SLOW);
      const client = clientFor(transport);
      try {
        for await (const event of client.stream({ query: QUESTION })) {
          if (event.type === 'response') break;
        }
        assert.deepEqual((await waitForFake((s) => s.stream_outcomes.length > 0)).stream_outcomes, ['aborted']);
      } finally {
        await client.close();
      }
      await control({ reset: true, ...SLOW });
      const proxy = proxyFor(transport);
      try {
        const emitter = proxy.createAgent(QUESTION, []);
        emitter.on('data', (json) => {
          if ((JSON.parse(json) as { type: string }).type === 'response') emitter.abort();
        });
        await record(emitter);
        assert.deepEqual((await waitForFake((s) => s.stream_outcomes.length > 0)).stream_outcomes, ['aborted']);
      } finally {
        await proxy.close();
      }
    });
  });

  describe(`timeouts over ${transport}`, () => {
    it('the request timeout fires and stops the service', async () => {
      await control(SLOW);
      const client = clientFor(transport, { timeout: 700 });
      try {
        const started = Date.now();
        await assert.rejects(client.complete({ query: QUESTION }), isCode('timeout', 504));
        assert.ok(Date.now() - started < 3000);
        assert.deepEqual((await waitForFake((s) => s.stream_outcomes.length > 0)).stream_outcomes, ['aborted']);
      } finally {
        await client.close();
      }
    });

    it('the connect timeout fires on a service that accepts and never answers', async () => {
      const silent = await silentServer();
      const client = clientFor(transport, { baseUrl: silent.url, connectTimeout: 300, maxRetries: 0 });
      try {
        const started = Date.now();
        await assert.rejects(client.complete({ query: QUESTION }), isCode('connect_timeout', 504));
        assert.ok(Date.now() - started < 2000);
      } finally {
        await client.close();
        await silent.close();
      }
    });
  });

  describe(`retries over ${transport}`, () => {
    it('a 503 before the first event is retried with backoff', async () => {
      await control({ chat_failures: [503] });
      const client = clientFor(transport);
      try {
        const answer = await client.complete({ query: QUESTION });
        assert.ok(answer.answer.trim().startsWith(`ANSWER<${QUESTION}>`));
      } finally {
        await client.close();
      }
      await control({ chat_failures: [503] });
      const once = clientFor(transport, { maxRetries: 0 });
      try {
        await assert.rejects(once.complete({ query: QUESTION }), isCode('llm_unavailable', 503));
      } finally {
        await once.close();
      }
    });

    it('a refused connection is retried until the service is up; never after streaming started', async () => {
      const port = await freePort();
      const client = clientFor(transport, { baseUrl: `http://127.0.0.1:${port}`, maxRetries: 4, retryDelay: 200 });
      let forward: { close: () => Promise<void> } | null = null;
      const late = new Promise<void>((resolve) =>
        setTimeout(async () => {
          forward = await forwarder(port);
          resolve();
        }, 250),
      );
      try {
        const answer = await client.complete({ query: QUESTION, mcpMode: true });
        assert.match(answer.answer, /Contract Storage/);
      } finally {
        await late;
        await client.close();
        await (forward as { close: () => Promise<void> } | null)?.close();
      }
      const nobody = clientFor(transport, { baseUrl: `http://127.0.0.1:${await freePort()}`, maxRetries: 1 });
      try {
        await assert.rejects(nobody.complete({ query: QUESTION }), isCode('connection_refused', 503));
      } finally {
        await nobody.close();
      }
      // A failure after the first event is not retried: one streamed LLM call only.
      await control({ reset: true, stream_faults: ['cut'] });
      const cut = clientFor(transport);
      try {
        await assert.rejects(cut.complete({ query: QUESTION }), (error: unknown) => {
          assert.ok(error instanceof CairoCoderError && ['llm_incomplete', 'llm_unavailable'].includes(error.code));
          return true;
        });
        assert.equal((await fakeState()).streamed_chat_requests, 1);
      } finally {
        await cut.close();
      }
    });
  });
}
