/** Writing responses: JSON bodies, catalogue errors, and never a write to an aborted response. */
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, LogdError, type ErrorCode } from '../errors';

const STATUS_LINES: Record<number, string> = {
  200: '200 OK', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  405: '405 Method Not Allowed', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

/** Per-request state the handlers share with the response writer. */
export interface Exchange {
  res: HttpResponse;
  /** answered or aborted: nothing may be written any more */
  ended: boolean;
  /** close the connection after answering (draining, or a body left unread) */
  close: boolean;
  /** runs once, when the exchange ends either way */
  onEnd: () => void;
}

/** Starts an exchange; the response must not be used after the client aborts. */
export function exchange(res: HttpResponse, close: boolean, onEnd: () => void): Exchange {
  const x: Exchange = { res, ended: false, close, onEnd };
  res.onAborted(() => {
    x.ended = true;
    onEnd();
  });
  return x;
}

export function sendJson(x: Exchange, status: number, body: string, headers?: Record<string, string>): void {
  if (x.ended) return;
  x.ended = true;
  x.onEnd();
  x.res.cork(() => {
    x.res.writeStatus(STATUS_LINES[status] ?? String(status));
    x.res.writeHeader('content-type', 'application/json');
    if (headers) for (const [k, v] of Object.entries(headers)) x.res.writeHeader(k, v);
    x.res.end(body, x.close);
  });
}

/** `{"detail": ..., "code": ...}`: FastAPI's shape plus logd's stable code. */
export const errorBody = (code: ErrorCode, detail: unknown = ERRORS[code].message): string =>
  JSON.stringify({ detail, code });

/** Extra headers some statuses carry. */
const ERROR_HEADERS: Record<number, Record<string, string>> = {
  401: { 'www-authenticate': 'Bearer realm="logd"' },
  403: { 'www-authenticate': 'Bearer realm="logd", error="insufficient_scope"' },
  503: { 'retry-after': '1' },
};

export function sendError(x: Exchange, err: LogdError): void {
  const headers = ERROR_HEADERS[err.status];
  sendJson(x, err.status, errorBody(err.code, err.detail), headers);
}

export const fail = (x: Exchange, code: ErrorCode, detail?: unknown): void => sendError(x, new LogdError(code, detail));
