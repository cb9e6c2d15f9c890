/** What the tests share: the stack's addresses, the fake LLM's controls, and event collection. */

import net from 'node:net';

import { AgentFactoryProxy, CairoCoderClient, type AgentEmitter, type ClientOptions, type TransportKind } from '../src/index.js';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with \`npm test\` (it starts the service)`);
  return value;
}

export const SERVICE_URL = required('CAIRO_CODER_TEST_URL');
export const FAKE_CONTROL = required('CAIRO_CODER_TEST_FAKE');
export const API_KEY = required('CAIRO_CODER_TEST_KEY');
export const TRANSPORTS: TransportKind[] = ['http', 'websocket'];
export const QUESTION = 'How do I declare storage variables in a contract?';

export function clientOptions(transport: TransportKind, extra: ClientOptions = {}): ClientOptions {
  return { baseUrl: SERVICE_URL, apiKey: API_KEY, transport, retryDelay: 50, ...extra };
}

export function proxyFor(transport: TransportKind, extra: ClientOptions = {}): AgentFactoryProxy {
  return new AgentFactoryProxy(clientOptions(transport, extra));
}

export function clientFor(transport: TransportKind, extra: ClientOptions = {}): CairoCoderClient {
  return new CairoCoderClient(clientOptions(transport, extra));
}

/** Sets the fake LLM's behaviour (`reset: true` first puts it back to the defaults; clears its request log). */
export async function control(settings: Record<string, unknown>): Promise<void> {
  const answer = await fetch(FAKE_CONTROL, { method: 'POST', body: JSON.stringify(settings) });
  if (!answer.ok) throw new Error(`fake control: ${answer.status}`);
}

export interface FakeState {
  chat_requests: number;
  streamed_chat_requests: number;
  stream_outcomes: string[];
}

export async function fakeState(): Promise<FakeState> {
  return (await (await fetch(FAKE_CONTROL)).json()) as FakeState;
}

/** Polls the fake LLM until `predicate` holds (or 10 s pass); its last state. */
export async function waitForFake(predicate: (state: FakeState) => boolean, ms = 10_000): Promise<FakeState> {
  const deadline = Date.now() + ms;
  let state = await fakeState();
  while (!predicate(state) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    state = await fakeState();
  }
  return state;
}

export interface Recorded {
  /** Every event in order: [name, first argument]. */
  events: [string, unknown][];
  data: string[];
}

/** Records an agent emitter's events until 'end' or an error; resolves then. */
export function record(emitter: AgentEmitter): Promise<Recorded> {
  const recorded: Recorded = { events: [], data: [] };
  return new Promise((resolve) => {
    emitter.on('data', (json) => {
      recorded.events.push(['data', json]);
      recorded.data.push(json);
    });
    emitter.on('end', (end) => {
      recorded.events.push(['end', end]);
      resolve(recorded);
    });
    emitter.on('agentError', (error) => recorded.events.push(['agentError', error]));
    emitter.on('error', (json) => {
      recorded.events.push(['error', json]);
      resolve(recorded);
    });
  });
}

/** A TCP server that accepts connections and never answers (connect timeouts). */
export async function silentServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A free port with nothing listening on it (yet). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Forwards TCP connections on `port` to the service (started late: a service that comes up after a refusal). */
export async function forwarder(port: number): Promise<{ close: () => Promise<void> }> {
  const target = new URL(SERVICE_URL);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((incoming) => {
    const outgoing = net.connect(Number(target.port), target.hostname);
    sockets.add(incoming).add(outgoing);
    incoming.pipe(outgoing).pipe(incoming);
    incoming.on('error', () => outgoing.destroy());
    outgoing.on('error', () => incoming.destroy());
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
