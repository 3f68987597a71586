/**
 * Reading request bodies from uWebSockets.js: chunks are copied (uWS reuses
 * their memory after the callback) into a list, joined once, and reading
 * stops with 413 as soon as the limit is passed, whatever Content-Length
 * claimed. A body with a Content-Encoding (gzip, deflate, zstd) is
 * decompressed as it arrives and the limit applies to the decompressed
 * bytes, so a small bomb is refused once it has inflated past the limit,
 * never inflated whole. Every body counts against its worker's budget of
 * bytes in flight (server.max_inflight_bytes) from its first byte, or its
 * declared length, until the request is answered: parsing, encoding and
 * the Redis command each hold a copy, so concurrent large batches could
 * otherwise exhaust the worker's heap and crash it with every request on it.
 */
import { isUtf8 } from 'node:buffer';
import { createGunzip, createInflate, createInflateRaw, gunzipSync, inflateRawSync, inflateSync, type Gunzip, type Inflate, type InflateRaw } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import { LogdError } from '../errors';
import { bodyBytesInFlight } from '../metrics';
import type { HttpRequest } from 'uWebSockets.js';
import { sendError, type Exchange } from './respond';

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

/** Answers an error in the shape of the route's protocol (logd's own: sendError). */
export type Reply = (x: Exchange, err: LogdError) => void;

/** The content codings a body may have (RFC 9110 §8.4.1). */
export type Coding = 'identity' | 'gzip' | 'deflate' | 'zstd';

/**
 * The coding a Content-Encoding header names, or undefined for one logd does
 * not decode (a list of codings included: no shipper stacks them).
 */
export function codingOf(header: string): Coding | undefined {
  const c = header.trim().toLowerCase();
  if (c === '' || c === 'identity') return 'identity';
  if (c === 'gzip' || c === 'x-gzip') return 'gzip';
  if (c === 'deflate' || c === 'zstd') return c;
  return undefined;
}

/** 415 naming an encoding codingOf() refused. */
export const unsupportedEncoding = (encoding: string): LogdError =>
  new LogdError('LOGD_UNSUPPORTED_ENCODING', `content-encoding "${encoding.slice(0, 100)}" is not served: use gzip, deflate, zstd or none`);

const overloaded = (x: Exchange): LogdError =>
  new LogdError('LOGD_OVERLOADED', `this worker holds its server.max_inflight_bytes (${x.budget.max} bytes) of request bodies; retry later`);

const tooLarge = (limit: number, what: string): LogdError =>
  new LogdError('LOGD_BODY_TOO_LARGE', `${what} exceeds the limit of ${limit} bytes`);

const badEncoding = (coding: Coding, err: unknown): LogdError =>
  new LogdError('LOGD_INVALID_ENCODING', `the body is not valid ${coding}: ${(err as Error).message}`);

/** What a decoder reports: decompressed bytes, the end, or a failure (then nothing more). */
interface Sink {
  data(chunk: Buffer): boolean;
  end(): void;
  fail(err: LogdError): void;
}

interface Decoder {
  push(chunk: Buffer, last: boolean): void;
  stop(): void;
}

/** zlib's format (RFC 1950) or, as some senders use for "deflate", raw DEFLATE (RFC 1951): by the first two bytes. */
const isZlibHeader = (b: Buffer): boolean => b.length >= 2 && (b[0] & 0x0f) === 8 && ((b[0] << 8) | b[1]) % 31 === 0;

/**
 * gzip or deflate. A body that arrives in one chunk (most) is inflated at
 * once, stopping at `limit` + 1 bytes (zlib's maxOutputLength); a longer one
 * goes through a zlib stream, whose output sink.data() may refuse.
 */
function zlibDecoder(coding: 'gzip' | 'deflate', limit: number, sink: Sink): Decoder {
  let stream: Gunzip | Inflate | InflateRaw | undefined;
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    stream?.destroy();
  };
  return {
    stop,
    push(chunk, last) {
      if (stopped) return;
      if (!stream && last) {
        let out: Buffer;
        try {
          const opts = { maxOutputLength: limit + 1 };
          out = coding === 'gzip' ? gunzipSync(chunk, opts) : isZlibHeader(chunk) ? inflateSync(chunk, opts) : inflateRawSync(chunk, opts);
        } catch (err) {
          stopped = true;
          return sink.fail((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? tooLarge(limit, `the ${coding} body inflated`) : badEncoding(coding, err));
        }
        if (sink.data(out)) sink.end();
        return;
      }
      if (!stream) {
        const s = coding === 'gzip' ? createGunzip() : isZlibHeader(chunk) ? createInflate() : createInflateRaw();
        s.on('data', (out: Buffer) => {
          if (!stopped && !sink.data(out)) stop();
        });
        s.on('end', () => {
          if (!stopped) sink.end();
        });
        s.on('error', (err) => {
          if (stopped) return;
          stopped = true;
          sink.fail(badEncoding(coding, err));
        });
        stream = s;
      }
      stream.write(chunk);
      if (last) stream.end();
    },
  };
}

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames (RFC 8878 §3.1.2): magic 0x184D2A50 to 0x184D2A5F, a 4-byte length, that many bytes. */
const isSkippable = (magic: number): boolean => (magic & 0xfffffff0) >>> 0 === 0x184d2a50;

