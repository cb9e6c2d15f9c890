/**
 * The original in-process agent factory's contract, served by the Python service.
 *
 * `createAgent` / `createAgentById` return an EventEmitter that emits what the original agents emitted:
 * `'data'` with the JSON string `{"type": "sources", "data": [{pageContent, metadata}]}` once, then
 * `{"type": "response", "data": "<chunk>"}` strings, then `'end'`; on failure `'error'` with the JSON string
 * `{"data": "<message>"}`, and, for new code, `'agentError'` with a typed `CairoCoderError`.
 */

import { EventEmitter } from 'node:events';

import { CairoCoderClient } from './client.js';
import { CairoCoderError } from './errors.js';
import type {
  AgentOptions,
  ClientOptions,
  EndEvent,
  HistoryMessage,
  LegacyDocument,
  Source,
  Usage,
} from './types.js';

/** The emitter of one request: the legacy events plus `agentError`. */
export interface AgentEmitter extends EventEmitter {
  on(event: 'data', listener: (json: string) => void): this;
  on(event: 'end', listener: (end: EndEvent) => void): this;
  on(event: 'error', listener: (json: string) => void): this;
  on(event: 'agentError', listener: (error: CairoCoderError) => void): this;
  once(event: 'data', listener: (json: string) => void): this;
  once(event: 'end', listener: (end: EndEvent) => void): this;
  once(event: 'error', listener: (json: string) => void): this;
  once(event: 'agentError', listener: (error: CairoCoderError) => void): this;
  /** Stops the request (the service stops generating); `'agentError'` then reports `aborted`. */
  abort(): void;
}

/** A source in the original agents' shape (a LangChain `Document<BookChunk>`). */
export function toLegacyDocument(source: Source): LegacyDocument {
  return {
    pageContent: source.content ?? '',
    metadata: {
      title: source.title,
      url: source.url,
      sourceLink: source.url,
      source: source.source,
      name: source.title,
      path: source.path,
      section: source.section,
      version: source.version,
      number: source.number,
      score: source.score,
    },
  };
}

/** Usage of the last request whose `'end'` was emitted (what the original `TokenTracker` reported). */
let lastUsage: Usage | null = null;

export class AgentFactoryProxy {
  readonly client: CairoCoderClient;

  constructor(options: ClientOptions | CairoCoderClient = {}) {
    this.client = options instanceof CairoCoderClient ? options : new CairoCoderClient(options);
  }

  /**
   * An agent on the service's default agent. Also takes the original positional form
   * `createAgent(query, history, axRouter, vectorStore, mcpMode)`: the router and store are ignored.
   */
  createAgent(query: string, history: readonly HistoryMessage[], options?: AgentOptions): AgentEmitter;
  createAgent(query: string, history: readonly HistoryMessage[], ...legacy: unknown[]): AgentEmitter;
  createAgent(query: string, history: readonly HistoryMessage[], ...rest: unknown[]): AgentEmitter {
    return this.run(query, history, undefined, agentOptions(rest));
  }

