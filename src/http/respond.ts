/** Writing responses: JSON bodies, catalogue errors, and never a write to an aborted response. */
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, LogdError, type ErrorCode } from '../errors';
import { log } from '../log';

const STATUS_LINES: Record<number, string> = {
  200: '200 OK', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  405: '405 Method Not Allowed', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

/** Status reported for a request whose client went away before the answer (nginx's convention). */
export const CLIENT_GONE = 499;

/** Per-request state the handlers share with the response writer. */
export interface Exchange {
  res: HttpResponse;
  /** the request id: the client's (or nginx's) X-Request-ID, else one made here; in logs and in the answer */
  id: string;
  /** answered or aborted: nothing may be written any more */
  ended: boolean;
  /** close the connection after answering (draining, or a body left unread) */
  close: boolean;
  /** runs once, when the exchange ends either way, with the status sent */
  onEnd: (status: number) => void;
}

// Request ids made here: a per-process prefix and a counter (unique, and cheaper than a UUID).
const ID_PREFIX = `${process.pid.toString(36)}-${Date.now().toString(36)}-`;
let lastId = 0;

/** Starts an exchange; the response must not be used after the client aborts. */
export function exchange(res: HttpResponse, requestId: string, close: boolean, onEnd: (status: number) => void): Exchange {
  const x: Exchange = { res, id: requestId || ID_PREFIX + (++lastId).toString(36), ended: false, close, onEnd };
  res.onAborted(() => {
    x.ended = true;
    onEnd(CLIENT_GONE);
  });
  return x;
}

export function send(x: Exchange, status: number, contentType: string, body: string, headers?: Record<string, string>): void {
  if (x.ended) return;
  x.ended = true;
  x.onEnd(status);
  x.res.cork(() => {
    x.res.writeStatus(STATUS_LINES[status] ?? String(status));
    x.res.writeHeader('content-type', contentType);
    x.res.writeHeader('x-request-id', x.id);
    if (headers) for (const [k, v] of Object.entries(headers)) x.res.writeHeader(k, v);
    x.res.end(body, x.close);
  });
}

export const sendJson = (x: Exchange, status: number, body: string, headers?: Record<string, string>): void =>
  send(x, status, 'application/json', body, headers);

/** `{"detail": ..., "code": ...}`: FastAPI's shape plus logd's stable code. */
export const errorBody = (code: ErrorCode, detail: unknown = ERRORS[code].message): string =>
  JSON.stringify({ detail, code });

/** Extra headers some statuses carry. */
const ERROR_HEADERS: Record<number, Record<string, string>> = {
  401: { 'www-authenticate': 'Bearer realm="logd"' },
  403: { 'www-authenticate': 'Bearer realm="logd", error="insufficient_scope"' },
  503: { 'retry-after': '1' },
};

/** Answers with a catalogue error; server-side failures are logged with the request id and cause. */
export function sendError(x: Exchange, err: LogdError): void {
  // Not the cause itself: an ioredis error carries the command's arguments, the client's logs. A full backlog is
  // counted in logd_logs_refused_total instead of logged once per refused request.
  if (err.status >= 500 && err.code !== 'LOGD_BACKLOG_FULL') {
    const c = (err.cause ?? err) as Error;
    log().warn({ reqId: x.id, code: err.code, err: { type: c.name, message: c.message, stack: c.stack } }, err.message);
  }
  const headers = ERROR_HEADERS[err.status];
  sendJson(x, err.status, errorBody(err.code, err.detail), headers);
}

export const fail = (x: Exchange, code: ErrorCode, detail?: unknown): void => sendError(x, new LogdError(code, detail));