/** The length of the frame header that starts `b` (at least 5 bytes: magic and descriptor), or undefined when no frame starts there. */
function frameHeaderLength(b: Buffer): number | undefined {
  const magic = b.readUInt32LE(0);
  if (isSkippable(magic)) return 8;
  if (magic !== ZSTD_MAGIC) return undefined;
  const fhd = b[4];
  const single = (fhd >> 5) & 1;
  return 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3] + [single, 2, 4, 8][fhd >> 6];
}

/**
 * The window a zstd frame header (RFC 8878 §3.1.1.1) asks the decoder to
 * allocate. fzstd allocates it as it is declared (up to 2 GiB), so it is
 * checked first.
 */
function zstdWindow(b: Buffer): number {
  const fhd = b[4];
  if (!(fhd & 0x20)) {
    const wd = b[5];
    const base = 2 ** (10 + (wd >> 3));
    return base + (base / 8) * (wd & 7);
  }
  const at = 5 + [0, 1, 2, 4][fhd & 3];
  const fcsBytes = [1, 2, 4, 8][fhd >> 6];
  if (fcsBytes === 1) return b[at];
  if (fcsBytes === 2) return b.readUInt16LE(at) + 256;
  if (fcsBytes === 4) return b.readUInt32LE(at);
  return Number(b.readBigUInt64LE(at));
}

/**
 * Follows the frames of a zstd body (RFC 8878 §3.1) as its bytes arrive, by
 * their headers and block headers alone, so that every frame's window is
 * known before fzstd reads that frame (a body may hold many frames). Bytes
 * that are not zstd end the walk: fzstd then says what is wrong.
 */
class ZstdFrames {
  private head = Buffer.alloc(0);
  private skip = 0;
  private inFrame = false;
  private checksum = false;
  private off = false;

  constructor(private readonly maxWindow: number) {}

  /** Walks `chunk`; the window of a frame over the maximum, else undefined. */
  scan(chunk: Buffer): number | undefined {
    let at = 0;
    while (at < chunk.length && !this.off) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const want = this.inFrame ? 3 : this.head.length < 5 ? 5 : frameHeaderLength(this.head);
      if (want === undefined) {
        this.off = true;
        break;
      }
      const n = Math.min(want - this.head.length, chunk.length - at);
      this.head = Buffer.concat([this.head, chunk.subarray(at, at + n)]);
      at += n;
      if (this.head.length < want || (!this.inFrame && want === 5)) continue;
      const window = this.header();
      if (window !== undefined) return window;
      this.head = Buffer.alloc(0);
    }
    return undefined;
  }

  /** A complete frame or block header in `head`: what follows it is skipped; a window over the maximum returned. */
  private header(): number | undefined {
    const h = this.head;
    if (this.inFrame) {
      const block = h[0] | (h[1] << 8) | (h[2] << 16);
      const type = (block >> 1) & 3;
      if (type === 3) this.off = true;
      this.skip = type === 1 ? 1 : block >>> 3;
      if (block & 1) {
        this.inFrame = false;
        if (this.checksum) this.skip += 4;
      }
      return undefined;
    }
    if (isSkippable(h.readUInt32LE(0))) {
      this.skip = h.readUInt32LE(4);
      return undefined;
    }
    const window = zstdWindow(h);
    if (window > this.maxWindow) return window;
    this.inFrame = true;
    this.checksum = (h[4] & 4) !== 0;
    return undefined;
  }
}

/**
 * The largest zstd window accepted beside the body limit: RFC 8878
 * §3.1.1.1.2 recommends decoders support at least 8 MiB, and common levels
 * use 1 to 8 MiB.
 */
const ZSTD_WINDOW = 8 * 1024 * 1024;

/** zstd, with fzstd (pure JavaScript: Node 20's zlib has no zstd). */
function zstdDecoder(limit: number, sink: Sink): Decoder {
  let stopped = false;
  const maxWindow = Math.max(limit, ZSTD_WINDOW);
  const frames = new ZstdFrames(maxWindow);
  const z = new ZstdDecompress((out, final) => {
    if (stopped) return;
    if (out.length && !sink.data(Buffer.from(out.buffer, out.byteOffset, out.length))) {
      stopped = true;
      return;
    }
    if (final) sink.end();
  });
  return {
    stop: () => {
      stopped = true;
    },
    push(chunk, last) {
      if (stopped) return;
      const window = frames.scan(chunk);
      if (window !== undefined) {
        stopped = true;
        return sink.fail(new LogdError('LOGD_BODY_TOO_LARGE', `a zstd frame's window of ${window} bytes exceeds the limit of ${maxWindow} bytes`));
      }
      try {
        z.push(chunk, last);
      } catch (err) {
        if (stopped) return;
        stopped = true;
        sink.fail(badEncoding('zstd', err));
      }
    },
  };
}

