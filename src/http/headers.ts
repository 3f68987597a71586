/**
 * What every request is checked for before its handler (or a WebSocket
 * upgrade) runs: the size of its headers, a single Authorization header,
 * and a token with the route's scope. Headers are read in one pass.
 */
import type { HttpRequest } from 'uWebSockets.js';
import { LogdError } from '../errors';
import type { Context, Scope } from './routes';

/** What the handlers need of the request headers. */
export interface Headers {
  /** bytes of all header lines, as `name: value\r\n` */
  bytes: number;
  authorizations: number;
  authorization: string;
  requestId: string;
  accept: string;
}

/** The headers, in one pass; `other` sees every header not read here. */
export function readHeaders(req: HttpRequest, other?: (name: string, value: string) => void): Headers {
  const h: Headers = { bytes: 0, authorizations: 0, authorization: '', requestId: '', accept: '' };
  req.forEach((name, value) => {
    h.bytes += name.length + value.length + 4;
    if (name === 'authorization') {
      h.authorizations++;
      h.authorization = value;
    } else if (name === 'x-request-id') {
      h.requestId = value;
    } else if (name === 'accept') {
      h.accept = value;
    } else {
      other?.(name, value);
    }
  });
  return h;
}

/** Why the request is refused before its handler runs, or undefined; `authorization` is the credential presented. */
export function refusal(ctx: Context, scope: Scope, h: Headers, authorization = h.authorization): LogdError | undefined {
  const max = ctx.cfg.server.max_header_bytes;
  if (h.bytes > max) return new LogdError('LOGD_HEADERS_TOO_LARGE', `request headers of ${h.bytes} bytes exceed server.max_header_bytes (${max})`);
  if (h.authorizations > 1) return new LogdError('LOGD_BAD_REQUEST', 'the request has more than one Authorization header');
  try {
    ctx.auth.check(scope, authorization);
  } catch (err) {
    return err as LogdError;
  }
  return undefined;
}