  /**
   * An agent by id (`GET /v1/agents` lists them). Also takes the original positional form
   * `createAgentById(query, history, agentId, axRouter, vectorStore, mcpMode)`.
   */
  createAgentById(query: string, history: readonly HistoryMessage[], agentId: string, options?: AgentOptions): AgentEmitter;
  createAgentById(query: string, history: readonly HistoryMessage[], agentId: string, ...legacy: unknown[]): AgentEmitter;
  createAgentById(query: string, history: readonly HistoryMessage[], agentId: string, ...rest: unknown[]): AgentEmitter {
    return this.run(query, history, agentId, agentOptions(rest));
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private run(
    query: string,
    history: readonly HistoryMessage[],
    agentId: string | undefined,
    options: AgentOptions,
  ): AgentEmitter {
    const emitter = new EventEmitter() as AgentEmitter;
    const controller = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    emitter.abort = () => controller.abort();
    // Started on the next turn of the event loop: the caller attaches its listeners first, as with the original.
    setImmediate(() => {
      void this.pump(emitter, query, history, agentId, options, signal);
    });
    return emitter;
  }

  private async pump(
    emitter: AgentEmitter,
    query: string,
    history: readonly HistoryMessage[],
    agentId: string | undefined,
    options: AgentOptions,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      const events = this.client.stream(
        {
          query,
          history,
          ...(agentId !== undefined ? { agentId } : {}),
          ...(options.mcpMode !== undefined ? { mcpMode: options.mcpMode } : {}),
          ...(options.includeContent !== undefined ? { includeContent: options.includeContent } : {}),
        },
        { signal, ...(options.timeout !== undefined ? { timeout: options.timeout } : {}) },
      );
      for await (const event of events) {
        if (event.type === 'sources') {
          emitter.emit('data', JSON.stringify({ type: 'sources', data: event.sources.map(toLegacyDocument) }));
        } else if (event.type === 'response') {
          emitter.emit('data', JSON.stringify({ type: 'response', data: event.text }));
        } else {
          lastUsage = event.usage;
          emitter.emit('end', event);
        }
      }
    } catch (error) {
      const failure =
        error instanceof CairoCoderError
          ? error
          : new CairoCoderError({ code: 'internal_error', status: 500, message: String(error), cause: error });
      emitter.emit('agentError', failure);
      // Emitted only to listeners: an 'error' nobody listens to would crash the process (Node's rule).
      if (emitter.listenerCount('error') > 0) emitter.emit('error', JSON.stringify({ data: failure.message }));
    }
  }
}

/**
 * The options of the new form (one options object), or of the original positional forms, whose extra arguments
 * (`axRouter, vectorStore, mcpMode`, or later `llmConfig, embeddings, vectorStore, mcpMode`) are ignored but for
 * the MCP flag: their last boolean.
 */
function agentOptions(rest: unknown[]): AgentOptions {
  if (rest.length <= 1) {
    const options = rest[0];
    const plain = typeof options === 'object' && options !== null && Object.getPrototypeOf(options) === Object.prototype;
    return plain ? (options as AgentOptions) : {};
  }
  const flags = rest.filter((value): value is boolean => typeof value === 'boolean');
  return { mcpMode: flags.at(-1) === true };
}

let defaultProxy: AgentFactoryProxy | null = null;

/**
 * The original `RagAgentFactory`'s static API, on a shared proxy configured from `CAIRO_CODER_URL` and
 * `CAIRO_CODER_API_KEY` (or `RagAgentFactory.configure(...)`): an existing chat handler changes its import only.
 */
export const RagAgentFactory = {
  configure(options: ClientOptions | AgentFactoryProxy): AgentFactoryProxy {
    void defaultProxy?.close();
    defaultProxy = options instanceof AgentFactoryProxy ? options : new AgentFactoryProxy(options);
    return defaultProxy;
  },
  get proxy(): AgentFactoryProxy {
    defaultProxy ??= new AgentFactoryProxy();
    return defaultProxy;
  },
  createAgent(query: string, history: readonly HistoryMessage[], ...rest: unknown[]): AgentEmitter {
    return RagAgentFactory.proxy.createAgent(query, history, ...rest);
  },
  createAgentById(query: string, history: readonly HistoryMessage[], agentId: string, ...rest: unknown[]): AgentEmitter {
    return RagAgentFactory.proxy.createAgentById(query, history, agentId, ...rest);
  },
};

/**
 * The original `TokenTracker`: inside an `'end'` listener, `getSessionTokenUsage()` is that request's usage
 * (as the service counted it, every LLM call of the request).
 */
export const TokenTracker = {
  getSessionTokenUsage(): { promptTokens: number; responseTokens: number; totalTokens: number } {
    return {
      promptTokens: lastUsage?.prompt_tokens ?? 0,
      responseTokens: lastUsage?.completion_tokens ?? 0,
      totalTokens: lastUsage?.total_tokens ?? 0,
    };
  },
  resetSessionCounters(): void {
    // Usage is per request on the service: nothing to reset.
  },
};
