/** The client: typed events as an async iterator, retries before the first event, timeouts, cancellation. */

import http from 'node:http';
import https from 'node:https';

import { CairoCoderError, abortError, fromErrorEvent, fromHttpAnswer, fromNetworkError, isRecord } from './errors.js';
import { HttpTransport, endpoint } from './http.js';
import { onAbort, type Transport, type WireEvent, type WireRequest } from './transport.js';
import type {
  AgentEvent,
  AgentInfo,
  AgentRequest,
  ChatMessage,
  ClientOptions,
  Completion,
  FinishReason,
  HistoryMessage,
  RequestOptions,
  Source,
  Usage,
} from './types.js';
import { WebSocketTransport } from './websocket.js';

const DEFAULT_URL = 'http://127.0.0.1:3001';

interface Settings {
  baseUrl: string;
  headers: Record<string, string>;
  connectTimeout: number;
  timeout: number;
  maxRetries: number;
  retryDelay: number;
  maxRetryDelay: number;
  includeContent: boolean;
}

export class CairoCoderClient {
  readonly transport: Transport;
  private readonly settings: Settings;

  constructor(options: ClientOptions = {}, transport?: Transport) {
    const env = typeof process === 'undefined' ? {} : process.env;
    const apiKey = options.apiKey ?? env['CAIRO_CODER_API_KEY'];
    this.settings = {
      baseUrl: options.baseUrl ?? env['CAIRO_CODER_URL'] ?? DEFAULT_URL,
      headers: { ...(options.headers ?? {}), ...(apiKey ? { 'x-api-key': apiKey } : {}) },
      connectTimeout: positive(options.connectTimeout, 10_000, 'connectTimeout'),
      timeout: positive(options.timeout, 300_000, 'timeout'),
      maxRetries: Math.max(0, Math.floor(options.maxRetries ?? 2)),
      retryDelay: positive(options.retryDelay, 250, 'retryDelay'),
      maxRetryDelay: positive(options.maxRetryDelay, 8_000, 'maxRetryDelay'),
      includeContent: options.includeContent ?? true,
    };
    const { baseUrl, headers } = this.settings;
    this.transport =
      transport ??
      (options.transport === 'websocket'
        ? new WebSocketTransport({ baseUrl, headers, maxInFlight: Math.max(1, options.maxInFlight ?? 32) })
        : new HttpTransport({ baseUrl, headers }));
  }

  get baseUrl(): string {
    return this.settings.baseUrl;
  }

  /**
   * The answer's events: `sources`, then `response` pieces, then `end`. A failure is thrown as a
   * `CairoCoderError`; leaving the loop early (or aborting the signal) stops the service's work.
   *
   * ```ts
   * for await (const event of client.stream({ query: 'How do I emit an event?' })) {
   *   if (event.type === 'response') process.stdout.write(event.text);
   * }
   * ```
   */
  async *stream(request: AgentRequest, options: RequestOptions = {}): AsyncGenerator<AgentEvent, void, undefined> {
    const wire = toWire(request, this.settings.includeContent);
    const controller = new AbortController();
    const timeout = options.timeout ?? this.settings.timeout;
    const timer = setTimeout(
      () =>
        controller.abort(
          new CairoCoderError({ code: 'timeout', status: 504, message: `no complete answer within ${timeout} ms` }),
        ),
      timeout,
    );
    const detach = options.signal ? onAbort(options.signal, () => controller.abort(options.signal?.reason)) : null;
    let requestId: string | null = null; // the service's id of the request, from its first event
    try {
      for (let attempt = 0; ; attempt++) {
        let started = false;
        try {
          for await (const event of this.transport.send(wire, {
            signal: controller.signal,
            connectTimeout: this.settings.connectTimeout,
          })) {
            requestId = requestIdOf(event) ?? requestId;
            if (event.type === 'error') throw fromErrorEvent(event.data, requestId);
            started = true;
            const typed = toEvent(event);
            if (typed !== null) yield typed;
            if (event.type === 'end') return;
          }
          throw new CairoCoderError({
            code: 'connection_lost',
            status: 502,
            type: 'api_connection_error',
            message: 'the answer ended without its end event',
          });
        } catch (error) {
          if (controller.signal.aborted) throw abortError(controller.signal.reason);
          const failure = fromNetworkError(error, this.settings.baseUrl, started);
          const wait = started ? null : this.backoff(failure, attempt);
          if (wait === null) throw failure;
          await sleep(wait, controller.signal).catch(() => {
            throw abortError(controller.signal.reason);
          });
        }
      }
    } finally {
      clearTimeout(timer);
      detach?.();
      controller.abort(); // a consumer that left early: the transport stops the request (a no-op once it ended)
    }
  }

  /** The whole answer at once (the same request as `stream`). */
  async complete(request: AgentRequest, options: RequestOptions = {}): Promise<Completion> {
    const completion: Completion = { answer: '', sources: [], usage: null, finishReason: 'stop', requestId: null };
    for await (const event of this.stream(request, options)) {
      if (event.type === 'sources') {
        completion.sources = event.sources;
        completion.requestId = event.requestId;
      } else if (event.type === 'response') {
        completion.answer += event.text;
      } else {
        completion.usage = event.usage;
        completion.finishReason = event.finishReason;
      }
    }
    return completion;
  }

