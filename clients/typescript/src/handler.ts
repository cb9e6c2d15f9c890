/**
 * A drop-in OpenAI-compatible `POST /v1/chat/completions` handler for Node's `http` server and Express-style
 * `(req, res)`, answering through the proxy: a backend keeps its public API while the service does the work.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { CairoCoderError, isRecord } from './errors.js';
import { AgentFactoryProxy } from './proxy.js';
import type { ChatMessage, Source, Usage } from './types.js';

/** A request as the handler reads it: Node's, or Express's (a parsed `body`, route `params`). */
export type HandlerRequest = IncomingMessage & { body?: unknown; params?: Record<string, string | undefined> };

export interface ChatCompletionHandlerOptions {
  /** The agent to answer with: fixed, or per request (e.g. `(req) => req.params?.agentId` on an Express route
   *  `/v1/agents/:agentId/chat/completions`). Default: the request's `model` if it is an agent id (the service's
   *  `/v1/agents`), else the service's default agent, as the service's own route does. */
  agentId?: string | ((req: HandlerRequest) => string | undefined);
  /** Largest request body in bytes (when no body parser ran before). Default 1 000 000. */
  maxBodyBytes?: number;
  /** Milliseconds for a whole answer. Default: the client's. */
  timeout?: number;
  /** Called with every error answered (for the backend's logs); never with a stack trace for the client. */
  onError?: (error: CairoCoderError, req: HandlerRequest) => void;
}

export type ChatCompletionHandler = (req: HandlerRequest, res: ServerResponse, next?: (error?: unknown) => void) => Promise<void>;

const ROLES = new Set(['system', 'developer', 'user', 'assistant']);
const AGENTS_TTL_MS = 60_000;

export function createChatCompletionHandler(
  proxy: AgentFactoryProxy,
  options: ChatCompletionHandlerOptions = {},
): ChatCompletionHandler {
  const client = proxy.client;
  const maxBody = options.maxBodyBytes ?? 1_000_000;
  let agents: { ids: Set<string>; at: number } | null = null;

  async function agentFor(req: HandlerRequest, model: string | undefined): Promise<string | undefined> {
    if (typeof options.agentId === 'function') return options.agentId(req);
    if (typeof options.agentId === 'string') return options.agentId;
    if (model === undefined) return undefined;
    if (agents === null || Date.now() - agents.at > AGENTS_TTL_MS) {
      agents = { ids: new Set((await client.listAgents()).map((a) => a.id)), at: Date.now() };
    }
    return agents.ids.has(model) ? model : undefined;
  }

  return async (req, res) => {
    const controller = new AbortController();
    // The caller left before the end: stop the service's work for it.
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    let streaming = false;
    try {
      if (req.method !== 'POST') throw invalid(405, 'method_not_allowed', `${req.method ?? ''} is not allowed: use POST`);
      const body = req.body !== undefined ? req.body : await readJson(req, maxBody);
      const { messages, stream, model, includeUsage } = validate(body);
      const last = messages[messages.length - 1] as ChatMessage;
      const agentId = await agentFor(req, model);
      const mcpMode = mcpHeader(req.headers['x-mcp-mode'] ?? req.headers['mcp']);
      const events = client.stream(
        {
          query: last.content,
          history: messages.slice(0, -1),
          ...(agentId !== undefined ? { agentId } : {}),
          mcpMode,
          includeContent: false,
        },
        { signal: controller.signal, ...(options.timeout !== undefined ? { timeout: options.timeout } : {}) },
      );
      const id = `chatcmpl-${randomUUID()}`;
      const created = Math.floor(Date.now() / 1000);
      const name = model ?? agentId ?? 'cairo-coder';
      const chunk = (extra: Record<string, unknown>): Record<string, unknown> => ({
        id,
        object: 'chat.completion.chunk',
        created,
        model: name,
        ...extra,
      });
      let answer = '';
      let sources: Source[] = [];
      let usage: Usage | null = null;
      let finish = 'stop';
      for await (const event of events) {
        if (stream && !streaming) {
          streaming = true;
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
          res.flushHeaders();
          write(res, chunk({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }));
        }
        if (event.type === 'sources') {
          sources = event.sources;
          if (stream) write(res, chunk({ choices: [], cairo_coder: { type: 'sources', data: sources } }), 'sources');
        } else if (event.type === 'response') {
          answer += event.text;
          if (stream && event.text) {
            write(res, chunk({ choices: [{ index: 0, delta: { content: event.text }, finish_reason: null }] }));
          }
        } else {
          usage = event.usage;
          finish = event.finishReason;
        }
      }
      const openaiUsage = usage === null ? null : pickUsage(usage);
      if (stream) {
        write(res, chunk({ choices: [{ index: 0, delta: {}, finish_reason: finish }] }));
        if (includeUsage) write(res, chunk({ choices: [], usage: openaiUsage }));
        res.end('data: [DONE]\n\n');
        return;
      }
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model: name,
        choices: [{ index: 0, message: { role: 'assistant', content: answer }, logprobs: null, finish_reason: finish }],
        usage: openaiUsage,
        sources,
      });
    } catch (error) {
      const failure =
        error instanceof CairoCoderError
          ? error
          : new CairoCoderError({ code: 'internal_error', status: 500, message: 'internal error', cause: error });
      options.onError?.(failure, req);
      if (res.destroyed || controller.signal.aborted) return; // nobody is listening any more
      if (streaming) {
        // After the first byte the status is sent: the error is an SSE error event (the OpenAI SDKs raise it).
        res.write(`event: error\ndata: ${JSON.stringify(failure.toJSON())}\n\n`);
        res.end('data: [DONE]\n\n');
        return;
      }
      const headers: Record<string, string> = {};
      if (failure.retryAfter !== null) headers['retry-after'] = String(Math.ceil(failure.retryAfter));
      else if (failure.status === 429 || failure.status === 503) headers['retry-after'] = '5';
      if (failure.requestId !== null) headers['x-request-id'] = failure.requestId;
      sendJson(res, failure.status === 499 ? 503 : failure.status, failure.toJSON(), headers);
    }
  };
}