/**
 * Calls `done` with the whole (decompressed) body, unless it was refused
 * (413 past `limit`, 400 when it is not valid in its coding, 503 when the
 * worker's budget is spent: answered with `reply`) or the client went away.
 * `done` must consume the buffer before it returns: it may be a view of uWS
 * memory. The caller has checked `coding` (codingOf).
 */
export function readBody(
  x: Exchange, limit: number, declaredLength: number, done: (body: Buffer) => void,
  reply: Reply = sendError, coding: Coding = 'identity',
): void {
  const refuse = (err: LogdError): void => {
    if (err.code === 'LOGD_BODY_TOO_LARGE') x.close = true; // the rest of the body is not read
    reply(x, err);
  };
  if (declaredLength > limit) return refuse(tooLarge(limit, `request body of ${declaredLength} bytes`));
  // Refused by the budget, a body is still read (and dropped) before the 503: a client (undici's fetch among them)
  // that is still sending takes an answer sent before the body's end as a broken connection, not a status to retry on.
  let refused = !x.budget.take(x, declaredLength);
  let failed = false;
  // An exception escaping a uWS callback would kill the worker and every request on it: answer 500 instead.
  const deliver = (body: Buffer): void => {
    try {
      done(body);
    } catch (err) {
      reply(x, new LogdError('LOGD_INTERNAL', undefined, { cause: err }));
    }
  };
  const chunks: Buffer[] = [];
  let size = 0;
  /** Takes decompressed bytes; false once the body is refused. */
  const take = (chunk: Buffer, copy: boolean): boolean => {
    if (failed || x.ended) return false;
    size += chunk.byteLength;
    if (size > limit) {
      failed = true;
      refuse(tooLarge(limit, coding === 'identity' ? 'request body' : `the ${coding} body inflated`));
      return false;
    }
    if (!refused && x.held < size && !x.budget.take(x, size - x.held)) {
      refused = true;
      chunks.length = 0;
    }
    if (!refused) chunks.push(copy ? Buffer.from(chunk.subarray(0)) : chunk);
    return true;
  };
  const finish = (): void => {
    if (failed || x.ended) return;
    if (refused) return reply(x, overloaded(x));
    deliver(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  };
  const decoder = coding === 'identity' ? undefined : (coding === 'zstd' ? zstdDecoder : (l: number, s: Sink) => zlibDecoder(coding, l, s))(limit, {
    data: (out) => take(out, false),
    end: finish,
    fail: (err) => {
      failed = true;
      refuse(err);
    },
  });
  let received = 0;
  x.res.onData((chunk, isLast) => {
    if (x.ended || failed) {
      decoder?.stop();
      return;
    }
    if (!decoder) {
      if (isLast && chunks.length === 0 && chunk.byteLength <= limit && !refused && x.budget.take(x, Math.max(0, chunk.byteLength - x.held))) {
        // Whole body in one chunk (the common case): use it before returning, no copy.
        deliver(Buffer.from(chunk));
        return;
      }
      if (take(Buffer.from(chunk), true) && isLast) finish();
      return;
    }
    // Compressed bytes are bounded by the limit too; the budget holds the decompressed ones.
    received += chunk.byteLength;
    if (received > limit) {
      failed = true;
      decoder.stop();
      return refuse(tooLarge(limit, 'request body'));
    }
    decoder.push(Buffer.from(chunk.slice(0)), isLast);
  });
}

/** A body as JSON: its text and value, or the 400 to answer (not UTF-8, not JSON). */
export function parseJson(body: Buffer): { text: string; value: unknown } | LogdError {
  if (!isUtf8(body)) return new LogdError('LOGD_INVALID_UTF8');
  const text = body.toString('utf8');
  try {
    return { text, value: JSON.parse(text) };
  } catch (err) {
    return new LogdError('LOGD_INVALID_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * readBody() for a request: its Content-Length and Content-Encoding (415 for
 * a coding logd does not decode). Call it synchronously in the uWS callback.
 */
export function readRequest(x: Exchange, req: HttpRequest, limit: number, done: (body: Buffer) => void, reply: Reply = sendError): void {
  const encoding = req.getHeader('content-encoding');
  const coding = codingOf(encoding);
  if (!coding) return reply(x, unsupportedEncoding(encoding));
  readBody(x, limit, Number(req.getHeader('content-length') || 0), done, reply, coding);
}
