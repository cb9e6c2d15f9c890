/**
 * WebSocket transport: `/agents/process/ws`, one connection shared by every request of the client.
 *
 * Each request gets an id; the service echoes it in every event, which is how interleaved events find their
 * request. Aborting sends `{"type": "cancel", "id"}` (the service stops generating). A lost connection fails
 * the requests in flight (retryable if they had not started) and the next request opens a new one. Node 20 has
 * no WebSocket of its own, hence the `ws` package (it also sends the API key header in the handshake).
 */

import WebSocket from 'ws';

import { CairoCoderError, abortError, fromHttpAnswer, fromNetworkError, isRecord } from './errors.js';
import { endpoint } from './http.js';
import { onAbort, type SendContext, type Transport, type WireEvent, type WireRequest } from './transport.js';

export interface WebSocketTransportOptions {
  baseUrl: string;
  headers: Record<string, string>;
  /** The most requests in flight on the connection; more wait for a free place. */
  maxInFlight: number;
}

/** The events of one request, queued until its consumer takes them. */
class Channel {
  private readonly events: WireEvent[] = [];
  private failure: CairoCoderError | null = null;
  private wake: (() => void) | null = null;
  started = false;

  push(event: WireEvent): void {
    this.started = true;
    this.events.push(event);
    this.notify();
  }

  fail(error: CairoCoderError): void {
    this.failure ??= error;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async next(): Promise<WireEvent> {
    for (;;) {
      const event = this.events.shift();
      if (event !== undefined) return event;
      if (this.failure !== null) throw this.failure;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

export class WebSocketTransport implements Transport {
  readonly kind = 'websocket' as const;
  /** Connections opened so far (one, unless the connection was lost or closed). */
  connections = 0;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly maxInFlight: number;
  private socket: WebSocket | null = null;
  private opening: Promise<WebSocket> | null = null;
  private readonly channels = new Map<string, Channel>();
  private readonly waiting: (() => void)[] = [];
  private sequence = 0;
  private closed = false;

  constructor(options: WebSocketTransportOptions) {
    const url = endpoint(options.baseUrl, 'agents/process/ws');
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.url = url.toString();
    this.headers = options.headers;
    this.maxInFlight = options.maxInFlight;
  }

  async *send(request: WireRequest, context: SendContext): AsyncIterable<WireEvent> {
    if (this.closed) {
      throw new CairoCoderError({ code: 'client_closed', status: 503, message: 'the client was closed' });
    }
    const id = `r${++this.sequence}`;
    const channel = new Channel();
    let finished = false;
    let sent = false;
    const detach = onAbort(context.signal, () => {
      channel.fail(abortError(context.signal.reason));
      if (sent && !finished) this.cancel(id);
    });
    try {
      await this.place(context.signal);
      this.channels.set(id, channel);
      const socket = await this.connect(context);
      if (context.signal.aborted) throw abortError(context.signal.reason);
      socket.send(JSON.stringify({ ...request, id }));
      sent = true;
      for (;;) {
        const event = await channel.next();
        finished = event.type === 'end' || event.type === 'error';
        yield event;
        if (finished) return;
      }
    } finally {
      detach();
      if (sent && !finished) this.cancel(id); // the consumer stopped early: stop the service's work too
      if (this.channels.delete(id)) this.waiting.shift()?.();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const socket = this.socket;
    this.socket = null;
    if (socket !== null && socket.readyState === WebSocket.OPEN) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.close(1000);
        setTimeout(resolve, 1000).unref();
      });
    }
    socket?.terminate();
  }

  /** Waits until fewer than `maxInFlight` requests are in flight. */
  private async place(signal: AbortSignal): Promise<void> {
    while (this.channels.size >= this.maxInFlight) {
      await new Promise<void>((resolve, reject) => {
        const wake = (): void => {
          detach();
          resolve();
        };
        this.waiting.push(wake);
        // Aborted while waiting: leave the queue, so that the next free place goes to a request still wanted.
        const detach = onAbort(signal, () => {
          const index = this.waiting.indexOf(wake);
          if (index >= 0) this.waiting.splice(index, 1);
          reject(abortError(signal.reason));
        });
      });
    }
  }

  private cancel(id: string): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: 'cancel', id }));
  }

  private connect(context: SendContext): Promise<WebSocket> {
    if (this.socket !== null && this.socket.readyState === WebSocket.OPEN) return Promise.resolve(this.socket);
    this.opening ??= this.open(context.connectTimeout).finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private open(connectTimeout: number): Promise<WebSocket> {
    return new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(this.url, { headers: this.headers, handshakeTimeout: connectTimeout });
      this.connections += 1;
      let settled = false;
      const refuse = (error: CairoCoderError): void => {
        if (settled) return;
        settled = true;
        socket.terminate();
        reject(error);
      };
      socket.on('unexpected-response', (req, res) => {
        // The service refused the handshake with an HTTP answer (a wrong API key: 401, an origin: 403).
        const parts: Buffer[] = [];
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.on('end', () => {
          refuse(
            fromHttpAnswer(res.statusCode ?? 0, Buffer.concat(parts).toString('utf8'), {
              retryAfter: res.headers['retry-after'],
              requestId: undefined,
            }),
          );
          req.destroy();
        });
        res.on('error', () => refuse(fromNetworkError(new Error('handshake answer cut'), this.url, false)));
      });
      socket.on('open', () => {
        if (this.closed) {
          refuse(new CairoCoderError({ code: 'client_closed', status: 503, message: 'the client was closed' }));
          return;
        }
        settled = true;
        this.socket = socket;
        resolve(socket);
      });
      socket.on('error', (error: Error) => {
        if (/timed out/i.test(error.message)) {
          refuse(
            new CairoCoderError({
              code: 'connect_timeout',
              status: 504,
              message: `the WebSocket handshake with ${this.url} did not complete within ${connectTimeout} ms`,
            }),
          );
        } else {
          refuse(fromNetworkError(error, this.url, false));
        }
      });
      socket.on('message', (data, isBinary) => {
        if (!isBinary) this.dispatch(data.toString());
      });
      socket.on('close', (code, reason) => {
        if (this.socket === socket) this.socket = null;
        refuse(fromNetworkError(new Error(`closed (${code})`), this.url, false));
        for (const channel of this.channels.values()) {
          const detail = `the WebSocket closed (${code}${reason.length ? `: ${reason.toString()}` : ''})`;
          channel.fail(
            channel.started
              ? new CairoCoderError({ code: 'connection_lost', status: 502, type: 'api_connection_error', message: `${detail} mid-answer` })
              : new CairoCoderError({ code: 'connection_lost', status: 503, type: 'api_connection_error', message: `${detail} before an answer` }),
          );
        }
      });
    });
  }

  private dispatch(text: string): void {
    let event: unknown;
    try {
      event = JSON.parse(text);
    } catch {
      return; // not ours to interpret: the service only sends JSON
    }
    if (!isRecord(event) || typeof event['type'] !== 'string') return;
    const id = event['id'];
    const channel = typeof id === 'string' ? this.channels.get(id) : undefined;
    channel?.push(event as unknown as WireEvent);
  }
}
