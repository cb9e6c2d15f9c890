/**
 * @cairo-coder/client: the cairo-coder service from Node.
 *
 * - `CairoCoderClient`: typed events as an async iterator (`client.stream(...)`), over HTTP or one WebSocket.
 * - `AgentFactoryProxy` / `RagAgentFactory`: the original in-process agents' EventEmitter contract.
 * - `createChatCompletionHandler`: an OpenAI-compatible chat completions handler for `http` and Express.
 */

export { CairoCoderClient, toChatMessage } from './client.js';
export { CairoCoderError, type CairoCoderErrorFields } from './errors.js';
export {
  createChatCompletionHandler,
  type ChatCompletionHandler,
  type ChatCompletionHandlerOptions,
  type HandlerRequest,
} from './handler.js';
export { HttpTransport } from './http.js';
export { AgentFactoryProxy, RagAgentFactory, TokenTracker, toLegacyDocument, type AgentEmitter } from './proxy.js';
export type { SendContext, Transport, WireEvent, WireRequest } from './transport.js';
export { WebSocketTransport } from './websocket.js';
export type {
  AgentEvent,
  AgentInfo,
  AgentOptions,
  AgentRequest,
  ChatMessage,
  ClientOptions,
  Completion,
  EndEvent,
  FinishReason,
  HistoryMessage,
  LangChainLikeMessage,
  LegacyDocument,
  RequestOptions,
  ResponseEvent,
  Role,
  Source,
  SourcesEvent,
  TransportKind,
  Usage,
} from './types.js';
