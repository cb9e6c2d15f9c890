/** HTTP streaming transport: `POST /agents/process`, one JSON event per line, over kept-alive connections. */

import http from 'node:http';
import https from 'node:https';

import { CairoCoderError, abortError, fromHttpAnswer, fromNetworkError } from './errors.js';
import { LineSplitter, onAbort, type SendContext, type Transport, type WireEvent, type WireRequest } from './transport.js';

const MAX_ERROR_BODY = 64 * 1024;

export interface HttpTransportOptions {
  baseUrl: string;
  headers: Record<string, string>;
}

export class HttpTransport implements Transport {
  readonly kind = 'http' as const;
  private readonly endpoint: URL;
  private readonly agent: http.Agent;
  private readonly headers: Record<string, string>;

  constructor(options: HttpTransportOptions) {
    this.endpoint = endpoint(options.baseUrl, 'agents/process');
    const secure = this.endpoint.protocol === 'https:';
    this.agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.headers = options.headers;
  }

  async *send(request: WireRequest, context: SendContext): AsyncIterable<WireEvent> {
    const body = Buffer.from(JSON.stringify(request));
    const client = this.endpoint.protocol === 'https:' ? https : http;
    const outgoing = client.request(this.endpoint, {
      method: 'POST',
      agent: this.agent,
      headers: {
        ...this.headers,
        'content-type': 'application/json',
        'content-length': String(body.length),
        accept: 'application/x-ndjson',
      },
    });
    let started = false;
    let finished = false;
    let response: http.IncomingMessage | undefined;
    let failure: CairoCoderError | null = null;
    const fail = (error: CairoCoderError): void => {
      failure ??= error;
      outgoing.destroy(error);
    };
    const detach = onAbort(context.signal, () => fail(abortError(context.signal.reason)));
    const connectTimer = setTimeout(
      () =>
        fail(
          new CairoCoderError({
            code: 'connect_timeout',
            status: 504,
            message: `cairo-coder at ${this.endpoint.origin} did not answer within ${context.connectTimeout} ms`,
          }),
        ),
      context.connectTimeout,
    );
    try {
      response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        outgoing.once('response', resolve);
        outgoing.once('error', reject);
        outgoing.end(body);
      }).catch((error: unknown) => {
        throw failure ?? fromNetworkError(error, this.endpoint.origin, false);
      });
      clearTimeout(connectTimer);
      const requestId = header(response.headers['x-request-id']);
      if (response.statusCode !== 200) {
        const text = await readLimited(response, MAX_ERROR_BODY).catch(() => '');
        finished = true;
        throw fromHttpAnswer(response.statusCode ?? 0, text, {
          retryAfter: header(response.headers['retry-after']),
          requestId,
        });
      }
      const lines = new LineSplitter();
      try {
        for await (const chunk of response) {
          for (const line of lines.push(chunk as Buffer)) {
            const event = parse(line);
            started = true;
            finished = event.type === 'end' || event.type === 'error';
            yield event;
            if (finished) return;
          }
        }
        for (const line of lines.rest()) {
          const event = parse(line);
          finished = event.type === 'end' || event.type === 'error';
          yield event;
          if (finished) return;
        }
      } catch (error) {
        throw failure ?? fromNetworkError(error, this.endpoint.origin, started);
      }
      throw new CairoCoderError({
        code: started ? 'connection_lost' : 'connection_reset',
        status: started ? 502 : 503,
        type: 'api_connection_error',
        message: `the answer from ${this.endpoint.origin} ended without its end event`,
        requestId,
      });
    } finally {
      clearTimeout(connectTimer);
      detach();
      // Leaving early (the consumer stopped, an abort, a failure) closes the connection: the service sees the
      // client go and stops generating. A finished answer drains its last bytes and goes back to the pool.
      if (finished && response !== undefined && !response.complete) response.resume();
      else if (!finished && !outgoing.destroyed) outgoing.destroy();
    }
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}

export function endpoint(baseUrl: string, path: string): URL {
  const base = new URL(baseUrl);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  return new URL(path, base);
}

function parse(line: string): WireEvent {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === 'object' && value !== null && typeof (value as WireEvent).type === 'string') {
      return value as WireEvent;
    }
  } catch {
    // fall through
  }
  throw new CairoCoderError({
    code: 'bad_response',
    status: 502,
    message: `the service sent a line that is not an event: ${line.slice(0, 200)}`,
  });
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

async function readLimited(stream: http.IncomingMessage, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limit) break;
    parts.push(buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}
