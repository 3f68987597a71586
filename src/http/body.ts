/**
 * Reading request bodies from uWebSockets.js: chunks are copied (uWS reuses
 * their memory after the callback) into a list, joined once, and reading
 * stops with 413 as soon as the limit is passed, whatever Content-Length
 * claimed.
 */
import { LogdError } from '../errors';
import { fail, sendError, type Exchange } from './respond';

/**
 * Calls `done` with the whole body, unless it was refused (413) or the client
 * went away. `done` must consume the buffer before it returns: it may be a
 * view of uWS memory.
 */
export function readBody(x: Exchange, limit: number, declaredLength: number, done: (body: Buffer) => void): void {
  if (declaredLength > limit) {
    x.close = true;
    fail(x, 'LOGD_BODY_TOO_LARGE', `request body of ${declaredLength} bytes exceeds the limit of ${limit} bytes`);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  // An exception escaping a uWS callback would kill the worker and every request on it: answer 500 instead.
  const deliver = (body: Buffer): void => {
    try {
      done(body);
    } catch (err) {
      sendError(x, new LogdError('LOGD_INTERNAL', undefined, { cause: err }));
    }
  };
  x.res.onData((chunk, isLast) => {
    if (x.ended) return;
    size += chunk.byteLength;
    if (size > limit) {
      x.close = true;
      fail(x, 'LOGD_BODY_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`);
      return;
    }
    if (isLast && chunks.length === 0) {
      // Whole body in one chunk (the common case): use it before returning, no copy.
      deliver(Buffer.from(chunk));
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) deliver(Buffer.concat(chunks, size));
  });
}
