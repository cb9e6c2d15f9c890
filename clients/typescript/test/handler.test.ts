/** The OpenAI-compatible handler, called by the official `openai` npm client. */

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';

import express from 'express';
import OpenAI from 'openai';

import { createChatCompletionHandler, type AgentFactoryProxy } from '../src/index.js';
import { QUESTION, TRANSPORTS, control, proxyFor, waitForFake } from './support.js';

async function serve(proxy: AgentFactoryProxy, options = {}): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer(createChatCompletionHandler(proxy, options));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

beforeEach(() => control({ reset: true }));

for (const transport of TRANSPORTS) {
  describe(`chat completions handler over ${transport}`, () => {
    const proxy = proxyFor(transport);
    let url = '';
    let server: http.Server;
    let openai: OpenAI;

    before(async () => {
      ({ url, server } = await serve(proxy));
      openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'backend-key', maxRetries: 0 });
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await proxy.close();
    });

    it('answers a non-streaming call', async () => {
      const completion = await openai.chat.completions.create({
        model: 'cairo-coder',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: QUESTION },
        ],
      });
      assert.equal(completion.object, 'chat.completion');
      assert.equal(completion.choices[0]?.finish_reason, 'stop');
      assert.ok(completion.choices[0]?.message.content?.trim().startsWith(`ANSWER<${QUESTION}>`));
      assert.ok((completion.usage?.total_tokens ?? 0) > 0);
      const sources = (completion as unknown as { sources: { title: string }[] }).sources;
      assert.equal(sources[0]?.title, 'Contract Storage');
    });

    it('streams', async () => {
      const stream = await openai.chat.completions.create({
        model: 'cairo-coder',
        messages: [{ role: 'user', content: QUESTION }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finish: string | null = null;
      let usage = 0;
      let chunks = 0;
      for await (const chunk of stream) {
        chunks += 1;
        text += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = chunk.usage?.total_tokens ?? usage;
      }
      assert.ok(chunks > 3);
      assert.ok(text.trim().startsWith(`ANSWER<${QUESTION}>`), text);
      assert.equal(finish, 'stop');
      assert.ok(usage > 0);
    });

    it('serves MCP mode from the x-mcp-mode header', async () => {
      const completion = await openai.chat.completions.create(
        { model: 'cairo-coder', messages: [{ role: 'user', content: QUESTION }] },
        { headers: { 'x-mcp-mode': 'true' } },
      );
      assert.match(completion.choices[0]?.message.content ?? '', /Contract Storage/);
    });

    it('answers errors in the OpenAI envelope with their status', async () => {
      await assert.rejects(
        openai.chat.completions.create({ model: 'cairo-coder', messages: [{ role: 'assistant', content: 'hi' }] }),
        (error: unknown) =>
          error instanceof OpenAI.BadRequestError && error.code === 'invalid_last_message' && error.status === 400,
      );
      await assert.rejects(
        openai.chat.completions.create({ model: 'cairo-coder', messages: [] }),
        (error: unknown) => error instanceof OpenAI.BadRequestError && error.code === 'invalid_messages',
      );
      // The service's own errors keep their status and code: a wrong key behind the backend, an unknown agent.
      const keyless = proxyFor(transport, { apiKey: 'wrong' });
      const other = await serve(keyless);
      try {
        const client = new OpenAI({ baseURL: `${other.url}/v1`, apiKey: 'x', maxRetries: 0 });
        await assert.rejects(
          client.chat.completions.create({ model: 'cairo-coder', messages: [{ role: 'user', content: QUESTION }] }),
          (error: unknown) => error instanceof OpenAI.AuthenticationError && error.code === 'invalid_api_key',
        );
      } finally {
        other.server.close();
        await keyless.close();
      }
      const ghost = await serve(proxy, { agentId: 'ghost' });
      try {
        const client = new OpenAI({ baseURL: `${ghost.url}/v1`, apiKey: 'x', maxRetries: 0 });
        await assert.rejects(
          client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: QUESTION }] }),
          (error: unknown) => error instanceof OpenAI.NotFoundError && error.code === 'unknown_agent',
        );
      } finally {
        ghost.server.close();
      }
      // Over the service's limits: its 422 comes through.
      await assert.rejects(
        openai.chat.completions.create({ model: 'cairo-coder', messages: [{ role: 'user', content: 'x'.repeat(200_000) }] }),
        (error: unknown) => error instanceof OpenAI.UnprocessableEntityError,
      );
    });

    it('an error after the stream started is an SSE error event the SDK raises', async () => {
      await control({ stream_faults: ['cut'] });
      const stream = await openai.chat.completions.create({
        model: 'cairo-coder',
        messages: [{ role: 'user', content: QUESTION }],
        stream: true,
      });
      await assert.rejects(
        (async () => {
          for await (const chunk of stream) void chunk;
        })(),
        (error: unknown) =>
          error instanceof OpenAI.APIError && /llm_incomplete|llm_unavailable/.test(JSON.stringify(error.error)),
      );
    });

    it('a caller that leaves stops generation on the service', async () => {
      await control({ chunk_size: 2, chunk_delay: 0.05 });
      const controller = new AbortController();
      const stream = await openai.chat.completions.create(
        { model: 'cairo-coder', messages: [{ role: 'user', content: QUESTION }], stream: true },
        { signal: controller.signal },
      );
      // (The SDK ends the iteration quietly on its own abort.)
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) controller.abort();
      }
      assert.ok(controller.signal.aborted);
      assert.deepEqual((await waitForFake((s) => s.stream_outcomes.length > 0)).stream_outcomes, ['aborted']);
    });
  });
}

describe('chat completions handler in Express', () => {
  it('works after express.json() and with the agent from the route', async () => {
    const proxy = proxyFor('websocket');
    const app = express();
    app.use(express.json({ limit: '1mb' }));
    app.post('/v1/chat/completions', createChatCompletionHandler(proxy));
    app.post('/v1/agents/:agentId/chat/completions', createChatCompletionHandler(proxy, { agentId: (req) => req.params?.['agentId'] }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0 });
      const answer = await openai.chat.completions.create({ model: 'cairo-coder', messages: [{ role: 'user', content: QUESTION }] });
      assert.ok(answer.choices[0]?.message.content?.includes(`ANSWER<${QUESTION}>`));
      const scarb = new OpenAI({ baseURL: `${base}/v1/agents/scarb-assistant`, apiKey: 'x', maxRetries: 0 });
      const manifest = await scarb.chat.completions.create(
        { model: 'any', messages: [{ role: 'user', content: 'What is the edition key of the manifest?' }] },
        { headers: { 'x-mcp-mode': 'true' } },
      );
      const sources = (manifest as unknown as { sources: { source: string }[] }).sources;
      assert.ok(sources.length > 0 && sources.every((s) => s.source === 'scarb_docs'), JSON.stringify(sources));
      await assert.rejects(
        openai.chat.completions.create({ model: 'cairo-coder', messages: [{ role: 'assistant', content: 'hi' }] }),
        (error: unknown) => error instanceof OpenAI.BadRequestError && error.code === 'invalid_last_message',
      );
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await proxy.close();
    }
  });
});
