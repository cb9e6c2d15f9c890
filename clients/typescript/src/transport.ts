/** What a transport does: carry one request to the service's agent process interface and its events back. */

/** The request body of `/agents/process` (and of a WebSocket message, with its `id`). */
export interface WireRequest {
  query: string;
  chat_history: { role: string; content: string }[];
  agent_id?: string;
  mcp_mode: boolean;
  include_content: boolean;
}

/** One event as the service sends it: `{"type": "sources" | "response" | "end" | "error", "data", ...}`. */
export interface WireEvent {
  type: string;
  data: unknown;
  request_id?: string;
  id?: unknown;
}

export interface SendContext {
  /** Aborts the request; the transport stops the service's work for it and throws the signal's reason. */
  signal: AbortSignal;
  /** Milliseconds to connect and be accepted. */
  connectTimeout: number;
}

/**
 * A way to reach the service. `send` yields the request's events up to and including its `end` or `error`
 * event, then returns; it throws a `CairoCoderError` for a failure of its own (refused, lost, timed out, a
 * non-200 answer) and the signal's reason when aborted.
 */
export interface Transport {
  readonly kind: 'http' | 'websocket';
  send(request: WireRequest, context: SendContext): AsyncIterable<WireEvent>;
  /** Releases connections; requests in flight fail. */
  close(): Promise<void>;
}

/** Calls `onAbort` once when `signal` aborts (at once if it already has); the returned function detaches it. */
export function onAbort(signal: AbortSignal, onAbort: () => void): () => void {
  if (signal.aborted) {
    onAbort();
    return () => {};
  }
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/** Splits a byte stream into lines, across chunk boundaries. */
export class LineSplitter {
  private buffer = '';
  private readonly decoder = new TextDecoder();

  push(chunk: Uint8Array | string): string[] {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const lines = this.buffer.split('\n');
    this.buffer = lines.pop() ?? '';
    return lines.filter((line) => line.trim() !== '');
  }

  rest(): string[] {
    const last = this.buffer + this.decoder.decode();
    this.buffer = '';
    return last.trim() === '' ? [] : [last];
  }
}