function write(res: ServerResponse, payload: unknown, event?: string): void {
  res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(payload)}\n\n`);
}

function sendJson(res: ServerResponse, status: number, payload: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(payload);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function pickUsage(usage: Usage): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, total_tokens: usage.total_tokens };
}

function invalid(status: number, code: string, message: string, param: string | null = null): CairoCoderError {
  return new CairoCoderError({ code, status, message, param });
}

function mcpHeader(value: string | string[] | undefined): boolean {
  const text = (Array.isArray(value) ? value[0] : value)?.trim().toLowerCase();
  if (text === undefined || text === '' || ['false', '0', 'no'].includes(text)) return false;
  if (['true', '1', 'yes'].includes(text)) return true;
  throw invalid(400, 'invalid_header', `x-mcp-mode must be true or false, not ${JSON.stringify(text)}`, 'x-mcp-mode');
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw invalid(413, 'body_too_large', `the request body is over ${limit} bytes`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw invalid(413, 'body_too_large', `the request body is over ${limit} bytes`);
    parts.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch (error) {
    throw invalid(400, 'invalid_json', `the request body is not JSON: ${(error as Error).message}`);
  }
}

interface Valid {
  messages: ChatMessage[];
  stream: boolean;
  model: string | undefined;
  includeUsage: boolean;
}

/** The request's messages and switches, checked with the errors the original backend gave. */
function validate(body: unknown): Valid {
  if (!isRecord(body)) throw invalid(400, 'invalid_request', 'the request body must be a JSON object');
  const raw = body['messages'];
  if (!Array.isArray(raw) || raw.length === 0) {
    throw invalid(400, 'invalid_messages', 'Invalid request: messages array is missing.', 'messages');
  }
  const messages = raw.map((message, i): ChatMessage => {
    if (!isRecord(message) || typeof message['role'] !== 'string' || !ROLES.has(message['role'])) {
      throw invalid(400, 'invalid_messages', `messages[${i}].role must be one of ${[...ROLES].join(', ')}`, `messages.${i}.role`);
    }
    const content = message['content'];
    const text =
      typeof content === 'string'
        ? content
        : Array.isArray(content)
          ? content.map((part) => (isRecord(part) && typeof part['text'] === 'string' ? part['text'] : '')).join('')
          : null;
    if (text === null) throw invalid(400, 'invalid_messages', `messages[${i}].content must be text`, `messages.${i}.content`);
    return { role: message['role'] as ChatMessage['role'], content: text };
  });
  const last = messages[messages.length - 1];
  if (last === undefined || last.role !== 'user') {
    throw invalid(400, 'invalid_last_message', 'Last message must be from user', 'messages');
  }
  const options = body['stream_options'];
  return {
    messages,
    stream: body['stream'] === true,
    model: typeof body['model'] === 'string' ? body['model'] : undefined,
    includeUsage: isRecord(options) && options['include_usage'] === true,
  };
}
