/** The original agents' EventEmitter contract: event sequence and payloads, errors, the legacy call forms. */

import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';

import { CairoCoderError, RagAgentFactory, TokenTracker } from '../src/index.js';
import { API_KEY, QUESTION, SERVICE_URL, TRANSPORTS, control, proxyFor, record } from './support.js';

beforeEach(() => control({ reset: true }));

for (const transport of TRANSPORTS) {
  describe(`legacy contract over ${transport}`, () => {
    const proxy = proxyFor(transport);
    after(() => proxy.close());

    it('emits sources once, then response chunks, then end, as JSON strings', async () => {
      const history = [
        { role: 'user' as const, content: 'hi' },
        { role: 'assistant' as const, content: 'hello' },
        { role: 'user' as const, content: QUESTION }, // the original handlers sent the question in the history too
      ];
      const recorded = await record(proxy.createAgent(QUESTION, history));
      const names = recorded.events.map(([name]) => name);
      assert.equal(names.at(-1), 'end');
      assert.ok(names.slice(0, -1).every((name) => name === 'data'), names.join(','));
      const parsed = recorded.data.map((json) => JSON.parse(json) as { type: string; data: unknown });
      assert.deepEqual(Object.keys(parsed[0] ?? {}), ['type', 'data']);
      assert.equal(parsed[0]?.type, 'sources');
      assert.equal(parsed.filter((event) => event.type === 'sources').length, 1);
      assert.ok(parsed.slice(1).length > 1 && parsed.slice(1).every((event) => event.type === 'response'));
      const documents = parsed[0]?.data as { pageContent: string; metadata: Record<string, unknown> }[];
      assert.ok(documents.length > 0);
      const first = documents[0]!;
      assert.equal(first.metadata['title'], 'Contract Storage');
      assert.match(first.pageContent, /storage/i);
      for (const key of ['title', 'url', 'sourceLink', 'source', 'name', 'path', 'section', 'version', 'number', 'score']) {
        assert.ok(key in first.metadata, `metadata.${key}`);
      }
      assert.equal(first.metadata['sourceLink'], first.metadata['url']);
      assert.equal(first.metadata['source'], 'cairo_book');
      const answer = parsed.slice(1).map((event) => event.data as string).join('');
      assert.ok(answer.trim().startsWith(`ANSWER<${QUESTION}>`), answer);
    });

    it('takes the original positional form and LangChain-style history', async () => {
      const human = { content: 'earlier question', _getType: () => 'human' };
      const ai = { content: [{ type: 'text', text: 'earlier answer' }], getType: () => 'ai' };
      const axRouter = new (class AxMultiServiceRouter {})();
      const vectorStore = new (class VectorStore {})();
      const mcp = await record(proxy.createAgentById(QUESTION, [human, ai], 'cairo-coder', axRouter, vectorStore, true));
      const parsed = mcp.data.map((json) => JSON.parse(json) as { type: string; data: string });
      assert.deepEqual(parsed.map((event) => event.type), ['sources', 'response']);
      assert.match(parsed[1]!.data, /Contract Storage/, 'MCP mode: the documentation, not an answer');
      // The original's later form: createAgent(query, history, llmConfig, embeddings, vectorStore, mcpMode).
      const later = await record(proxy.createAgent(QUESTION, [], { defaultLLM: {} }, {}, vectorStore, true));
      assert.match(JSON.parse(later.data[1]!).data as string, /Contract Storage/);
      const answer = await record(proxy.createAgent(QUESTION, [human, ai], axRouter, vectorStore, false));
      assert.equal(answer.events.at(-1)?.[0], 'end');
      assert.ok(answer.data.length > 2);
    });

    it('reports a failure as error (legacy JSON) and agentError (typed)', async () => {
      const recorded = await record(proxy.createAgentById(QUESTION, [], 'no-such-agent'));
      const [agentError, error] = recorded.events;
      assert.equal(agentError?.[0], 'agentError');
      const typed = agentError?.[1] as CairoCoderError;
      assert.ok(typed instanceof CairoCoderError);
      assert.equal(typed.status, 404);
      assert.equal(typed.code, 'unknown_agent');
      assert.equal(typed.type, 'not_found_error');
      assert.match(typed.message, /no-such-agent/);
      assert.equal(error?.[0], 'error');
      assert.deepEqual(JSON.parse(error?.[1] as string), { data: typed.message });
    });

    it('reports the service failing mid-answer with its request id', async () => {
      await control({ stream_faults: ['cut'] });
      const recorded = await record(proxy.createAgent(QUESTION, []));
      const names = recorded.events.map(([name]) => name);
      assert.equal(names[0], 'data', 'the sources came first');
      const typed = recorded.events.find(([name]) => name === 'agentError')?.[1] as CairoCoderError;
      // The provider's stream breaks off: mid-answer (llm_incomplete, 502) or, when the service had not read a
      // token yet, before it (llm_unavailable, 503); either way after the sources, so it is not retried.
      const expected: Record<string, [number, string]> = {
        llm_incomplete: [502, 'server_error'],
        llm_unavailable: [503, 'service_unavailable'],
      };
      assert.deepEqual([typed.status, typed.type], expected[typed.code], typed.code);
      assert.match(typed.requestId ?? '', /^[0-9a-f-]{8,}/, 'the id of the request in the service logs');
      assert.equal(names.at(-1), 'error');
      assert.ok(!names.includes('end'));
    });

    it('needs the API key', async () => {
      const keyless = proxyFor(transport, { apiKey: 'wrong' });
      try {
        const recorded = await record(keyless.createAgent(QUESTION, []));
        const typed = recorded.events.find(([name]) => name === 'agentError')?.[1] as CairoCoderError;
        assert.equal(typed.status, 401);
        assert.equal(typed.code, 'invalid_api_key');
        assert.equal(typed.type, 'authentication_error');
      } finally {
        await keyless.close();
      }
    });
  });
}

describe('RagAgentFactory and TokenTracker (the original static API)', () => {
  after(() => RagAgentFactory.proxy.close());

  it('answers through a configured shared proxy and reports usage inside end', async () => {
    RagAgentFactory.configure({ baseUrl: SERVICE_URL, apiKey: API_KEY });
    const emitter = RagAgentFactory.createAgent(QUESTION, []);
    const total = await new Promise<number>((resolve, reject) => {
      emitter.on('end', () => resolve(TokenTracker.getSessionTokenUsage().totalTokens));
      emitter.on('error', reject);
    });
    assert.ok(total > 0);
  });
});
