/** The public types: messages, requests, events, sources and options. */

export type Role = 'system' | 'developer' | 'user' | 'assistant';

/** A chat message as the service (and OpenAI) takes it. */
export interface ChatMessage {
  role: Role;
  content: string;
}

/**
 * A message of a LangChain-style history, as the original agents took it (`HumanMessage`, `AIMessage`,
 * `SystemMessage`): anything with `_getType()` or `getType()` and a `content`. No LangChain import is needed.
 */
export interface LangChainLikeMessage {
  content: unknown;
  _getType?: () => string;
  getType?: () => string;
}

export type HistoryMessage = ChatMessage | LangChainLikeMessage;

/** What the service retrieved: one numbered source (the answer's `[n]` refer to `number`). */
export interface Source {
  number: number;
  title: string;
  url: string;
  source: string;
  path: string;
  section: string[];
  /** Commit of the documentation the passage was indexed from. */
  version: string | null;
  score: number;
  /** The passage's text (when `includeContent` is on, the proxy's default). */
  content?: string;
}

/** A source in the original agents' shape (a LangChain `Document`). */
export interface LegacyDocument {
  pageContent: string;
  metadata: {
    title: string;
    url: string;
    sourceLink: string;
    source: string;
    name: string;
    path: string;
    section: string[];
    version: string | null;
    number: number;
    score: number;
  };
}

/** Tokens of every LLM call the request made. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Per stage (query_processing, retrieval_judge, generation), as the service reports it. */
  stages?: Record<string, { prompt_tokens: number; completion_tokens: number; total_tokens: number }>;
}

export type FinishReason = 'stop' | 'length';

export interface SourcesEvent {
  type: 'sources';
  sources: Source[];
  /** The service's id of this request (its logs, `x-request-id`). */
  requestId: string | null;
}

export interface ResponseEvent {
  type: 'response';
  /** The next piece of the answer (in MCP mode: the documentation, in one piece). */
  text: string;
}

export interface EndEvent {
  type: 'end';
  usage: Usage | null;
  /** `length`: the answer stopped at the token limit (incomplete). */
  finishReason: FinishReason;
}

/** The events of `client.stream()`, in this order: sources, response*, end. Errors are thrown. */
export type AgentEvent = SourcesEvent | ResponseEvent | EndEvent;

/** One question to an agent. */
export interface AgentRequest {
  query: string;
  /** Earlier turns, oldest first. A last user message equal to `query` is dropped (the original handlers sent it). */
  history?: readonly HistoryMessage[];
  /** The agent (see `listAgents()`); the service's default agent when absent. */
  agentId?: string;
  /** The retrieved documentation instead of an answer (no LLM needed). */
  mcpMode?: boolean;
  /** Each source's text in the sources event. Default: the client's `includeContent`. */
  includeContent?: boolean;
}

/** Options of one request. */
export interface RequestOptions {
  signal?: AbortSignal;
  /** Milliseconds for the whole request (connecting and retries included); default: the client's `timeout`. */
  timeout?: number;
}

/** The options of `createAgent` / `createAgentById`. */
export interface AgentOptions extends RequestOptions {
  mcpMode?: boolean;
  includeContent?: boolean;
}

export type TransportKind = 'http' | 'websocket';

export interface ClientOptions {
  /** The service's base URL. Default: `CAIRO_CODER_URL`, else `http://127.0.0.1:3001`. */
  baseUrl?: string;
  /** Sent as `x-api-key` when the service has API keys. Default: `CAIRO_CODER_API_KEY`. */
  apiKey?: string;
  /** `http` (NDJSON over `POST /agents/process`, the default) or `websocket` (one connection for all requests). */
  transport?: TransportKind;
  /** Milliseconds to connect and be accepted (HTTP answer headers, WebSocket handshake). Default 10 000. */
  connectTimeout?: number;
  /** Milliseconds for a whole request. Default 300 000 (the service's own deadline is 180 s). */
  timeout?: number;
  /** Attempts after the first for a request that never started streaming. Default 2. */
  maxRetries?: number;
  /** First backoff in ms, doubled each retry, jittered. Default 250. */
  retryDelay?: number;
  /** Longest wait between attempts in ms; a longer `Retry-After` is not waited for. Default 8 000. */
  maxRetryDelay?: number;
  /** Ask for each source's text (`pageContent` of the legacy events). Default true. */
  includeContent?: boolean;
  /** Extra headers for every HTTP request and the WebSocket handshake. */
  headers?: Record<string, string>;
  /** The most requests in flight on the WebSocket (the service's `server.ws_max_in_flight`, 32 by default);
   *  more wait their turn in the client. */
  maxInFlight?: number;
}

/** A whole answer (`client.complete()`). */
export interface Completion {
  answer: string;
  sources: Source[];
  usage: Usage | null;
  finishReason: FinishReason;
  requestId: string | null;
}

export interface AgentInfo {
  id: string;
  name: string;
  description: string;
  sources: string[];
  default: boolean;
}