  /** The service's agents (`GET /v1/agents`). */
  async listAgents(options: RequestOptions = {}): Promise<AgentInfo[]> {
    const body = await this.getJson('v1/agents', options);
    const data = isRecord(body) && Array.isArray(body['data']) ? body['data'] : [];
    return data.filter(isRecord).map((a) => ({
      id: String(a['id']),
      name: String(a['name'] ?? a['id']),
      description: String(a['description'] ?? ''),
      sources: Array.isArray(a['sources']) ? a['sources'].map(String) : [],
      default: a['default'] === true,
    }));
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  /** Milliseconds to wait before the next attempt, or null when `failure` must not be retried. */
  private backoff(failure: CairoCoderError, attempt: number): number | null {
    if (!failure.transient || attempt >= this.settings.maxRetries) return null;
    const exponential = Math.min(this.settings.maxRetryDelay, this.settings.retryDelay * 2 ** attempt);
    const jittered = exponential * (0.5 + Math.random() / 2);
    if (failure.retryAfter === null) return jittered;
    const asked = failure.retryAfter * 1000;
    return asked > this.settings.maxRetryDelay ? null : Math.max(jittered, asked);
  }

  private async getJson(path: string, options: RequestOptions): Promise<unknown> {
    const url = endpoint(this.settings.baseUrl, path);
    const client = url.protocol === 'https:' ? https : http;
    const signal = AbortSignal.any([
      AbortSignal.timeout(options.timeout ?? this.settings.connectTimeout),
      ...(options.signal ? [options.signal] : []),
    ]);
    return new Promise((resolve, reject) => {
      const request = client.get(url, { headers: this.settings.headers, signal }, (response) => {
        const parts: Buffer[] = [];
        response.on('data', (chunk: Buffer) => parts.push(chunk));
        response.on('error', (error) => reject(fromNetworkError(error, url.origin, false)));
        response.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          if (response.statusCode !== 200) {
            reject(
              fromHttpAnswer(response.statusCode ?? 0, text, {
                retryAfter: response.headers['retry-after'],
                requestId: response.headers['x-request-id'] as string | undefined,
              }),
            );
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch (error) {
            reject(fromNetworkError(error, url.origin, true));
          }
        });
      });
      request.on('error', (error) => {
        if (!signal.aborted) reject(fromNetworkError(error, url.origin, false));
        else if (options.signal?.aborted) reject(abortError(options.signal.reason));
        else reject(new CairoCoderError({ code: 'timeout', status: 504, message: `no answer from ${url.origin} in time` }));
      });
    });
  }
}

/** The service's request body for `request`. */
export function toWire(request: AgentRequest, includeContent: boolean): WireRequest {
  // The process interface takes system, user and assistant turns: a developer message is a system one there
  // (as the service's chat route reads it).
  const history = (request.history ?? [])
    .map(toChatMessage)
    .map((m) => (m.role === 'developer' ? { role: 'system' as const, content: m.content } : m));
  const last = history.at(-1);
  if (last !== undefined && last.role === 'user' && last.content === request.query) history.pop();
  return {
    query: request.query,
    chat_history: history,
    ...(request.agentId !== undefined ? { agent_id: request.agentId } : {}),
    mcp_mode: request.mcpMode ?? false,
    include_content: request.includeContent ?? includeContent,
  };
}

const LANGCHAIN_ROLES: Record<string, ChatMessage['role']> = {
  human: 'user',
  user: 'user',
  ai: 'assistant',
  assistant: 'assistant',
  system: 'system',
  developer: 'developer',
};

/** A history message as `{role, content}`: ours as is, a LangChain message by its type. */
export function toChatMessage(message: HistoryMessage): ChatMessage {
  const kind =
    'role' in message && typeof message.role === 'string'
      ? message.role
      : 'role' in message
        ? undefined
        : typeof message._getType === 'function'
          ? message._getType()
          : typeof message.getType === 'function'
            ? message.getType()
            : undefined;
  const role = kind === undefined ? undefined : LANGCHAIN_ROLES[kind];
  if (role === undefined) {
    throw new CairoCoderError({
      code: 'invalid_value',
      status: 400,
      param: 'history',
      message: `a history message must have a role (user, assistant, system, developer) or be a LangChain message; got ${String(kind)}`,
    });
  }
  return { role, content: textOf(message.content) };
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (isRecord(part) && typeof part['text'] === 'string' ? part['text'] : ''))
      .join('');
  }
  return content === undefined || content === null ? '' : String(content);
}

function toEvent(event: WireEvent): AgentEvent | null {
  switch (event.type) {
    case 'sources':
      return { type: 'sources', sources: Array.isArray(event.data) ? (event.data as Source[]) : [], requestId: requestIdOf(event) };
    case 'response':
      return { type: 'response', text: typeof event.data === 'string' ? event.data : '' };
    case 'end': {
      const data = isRecord(event.data) ? event.data : {};
      const finish: FinishReason = data['finish_reason'] === 'length' ? 'length' : 'stop';
      return { type: 'end', usage: isRecord(data['usage']) ? (data['usage'] as unknown as Usage) : null, finishReason: finish };
    }
    default:
      return null; // an event type of a newer service: ignored
  }
}

function requestIdOf(event: WireEvent): string | null {
  return typeof event.request_id === 'string' ? event.request_id : null;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number of milliseconds`);
  return value;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      detach();
      resolve();
    }, ms);
    const detach = onAbort(signal, () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}
