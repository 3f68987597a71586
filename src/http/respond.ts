/** Writing responses: JSON bodies, catalogue errors, and never a write to an aborted response. */
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, LogdError, type ErrorCode } from '../errors';
import { log } from '../log';
import type { BodyBudget } from './body';

const STATUS_LINES: Record<number, string> = {
  200: '200 OK', 204: '204 No Content', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  405: '405 Method Not Allowed', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity', 426: '426 Upgrade Required', 429: '429 Too Many Requests', 431: '431 Request Header Fields Too Large', 500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

/** Status reported for a request whose client went away before the answer (nginx's convention). */
export const CLIENT_GONE = 499;

/** Per-request state the handlers share with the response writer. */
export interface Exchange {
  res: HttpResponse;
  /** the request id: the client's (or nginx's) X-Request-ID when it is a safe one (see requestId), else one made here */
  id: string;
  /** a HEAD request: the answer's headers are sent, its body is not */
  head: boolean;
  /** answered or aborted: nothing may be written any more */
  ended: boolean;
  /** close the connection after answering (draining, or a body left unread) */
  close: boolean;
  /** the worker's budget of request-body bytes, and what this request holds of it until it ends */
  budget: BodyBudget;
  held: number;
  /** runs once, when the exchange ends either way, with the status sent */
  onEnd: (status: number) => void;
}

// Request ids made here: a per-process prefix and a counter (unique, and cheaper than a UUID).
const ID_PREFIX = `${process.pid.toString(36)}-${Date.now().toString(36)}-`;
let lastId = 0;

/**
 * A client's request id is echoed in the answer and written to logs, so only a
 * short token is kept: a long one made nginx refuse the answer ("upstream sent
 * too big header") and count it against the instance.
 */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's id when it is safe to echo, else a new one. */
export const requestId = (fromClient: string): string =>
  (SAFE_REQUEST_ID.test(fromClient) ? fromClient : ID_PREFIX + (++lastId).toString(36));

/** Starts an exchange; the response must not be used after the client aborts. */
export function exchange(res: HttpResponse, id: string, head: boolean, close: boolean, budget: BodyBudget, onEnd: (status: number) => void): Exchange {
  const x: Exchange = { res, id, head, ended: false, close, budget, held: 0, onEnd };
  res.onAborted(() => {
    x.ended = true;
    onEnd(CLIENT_GONE);
  });
  return x;
}

export function send(x: Exchange, status: number, contentType: string, body: string | Uint8Array, headers?: Record<string, string>): void {
  if (x.ended) return;
  x.ended = true;
  x.onEnd(status);
  x.res.cork(() => {
    x.res.writeStatus(STATUS_LINES[status] ?? String(status));
    x.res.writeHeader('content-type', contentType);
    x.res.writeHeader('x-request-id', x.id);
    x.res.writeHeader('x-content-type-options', 'nosniff');
    if (headers) for (const [k, v] of Object.entries(headers)) x.res.writeHeader(k, v);
    if (x.head) {
      // endWithoutBody(length) of uWS 20.30 leaves the connection waiting for that many bytes (the next request on it
      // is never answered), and endWithoutBody(undefined, close) reports a bogus length: write the header, end bare.
      // A HEAD answered while draining keeps its connection until the worker exits.
      x.res.writeHeader('content-length', String(Buffer.byteLength(body)));
      x.res.endWithoutBody();
    } else {
      x.res.end(body, x.close);
    }
  });
}

export const sendJson = (x: Exchange, status: number, body: string, headers?: Record<string, string>): void =>
  send(x, status, 'application/json', body, headers);

/** `{"detail": ..., "code": ...}`: FastAPI's shape plus logd's stable code. */
export const errorBody = (code: ErrorCode, detail: unknown = ERRORS[code].message): string =>
  JSON.stringify({ detail, code });

/** Extra headers an error answer of these statuses carries, in every protocol's shape. */
export const ERROR_HEADERS: Record<number, Record<string, string>> = {
  401: { 'www-authenticate': 'Bearer realm="logd"' },
  403: { 'www-authenticate': 'Bearer realm="logd", error="insufficient_scope"' },
  503: { 'retry-after': '1' },
};

/** At most this many problems are listed in an answer (a bad 1000-log batch could name thousands). */
const MAX_LISTED = 20;

/** The first MAX_LISTED problems, and a last entry that says how many more were found (validation stops looking after its own MAX_ISSUES). */
function bounded(detail: unknown): unknown {
  if (!Array.isArray(detail) || detail.length <= MAX_LISTED) return detail;
  const more = detail.length - MAX_LISTED;
  return [...detail.slice(0, MAX_LISTED), { loc: [], msg: `${more} more problem${more > 1 ? 's' : ''} not listed`, type: 'too_many_errors' }];
}

/** Logs a server-side failure with the request id and its cause; what every error answer, in any shape, calls first. */
export function logFailure(x: Exchange, err: LogdError): void {
  // Not the cause itself: an ioredis error carries the command's arguments, the client's logs. A full backlog is
  // counted in logd_logs_refused_total instead of logged once per refused request.
  if (err.status < 500 || err.code === 'LOGD_BACKLOG_FULL') return;
  const c = (err.cause ?? err) as Error;
  log().warn({ reqId: x.id, code: err.code, err: { type: c.name, message: c.message, stack: c.stack } }, err.message);
}

/** Answers with a catalogue error in logd's shape; server-side failures are logged (logFailure). */
export function sendError(x: Exchange, err: LogdError): void {
  logFailure(x, err);
  const headers = ERROR_HEADERS[err.status];
  sendJson(x, err.status, errorBody(err.code, bounded(err.detail)), headers);
}

export const fail = (x: Exchange, code: ErrorCode, detail?: unknown): void => sendError(x, new LogdError(code, detail));
