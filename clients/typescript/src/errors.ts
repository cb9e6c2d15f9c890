/**
 * One error class for everything that can go wrong, with the fields a program branches on.
 *
 * ```
 * CairoCoderError                      type                  code (examples)                     status
 * ├── from the service (its envelope)  invalid_request_error invalid_value, last_message_not_user  400/422
 * │                                    authentication_error  invalid_api_key                       401
 * │                                    rate_limit_error      concurrency_limit, llm_rate_limited   429
 * │                                    service_unavailable   llm_unavailable, database_unavailable 503
 * │                                    ...                   (docs/api.md of the service)
 * ├── transport                        api_connection_error  connection_refused, connection_lost   503/502
 * ├── timeouts                         timeout_error         connect_timeout, timeout              504
 * └── cancellation                     abort_error           aborted                               499
 * ```
 *
 * `code` is the service's own error kind (the `type` of its stream `error` events, the `code` of its HTTP
 * envelope) or one of the client's codes above; `type` is the OpenAI category of `status`, so the same error can
 * be written back in OpenAI's envelope (see `createChatCompletionHandler`).
 */

/** The OpenAI error category of each status (as the service writes it). */
const STATUS_TYPE: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  408: 'invalid_request_error',
  409: 'conflict_error',
  413: 'invalid_request_error',
  421: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
  499: 'abort_error',
  500: 'server_error',
  502: 'server_error',
  503: 'service_unavailable',
  504: 'timeout_error',
};

/** Codes that mean "try again later" when they arrive before anything was streamed. */
const TRANSIENT_CODES = new Set([
  'connection_refused',
  'connection_reset',
  'connection_lost',
  'connection_error',
  'connect_timeout',
  'busy',
  'concurrency_limit',
  'llm_rate_limited',
  'llm_unavailable',
  'llm_circuit_open',
  'database_unavailable',
  'embedding_unavailable',
]);

export interface CairoCoderErrorFields {
  /** The service's error kind or a client code (`connection_refused`, `timeout`, `aborted`, ...). */
  code: string;
  /** HTTP status: the service's, or the client's choice for its own errors (503, 502, 504, 499). */
  status: number;
  message: string;
  /** OpenAI error category; derived from `status` when not given. */
  type?: string | undefined;
  /** The request id the service gave (its logs and `x-request-id`), when it got that far. */
  requestId?: string | null | undefined;
  /** Seconds the service asked to wait before retrying (`Retry-After`). */
  retryAfter?: number | null;
  /** The request field the error is about, when the service named one. */
  param?: string | null;
  cause?: unknown;
}

export class CairoCoderError extends Error {
  override readonly name = 'CairoCoderError';
  readonly type: string;
  readonly code: string;
  readonly status: number;
  readonly requestId: string | null;
  readonly retryAfter: number | null;
  readonly param: string | null;

  constructor(fields: CairoCoderErrorFields) {
    super(fields.message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.code = fields.code;
    this.status = fields.status;
    this.type = fields.type ?? STATUS_TYPE[fields.status] ?? (fields.status >= 500 ? 'server_error' : 'invalid_request_error');
    this.requestId = fields.requestId ?? null;
    this.retryAfter = fields.retryAfter ?? null;
    this.param = fields.param ?? null;
  }

  /** Whether the same request may be sent again, provided nothing of its answer was streamed yet. */
  get transient(): boolean {
    return TRANSIENT_CODES.has(this.code);
  }

  /** The OpenAI error envelope of this error. */
  toJSON(): { error: { message: string; type: string; code: string; param: string | null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** The error of a service's `error` stream event (`{"type", "message", "status", "retry_after"?}`). */
export function fromErrorEvent(data: unknown, requestId: string | null): CairoCoderError {
  const fields = isRecord(data) ? data : {};
  return new CairoCoderError({
    code: typeof fields['type'] === 'string' ? fields['type'] : 'server_error',
    status: typeof fields['status'] === 'number' ? fields['status'] : 500,
    message: typeof fields['message'] === 'string' ? fields['message'] : 'the service reported an error',
    requestId,
    retryAfter: typeof fields['retry_after'] === 'number' ? fields['retry_after'] : null,
  });
}

/** The error of a non-200 HTTP answer, from its OpenAI envelope when it has one. */
export function fromHttpAnswer(
  status: number,
  body: string,
  headers: { retryAfter?: string | undefined; requestId?: string | undefined },
): CairoCoderError {
  let detail: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(body);
    if (isRecord(parsed) && isRecord(parsed['error'])) detail = parsed['error'];
  } catch {
    // not JSON (a proxy's HTML page): the status says enough
  }
  const retryAfter = headers.retryAfter === undefined ? null : Number(headers.retryAfter);
  return new CairoCoderError({
    code: typeof detail['code'] === 'string' ? detail['code'] : `http_${status}`,
    status,
    message:
      typeof detail['message'] === 'string'
        ? detail['message']
        : `the service answered HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`,
    type: typeof detail['type'] === 'string' ? detail['type'] : undefined,
    param: typeof detail['param'] === 'string' ? detail['param'] : null,
    requestId: headers.requestId ?? null,
    retryAfter: retryAfter !== null && Number.isFinite(retryAfter) ? retryAfter : null,
  });
}

/** A Node socket error (ECONNREFUSED, ECONNRESET, ...) as a CairoCoderError; `started`: after the first event. */
export function fromNetworkError(error: unknown, url: string, started: boolean): CairoCoderError {
  if (error instanceof CairoCoderError) return error;
  const code = isRecord(error) && typeof error['code'] === 'string' ? error['code'] : '';
  const message = error instanceof Error ? error.message : String(error);
  if (started) {
    return new CairoCoderError({
      code: 'connection_lost',
      status: 502,
      type: 'api_connection_error',
      message: `the connection to ${url} was lost mid-answer: ${message}`,
      cause: error,
    });
  }
  if (code === 'ECONNREFUSED') {
    return new CairoCoderError({
      code: 'connection_refused',
      status: 503,
      type: 'api_connection_error',
      message: `cairo-coder is not reachable at ${url} (connection refused): is the service running?`,
      cause: error,
    });
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return new CairoCoderError({
      code: 'connection_reset',
      status: 503,
      type: 'api_connection_error',
      message: `the connection to ${url} closed before an answer: ${message}`,
      cause: error,
    });
  }
  return new CairoCoderError({
    code: 'connection_error',
    status: 503,
    type: 'api_connection_error',
    message: `could not reach cairo-coder at ${url}: ${message}`,
    cause: error,
  });
}

export function abortError(reason: unknown): CairoCoderError {
  if (reason instanceof CairoCoderError) return reason;
  return new CairoCoderError({
    code: 'aborted',
    status: 499,
    message: reason instanceof Error && reason.message ? `request aborted: ${reason.message}` : 'request aborted',
    cause: reason,
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
