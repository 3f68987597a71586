/**
 * The one catalogue of logd's errors. Every error that reaches a client or an
 * operator has a stable code, an HTTP status and a message here; the HTTP
 * layer maps `status` instead of writing numbers inline. README.md documents
 * every code (test/errors.test.ts keeps the two in step).
 */
export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

export const ERRORS = {
  LOGD_INVALID_JSON: { status: 400, message: 'request body is not valid JSON' },
  LOGD_INVALID_UTF8: { status: 400, message: 'request body is not valid UTF-8' },
  LOGD_BAD_REQUEST: { status: 400, message: 'the request is malformed' },
  LOGD_INVALID_ENCODING: { status: 400, message: 'the body is not valid in its Content-Encoding (or snappy block format)' },
  LOGD_INVALID_PROTOBUF: { status: 400, message: 'the body is not a valid protobuf message of this route' },
  LOGD_RECORDS_REJECTED: { status: 400, message: 'some records of the request were rejected (the answer names them); the others are stored' },
  LOGD_JOURNAL_INVALID: { status: 400, message: 'the body breaks the journal export format (the answer names the byte offset)' },
  LOGD_UNAUTHORIZED: { status: 401, message: 'a valid bearer token is needed' },
  LOGD_FORBIDDEN: { status: 403, message: 'the token lacks the scope this route needs' },
  LOGD_SOURCE_NOT_ALLOWED: { status: 403, message: 'the source address is not in the allow list of this listener (journal.allow)' },
  LOGD_NOT_FOUND: { status: 404, message: 'no such route' },
  LOGD_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed on this route' },
  LOGD_BODY_TOO_LARGE: { status: 413, message: 'request body exceeds the limit' },
  LOGD_URI_TOO_LONG: { status: 414, message: 'the request line is too long' },
  LOGD_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'the route does not take this content-type (the answer names the ones it takes)' },
  LOGD_UNSUPPORTED_ENCODING: { status: 415, message: 'content-encoding must be gzip, deflate, zstd or identity' },
  LOGD_VALIDATION_FAILED: { status: 422, message: 'request failed validation' },
  LOGD_UPGRADE_REQUIRED: { status: 426, message: 'this route is a WebSocket: send the request with Upgrade: websocket' },
  LOGD_HEADERS_TOO_LARGE: { status: 431, message: 'request headers are too large or too many' },
  LOGD_INTERNAL: { status: 500, message: 'internal error' },
  LOGD_NOT_IMPLEMENTED: { status: 501, message: 'the request uses a transfer encoding that is not served' },
  LOGD_HTTP_VERSION_NOT_SUPPORTED: { status: 505, message: 'only HTTP/1.0 and HTTP/1.1 are served' },
  LOGD_QUEUE_UNAVAILABLE: { status: 503, message: 'the queue (Redis) is unavailable; retry later' },
  LOGD_BACKLOG_FULL: { status: 503, message: 'the unpersisted backlog is over its limit; retry later' },
  LOGD_DATABASE_UNAVAILABLE: { status: 503, message: 'the database (PostgreSQL) is unavailable; retry later' },
  LOGD_OVERLOADED: { status: 503, message: 'this worker holds server.max_inflight_bytes of request bodies; retry later' },
  LOGD_BUSY: { status: 503, message: 'every database connection for this kind of read is in use; retry later' },
  LOGD_TAIL_FULL: { status: 503, message: 'this worker serves its share of tail.max_subscribers live tails; retry later' },
  LOGD_QUERY_TIMEOUT: { status: 503, message: 'the query ran longer than postgres.statement_timeout_ms; narrow it (device_id, since, until)' },
  // Answered by nginx (conf/nginx.conf), in front of logd.
  LOGD_RATE_LIMITED: { status: 429, message: 'rate limit exceeded; retry after Retry-After seconds' },
  LOGD_PROXY_ERROR: { status: 500, message: 'the proxy failed' },
  LOGD_UPSTREAM_UNAVAILABLE: { status: 502, message: 'no logd instance answered; retry later' },
  LOGD_CONFIG_INVALID: { status: 0, message: 'configuration is invalid' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error with a catalogue code; `detail` is what the client sees in `detail`. */
export class LogdError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;

  constructor(code: ErrorCode, detail?: unknown, options?: { cause?: unknown }) {
    super(typeof detail === 'string' ? detail : ERRORS[code].message, options);
    this.name = 'LogdError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.detail = detail ?? ERRORS[code].message;
  }
}
