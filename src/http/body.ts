/**
 * Reading request bodies from uWebSockets.js: chunks are copied (uWS reuses
 * their memory after the callback) into a list, joined once, and reading
 * stops with 413 as soon as the limit is passed, whatever Content-Length
 * claimed. Every body counts against its worker's budget of bytes in flight
 * (server.max_inflight_bytes) from its first byte, or its declared length,
 * until the request is answered: parsing, encoding and the Redis command
 * each hold a copy, so concurrent large batches could otherwise exhaust the
 * worker's heap and crash it with every request on it.
 */
import { LogdError } from '../errors';
import { bodyBytesInFlight } from '../metrics';
import { fail, sendError, type Exchange } from './respond';

/** One worker's request-body bytes in flight. */
export class BodyBudget {
  private used = 0;

  constructor(readonly max: number) {}

  /** Adds `bytes` to what `x` holds; false (and nothing taken) when that would pass the budget. */
  take(x: Exchange, bytes: number): boolean {
    if (this.used + bytes > this.max) return false;
    this.used += bytes;
    x.held += bytes;
    bodyBytesInFlight.set(this.used);
    return true;
  }

  /** Gives back everything `x` holds (when its answer is sent or the client has gone). */
  release(x: Exchange): void {
    this.used -= x.held;
    x.held = 0;
    bodyBytesInFlight.set(this.used);
  }
}

const overloaded = (x: Exchange): void =>
  fail(x, 'LOGD_OVERLOADED', `this worker holds its server.max_inflight_bytes (${x.budget.max} bytes) of request bodies; retry later`);

const tooLarge = (x: Exchange, limit: number, declared?: number): void => {
  x.close = true; // the rest of the body is not read
  fail(x, 'LOGD_BODY_TOO_LARGE', `request body${declared === undefined ? '' : ` of ${declared} bytes`} exceeds the limit of ${limit} bytes`);
};

/**
 * Calls `done` with the whole body, unless it was refused (413, or 503 when
 * the worker's budget is spent) or the client went away. `done` must consume
 * the buffer before it returns: it may be a view of uWS memory.
 */
export function readBody(x: Exchange, limit: number, declaredLength: number, done: (body: Buffer) => void): void {
  if (declaredLength > limit) return tooLarge(x, limit, declaredLength);
  // Refused by the budget, a body is still read (and dropped) before the 503: a client (undici's fetch among them)
  // that is still sending takes an answer sent before the body's end as a broken connection, not a status to retry on.
  let refused = !x.budget.take(x, declaredLength);
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
    if (size > limit) return tooLarge(x, limit);
    // A body longer than it declared (or chunked) takes the rest as it comes.
    if (!refused && size > x.held && !x.budget.take(x, size - x.held)) {
      refused = true;
      chunks.length = 0;
    }
    if (refused) {
      if (isLast) overloaded(x);
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
