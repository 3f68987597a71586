/**
 * Helpers of the fuzz suite (test/fuzz.test.ts): a seeded generator of
 * malformed, adversarial and valid ingest requests, each with what it may
 * legitimately be answered, an HTTP sender with a hard deadline, and raw
 * socket tools for slow senders and connection floods.
 *
 * Every log a case carries, valid or not, has a unique message starting with
 * the run's prefix: PostgreSQL must end up holding exactly the messages of
 * the requests that were answered 200.
 */
import * as http from 'node:http';
import * as net from 'node:net';

export type Rnd = () => number;

export interface Case {
  /** generator that made it, for the statistics and failure messages */
  kind: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** send without Content-Length (chunked), in a few pieces */
  chunked?: boolean;
  /**
   * statuses it may get. 200 only for unambiguously valid requests;
   * 'either' cases (ambiguous inputs) may get 200 or a JSON 4xx.
   */
  expect: number[];
  /** the code the error must carry, when the generator knows it exactly */
  code?: string;
  /** the server may refuse without reading the body (413/415 + close): a reset connection is then allowed */
  mayReset?: boolean;
  /** logs the request carries that must be stored if (and only if) it gets a 200 */
  logs: ExpectedLog[];
}

export interface ExpectedLog {
  device_id: string;
  log_level: string;
  message: string;
  log_data: unknown;
}

export interface Outcome {
  /** 'response' when an HTTP answer arrived */
  kind: 'response' | 'error' | 'deadline';
  status?: number;
  headers?: http.IncomingHttpHeaders;
  body?: Buffer;
  error?: string;
  ms: number;
}

// ---------------------------------------------------------------------------
// small random helpers

export const int = (rnd: Rnd, lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
export const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const chance = (rnd: Rnd, p: number): boolean => rnd() < p;

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] as const;

/** Characters a stored string may hold: no U+0000, no lone surrogates. */
function randomChar(rnd: Rnd): string {
  const r = rnd();
  if (r < 0.55) return String.fromCharCode(int(rnd, 0x20, 0x7e));
  if (r < 0.62) return pick(rnd, ['\t', '\n', '\r', '\\', '"', '\\N', '\\.', '/', '\u2028', '\u2029']);
  if (r < 0.67) return String.fromCharCode(int(rnd, 1, 0x1f)); // control chars (JSON-escaped)
  if (r < 0.82) return String.fromCharCode(int(rnd, 0xa0, 0xd7ff)); // BMP below the surrogates
  if (r < 0.9) return String.fromCharCode(int(rnd, 0xe000, 0xfffd));
  return String.fromCodePoint(int(rnd, 0x10000, 0x10ffff)); // astral: a proper surrogate pair
}

/** A string of exactly `len` code points (`bmp`: none outside the Basic Multilingual Plane). */
export function randomText(rnd: Rnd, len: number, bmp = false): string {
  const out: string[] = [];
  while (out.length < len) {
    const piece = randomChar(rnd);
    if (bmp && piece.length > 1 && piece.codePointAt(0)! > 0xffff) continue;
    out.push(...piece); // '\\N' is two code points
  }
  return out.slice(0, len).join('');
}

const codePoints = (s: string): number => [...s].length;

function randomJson(rnd: Rnd, depth: number): unknown {
  const r = rnd();
  if (depth <= 1 || r < 0.5) {
    return pick(rnd, [
      () => randomText(rnd, int(rnd, 0, 20)),
      () => int(rnd, -1e9, 1e9),
      () => (rnd() - 0.5) * 10 ** int(rnd, -30, 300),
      () => pick(rnd, [0, -1, 1, 2 ** 53 - 1, -(2 ** 53), 1e308, 5e-324, 0.1]),
      () => chance(rnd, 0.5),
      () => null,
    ])();
  }
  if (r < 0.7) return Array.from({ length: int(rnd, 0, 4) }, () => randomJson(rnd, depth - 1));
  return randomObject(rnd, depth - 1);
}

function randomObject(rnd: Rnd, depth: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const n = int(rnd, 0, 5);
  for (let i = 0; i < n; i++) o[randomText(rnd, int(rnd, 0, 12))] = randomJson(rnd, depth);
  return o;
}

/** log_data with `levels` nested containers, itself the outermost (level 1); the inner ones objects or arrays. */
function nested(levels: number, leaf: unknown = 1, arrays = false): Record<string, unknown> {
  let v: unknown = leaf;
  for (let i = 1; i < levels; i++) v = arrays ? [v] : { k: v };
  return { k: v };
}

// ---------------------------------------------------------------------------
// the generator

/** Every kind of case the generator makes (a case over its route's body limit is `<kind>+oversized`). */
export const KINDS = [
  'valid', 'valid-batch', 'valid-edge', 'ambiguous-duplicate-key', 'ambiguous-proto', 'random-bytes', 'random-json',
  'truncated-json', 'wrong-type', 'missing-field', 'empty-string', 'too-long', 'too-deep', 'very-deep', 'nul-escape',
  'nul-raw', 'lone-surrogate', 'invalid-utf8', 'unknown-field', 'batch-shape', 'batch-1001', 'batch-one-bad', 'oversized',
  'content-type', 'wrong-method', 'unknown-path', 'out-of-window',
] as const;
export type Kind = (typeof KINDS)[number];

export interface FuzzLimits {
  single: number;
  batch: number;
}

const DAY_MS = 86_400_000;

/** The accepted window the fuzzed logd runs with (test/fuzz.test.ts): retention.days and ingest.max_future_s. */
export const FUZZ_WINDOW = { days: 30, futureS: 3600 };

export class Generator {
  private n = 0;

  /** `now`: the clock the accepted window is relative to (timestamps are drawn well inside or outside it) */
  constructor(
    private readonly rnd: Rnd,
    private readonly prefix: string,
    private readonly limits: FuzzLimits,
    private readonly now: number,
  ) {}

  /** A unique message with `extra` random code points after the prefix (5000 code points at most). */
  message(extra = int(this.rnd, 1, 60), bmp = false): string {
    const head = `${this.prefix}-${this.n++}-`;
    return head + randomText(this.rnd, Math.max(0, Math.min(extra, 5000 - codePoints(head))), bmp);
  }

  /** A valid entry (and the row it must become). */
  entry(opts: { message?: string; data?: boolean } = {}): { entry: Record<string, unknown>; log: ExpectedLog } {
    const rnd = this.rnd;
    const device = chance(rnd, 0.7) ? `dev-${int(rnd, 0, 99)}` : chance(rnd, 0.5) ? randomText(rnd, int(rnd, 1, 25)) : randomText(rnd, int(rnd, 1, 50), true);
    const entry: Record<string, unknown> = {
      device_id: device,
      log_level: pick(rnd, LEVELS),
      message: opts.message ?? this.message(),
    };
    if (opts.data ?? chance(rnd, 0.6)) entry.log_data = chance(rnd, 0.1) ? nested(int(rnd, 1, 20), 'x', chance(rnd, 0.5)) : randomObject(rnd, int(rnd, 1, 6));
    if (chance(rnd, 0.3)) {
      // a day's margin at each end of the window (an offset moves the time by up to 2 h)
      const at = int(rnd, this.now - (FUZZ_WINDOW.days - 1) * DAY_MS, this.now + FUZZ_WINDOW.futureS * 1000 / 2);
      entry.timestamp = chance(rnd, 0.5)
        ? at
        : new Date(at).toISOString().replace(/\.\d+Z$/, pick(rnd, ['Z', '.5Z', '.123456Z', '+02:00', '']));
    }
    // log_data as PostgreSQL will hand it back: JSON round trip (-0 becomes 0, etc.)
    const log: ExpectedLog = {
      device_id: device,
      log_level: entry.log_level as string,
      message: entry.message as string,
      log_data: entry.log_data === undefined ? {} : JSON.parse(JSON.stringify(entry.log_data)),
    };
    return { entry, log };
  }

  private post(kind: Kind, path: string, body: Buffer | string, expect: number[], extra: Partial<Case> = {}): Case {
    const c: Case = {
      kind,
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json' },
      body: Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'),
      expect,
      logs: [],
      ...extra,
    };
    // Whatever else is wrong with it, a body over the route's limit is refused for its size first.
    const limit = path === '/api/log' ? this.limits.single : path === '/api/logs/batch' ? this.limits.batch : Infinity;
    if (c.body.length > limit && !c.expect.includes(413)) {
      Object.assign(c, { kind: `${kind}+oversized`, expect: [413], code: 'LOGD_BODY_TOO_LARGE', mayReset: true, logs: [] });
    }
    return c;
  }

  /** An invalid single entry: a valid one with `mutate` applied; its message still unique. */
  private mutated(kind: Kind, mutate: (e: Record<string, unknown>) => void, code = 'LOGD_VALIDATION_FAILED'): Case {
    const { entry } = this.entry();
    mutate(entry);
    const single = chance(this.rnd, 0.7);
    const body = single ? JSON.stringify(entry) : JSON.stringify({ logs: [this.entry().entry, entry, this.entry().entry] });
    return this.post(kind, single ? '/api/log' : '/api/logs/batch', body, [422], { code });
  }

  /** A body text with `insert` spliced into the message string (raw JSON text). */
  private withRawInMessage(kind: Kind, insert: string, expect: number[], code?: string): Case {
    const marker = '\u0001MARK\u0001';
    const { entry } = this.entry({ message: `${this.message(10)}${marker}` });
    const text = JSON.stringify(entry).replace(JSON.stringify(marker).slice(1, -1), insert);
    return this.post(kind, '/api/log', text, expect, { code });
  }

  valid(): Case {
    const rnd = this.rnd;
    const { entry, log } = this.entry();
    const c = this.post('valid', '/api/log', JSON.stringify(entry), [200], { logs: [log] });
    if (chance(rnd, 0.15)) c.headers['content-type'] = pick(rnd, ['application/json; charset=utf-8', 'Application/JSON', 'application/json;charset=UTF-8']);
    if (chance(rnd, 0.15)) c.chunked = true;
    return c;
  }

  validBatch(): Case {
    const n = chance(this.rnd, 0.9) ? int(this.rnd, 1, 30) : int(this.rnd, 100, 300);
    const made = Array.from({ length: n }, () => this.entry({ data: chance(this.rnd, 0.3) }));
    const body = JSON.stringify({ logs: made.map((m) => m.entry) });
    return this.post('valid-batch', '/api/logs/batch', body, [200], { logs: made.map((m) => m.log), chunked: chance(this.rnd, 0.2) });
  }

  /**
   * Edge values that are valid by the contract: 50-character device, 5000-character message (BMP only,
   * so characters = code points = UTF-16 units), log_data 30 levels deep (the limit is 32: how levels
   * are counted is not pinned down closer than that).
   */
  validEdges(): Case {
    const rnd = this.rnd;
    const variant = int(rnd, 0, 3);
    const { entry, log } = this.entry();
    if (variant === 0) entry.device_id = log.device_id = chance(rnd, 0.5) ? 'd'.repeat(50) : randomText(rnd, 50, true);
    if (variant === 1) entry.message = log.message = this.message(5000, true); // exactly 5000 code points
    if (variant === 2) { entry.log_data = nested(30, 'leaf', chance(rnd, 0.5)); log.log_data = entry.log_data; }
    if (variant === 3) {
      entry.log_data = {};
      log.log_data = {};
      // ten minutes inside each end of the window
      entry.timestamp = pick(rnd, [this.now - FUZZ_WINDOW.days * DAY_MS + 600_000, new Date(this.now + FUZZ_WINDOW.futureS * 1000 - 600_000).toISOString()]);
    }
    return this.post('valid-edge', '/api/log', JSON.stringify(entry), [200], { logs: [log] });
  }

  /** Inputs whose fate is not pinned by the contract: duplicate keys, __proto__ keys in log_data. */
  ambiguous(): Case {
    const rnd = this.rnd;
    const { entry, log } = this.entry({ data: false });
    if (chance(rnd, 0.5)) {
      // duplicate key: JSON.parse keeps the last one
      const text = JSON.stringify(entry).replace(/^\{/, `{"log_level":"${pick(rnd, ['LOUD', 'INFO', 7])}",`);
      return this.post('ambiguous-duplicate-key', '/api/log', text, [200, 422], { logs: [log] });
    }
    const text = JSON.stringify({ ...entry, log_data: { x: 1 } }).replace('"x":1', '"__proto__":{"polluted":true},"constructor":{"prototype":{"p":1}}');
    return this.post('ambiguous-proto', '/api/log', text, [200, 422], { logs: [{ ...log, log_data: JSON.parse(text).log_data }] });
  }

  randomBytes(): Case {
    const rnd = this.rnd;
    const len = chance(rnd, 0.05) ? 0 : int(rnd, 1, 2000);
    const buf = Buffer.alloc(len);
    for (let i = 0; i < len; i++) buf[i] = int(rnd, 0, 255);
    return this.post('random-bytes', pick(rnd, ['/api/log', '/api/logs/batch']), buf, [400, 422]);
  }

  randomJsonValue(): Case {
    const body = JSON.stringify(randomJson(this.rnd, 4)) ?? 'null';
    return this.post('random-json', pick(this.rnd, ['/api/log', '/api/logs/batch']), body, [422], { code: 'LOGD_VALIDATION_FAILED' });
  }

  truncated(): Case {
    const rnd = this.rnd;
    const single = chance(rnd, 0.6);
    const text = single ? JSON.stringify(this.entry().entry) : JSON.stringify({ logs: [this.entry().entry, this.entry().entry] });
    const buf = Buffer.from(text, 'utf8');
    // cut on a byte boundary: may also split a UTF-8 sequence (then 400 INVALID_UTF8)
    const cut = buf.subarray(0, int(rnd, 0, buf.length - 1));
    return this.post('truncated-json', single ? '/api/log' : '/api/logs/batch', cut, [400]);
  }

  /** Real date-times outside the accepted window: the year 1 and 9999, just past each end, epoch 0. */
  outOfWindow(): Case {
    const value = pick(this.rnd, [0, 253402300799999, '9999-12-31T23:59:59Z', '0001-01-01T00:00:00Z',
      this.now - (FUZZ_WINDOW.days + 1) * DAY_MS, new Date(this.now + 2 * FUZZ_WINDOW.futureS * 1000).toISOString()]);
    return this.mutated('out-of-window', (e) => { e.timestamp = value; });
  }

  wrongType(): Case {
    const rnd = this.rnd;
    const field = pick(rnd, ['device_id', 'log_level', 'message', 'log_data', 'timestamp']);
    const bad: Record<string, unknown[]> = {
      device_id: [1, -1.5, null, true, [], {}, ['a'], { a: 1 }],
      log_level: [0, 4, null, false, ['INFO'], { INFO: 1 }, 'info', 'Info', 'TRACE', 'FATAL', '', 'INFO ', ' INFO', 'WARN'],
      message: [0, 1e400, null, true, [], {}, ['m'], { m: 1 }],
      log_data: [null, 'x', 1, true, [], [1, 2], ''],
      // not: date-only, basic format, 24:00, negative or fractional epochs, year 10000 (debatable, not pinned by the contract)
      timestamp: [null, true, [], {}, 1e20, '', 'yesterday', 'now', '2024-02-30T00:00:00Z',
        '2023-02-29T00:00:00Z', '2024-13-01T00:00:00Z', '2024-01-01T00:60:00Z', '0000-01-01T00:00:00Z',
        '2024-01-01T00:00:00+99:00', '2024-01-01T00:00:00Zjunk', 'x'.repeat(41)],
    };
    const value = pick(rnd, bad[field]);
    // 1e400 is Infinity in JS: write it as raw JSON text instead
    if (value === Infinity) {
      const { entry } = this.entry();
      const text = JSON.stringify({ ...entry, [field]: '__INF__' }).replace('"__INF__"', '1e400');
      return this.post('wrong-type', '/api/log', text, [422], { code: 'LOGD_VALIDATION_FAILED' });
    }
    return this.mutated('wrong-type', (e) => { e[field] = value; });
  }

  missing(): Case {
    const field = pick(this.rnd, ['device_id', 'log_level', 'message']);
    return this.mutated('missing-field', (e) => { delete e[field]; });
  }

  emptyOrLong(): Case {
    const rnd = this.rnd;
    return pick(rnd, [
      () => this.mutated('empty-string', (e) => { e.device_id = ''; }),
      () => this.mutated('empty-string', (e) => { e.message = ''; }),
      () => this.mutated('too-long', (e) => { e.device_id = 'd'.repeat(int(rnd, 51, 300)); }),
      () => this.mutated('too-long', (e) => { e.message = this.message(5000) + 'x'.repeat(int(rnd, 1, 3000)); }),
      () => this.mutated('too-long', (e) => { e.device_id = '\u00e9'.repeat(51); }),
    ])();
  }

  deep(): Case {
    const rnd = this.rnd;
    const v = int(rnd, 0, 3);
    if (v === 0) return this.mutated('too-deep', (e) => { e.log_data = nested(int(rnd, 40, 400)); });
    if (v === 1) return this.mutated('too-deep', (e) => { e.log_data = nested(int(rnd, 40, 400), 'x', true); });
    // very deep raw text: arrays as the message or inside log_data, kept under the single-body limit
    const depth = int(rnd, 1000, Math.floor((this.limits.single - 400) / 2));
    const { entry } = this.entry({ data: false });
    const where = v === 2 ? 'message' : 'log_data';
    const deepText = v === 2 ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const text = JSON.stringify({ ...entry, [where]: '__DEEP__' }).replace('"__DEEP__"', deepText);
    return this.post('very-deep', '/api/log', text, [422], { code: 'LOGD_VALIDATION_FAILED' });
  }

  nul(): Case {
    const rnd = this.rnd;
    const where = int(rnd, 0, 4);
    if (where === 0) return this.withRawInMessage('nul-escape', '\\u0000', [422], 'LOGD_VALIDATION_FAILED');
    if (where === 1) return this.mutated('nul-escape', (e) => { e.device_id = `a\u0000b`; });
    if (where === 2) return this.mutated('nul-escape', (e) => { e.log_data = { ['k\u0000']: 1 }; });
    if (where === 3) return this.mutated('nul-escape', (e) => { e.log_data = { deep: [{ v: `x${'\u0000'}` }] }; });
    // a raw NUL byte inside a JSON string is a control character: invalid JSON
    return this.withRawInMessage('nul-raw', '\u0000', [400], 'LOGD_INVALID_JSON');
  }

  surrogate(): Case {
    const rnd = this.rnd;
    const lone = pick(rnd, ['\\ud800', '\\udfff', '\\udc00\\ud800', '\\ud83d', '\\ud83dx', 'x\\ude00']);
    if (chance(rnd, 0.6)) return this.withRawInMessage('lone-surrogate', lone, [422], 'LOGD_VALIDATION_FAILED');
    const { entry } = this.entry({ data: false });
    const text = JSON.stringify({ ...entry, log_data: { [pick(rnd, ['k', '__LONE__'])]: '__LONE__' } }).replaceAll('__LONE__', lone);
    return this.post('lone-surrogate', '/api/log', text, [422], { code: 'LOGD_VALIDATION_FAILED' });
  }

  badUtf8(): Case {
    const rnd = this.rnd;
    const seqs = [[0xff], [0xfe], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80],
      [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3], [0xe2, 0x82], [0x80], [0xf0, 0x9f, 0x98]];
    const { entry } = this.entry({ data: false, message: `${this.message(10)}@@` });
    const text = Buffer.from(JSON.stringify(entry), 'utf8');
    const at = text.indexOf('@@');
    const body = Buffer.concat([text.subarray(0, at), Buffer.from(pick(rnd, seqs)), text.subarray(at + 2)]);
    return this.post('invalid-utf8', '/api/log', body, [400], { code: 'LOGD_INVALID_UTF8' });
  }

  unknownField(): Case {
    const rnd = this.rnd;
    const name = pick(rnd, ['id', 'created_at', 'indexed_at', 'level', 'extra', 'constructor', 'Message', 'device', 'logData', randomText(rnd, int(rnd, 1, 10))]);
    if (['device_id', 'log_level', 'message', 'log_data', 'timestamp'].includes(name)) return this.missing();
    const v = int(rnd, 0, 2);
    if (v === 0) return this.mutated('unknown-field', (e) => { e[name] = pick(rnd, [1, 'x', null, {}]); });
    if (v === 1) {
      // an unknown field next to "logs"
      const text = JSON.stringify({ logs: [this.entry().entry], [name === 'logs' ? 'x' : name]: 1 });
      return this.post('unknown-field', '/api/logs/batch', text, [422], { code: 'LOGD_VALIDATION_FAILED' });
    }
    // __proto__ as a top-level key (JSON.parse makes it an own property)
    const text = JSON.stringify(this.entry().entry).replace(/^\{/, '{"__proto__":{"device_id":"x"},');
    return this.post('unknown-field', '/api/log', text, [422], { code: 'LOGD_VALIDATION_FAILED' });
  }

  batchShape(): Case {
    const rnd = this.rnd;
    const v = int(rnd, 0, 6);
    const path = '/api/logs/batch';
    if (v === 0) return this.post('batch-shape', path, '{"logs":[]}', [422], { code: 'LOGD_VALIDATION_FAILED' });
    if (v === 1) return this.post('batch-shape', path, JSON.stringify({ logs: pick(rnd, [null, {}, 'x', 1, true]) }), [422], { code: 'LOGD_VALIDATION_FAILED' });
    if (v === 2) return this.post('batch-shape', path, JSON.stringify([this.entry().entry]), [422], { code: 'LOGD_VALIDATION_FAILED' });
    if (v === 3) return this.post('batch-shape', path, JSON.stringify(this.entry().entry), [422], { code: 'LOGD_VALIDATION_FAILED' });
    if (v === 4) {
      // 1001 minimal entries (about 60 KB, under the batch limit)
      const logs = Array.from({ length: 1001 }, () => ({ device_id: 'd', log_level: 'INFO', message: `${this.prefix}-${this.n++}` }));
      return this.post('batch-1001', path, JSON.stringify({ logs }), [422], { code: 'LOGD_VALIDATION_FAILED' });
    }
    if (v === 5) return this.post('batch-shape', '/api/log', JSON.stringify({ logs: [this.entry().entry] }), [422], { code: 'LOGD_VALIDATION_FAILED' });
    // one bad entry refuses the whole batch: none of its good logs may be stored
    const logs = Array.from({ length: int(rnd, 2, 20) }, () => this.entry().entry);
    logs[int(rnd, 0, logs.length - 1)].log_level = 'LOUD';
    return this.post('batch-one-bad', path, JSON.stringify({ logs }), [422], { code: 'LOGD_VALIDATION_FAILED' });
  }

  oversized(): Case {
    const rnd = this.rnd;
    const batch = chance(rnd, 0.5);
    const limit = batch ? this.limits.batch : this.limits.single;
    const size = limit + int(rnd, 1, chance(rnd, 0.5) ? 1000 : limit * 3);
    // valid JSON of that size, so only the size is wrong
    const { entry } = this.entry({ data: false });
    const pad = 'p'.repeat(size);
    const obj = batch ? { logs: [{ ...entry, log_data: { pad } }] } : { ...entry, log_data: { pad } };
    const body = Buffer.from(JSON.stringify(obj), 'utf8').subarray(0, size);
    return this.post('oversized', batch ? '/api/logs/batch' : '/api/log', body, [413], { code: 'LOGD_BODY_TOO_LARGE', mayReset: true, chunked: chance(rnd, 0.4) });
  }

  wrongContentType(): Case {
    const rnd = this.rnd;
    const { entry } = this.entry();
    const c = this.post('content-type', pick(rnd, ['/api/log', '/api/logs/batch']), JSON.stringify(entry), [415], { code: 'LOGD_UNSUPPORTED_MEDIA_TYPE' });
    const ct = pick(rnd, ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '', 'application/jsonp',
      'application/json-patch+json', 'application/xml', 'json', 'text/json', 'application/ json', '*/*', 'application/javascript']);
    if (ct === '') delete c.headers['content-type'];
    else c.headers['content-type'] = ct;
    return c;
  }

  wrongRoute(): Case {
    const rnd = this.rnd;
    const { entry } = this.entry();
    const body = JSON.stringify(entry);
    if (chance(rnd, 0.5)) {
      const method = pick(rnd, ['PUT', 'DELETE', 'PATCH']);
      const c = this.post('wrong-method', pick(rnd, ['/api/log', '/api/logs/batch']), body, [405], { code: 'LOGD_METHOD_NOT_ALLOWED' });
      c.method = method;
      return c;
    }
    if (chance(rnd, 0.3)) {
      const c = this.post('wrong-method', pick(rnd, ['/api/log', '/api/logs/batch']), '', [405], { code: 'LOGD_METHOD_NOT_ALLOWED' });
      c.method = 'GET';
      delete c.headers['content-type'];
      return c;
    }
    return this.post('unknown-path', pick(rnd, ['/nope', '/api/nope', '/api/log/extra', '/api', '/x/y/z', '/%00', '/api/log%2F', '/api/logs/batch/x/y']),
      body, [404], { code: 'LOGD_NOT_FOUND' });
  }

  /**
   * One case, by weight. `skip` (debugging aid, from LOGD_FUZZ_SKIP): kinds
   * matching it are generated and thrown away, so the sequence stays that of
   * the seed.
   */
  next(skip?: RegExp): Case {
    for (;;) {
      const c = this.draw();
      if (!skip || !skip.test(c.kind)) return c;
    }
  }

  private draw(): Case {
    const gens: [number, () => Case][] = [
      [14, () => this.valid()],
      [4, () => this.validBatch()],
      [2, () => this.validEdges()],
      [1, () => this.ambiguous()],
      [8, () => this.randomBytes()],
      [3, () => this.randomJsonValue()],
      [8, () => this.truncated()],
      [10, () => this.wrongType()],
      [2, () => this.outOfWindow()],
      [3, () => this.missing()],
      [4, () => this.emptyOrLong()],
      [4, () => this.deep()],
      [6, () => this.nul()],
      [6, () => this.surrogate()],
      [6, () => this.badUtf8()],
      [5, () => this.unknownField()],
      [4, () => this.batchShape()],
      [3, () => this.oversized()],
      [5, () => this.wrongContentType()],
      [4, () => this.wrongRoute()],
    ];
    const total = gens.reduce((s, [w]) => s + w, 0);
    let r = this.rnd() * total;
    for (const [w, g] of gens) {
      if ((r -= w) < 0) return g();
    }
    return gens[0][1]();
  }
}

// ---------------------------------------------------------------------------
// sending

/** Sends one case; never rejects; gives up (destroying the socket) at the deadline. */
export function send(agent: http.Agent, port: number, c: Case, deadlineMs: number): Promise<Outcome> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Omit<Outcome, 'ms'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...o, ms: Date.now() - t0 });
    };
    const headers: Record<string, string> = { ...c.headers };
    if (!c.chunked) headers['content-length'] = String(c.body.length);
    const req = http.request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => done({ kind: 'response', status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (err) => done({ kind: 'error', error: (err as NodeJS.ErrnoException).code ?? err.message }));
    });
    const timer = setTimeout(() => {
      done({ kind: 'deadline', error: `no answer within ${deadlineMs} ms` });
      req.destroy();
    }, deadlineMs);
    req.on('error', (err) => done({ kind: 'error', error: (err as NodeJS.ErrnoException).code ?? err.message }));
    if (c.chunked && c.body.length > 0) {
      const a = Math.floor(c.body.length / 3);
      req.write(c.body.subarray(0, a));
      req.write(c.body.subarray(a, 2 * a));
      req.end(c.body.subarray(2 * a));
    } else {
      req.end(c.body);
    }
  });
}

export interface ErrorCheck {
  ok: boolean;
  why?: string;
  code?: string;
}

/** A well-formed error answer: JSON content type, `{"detail": ..., "code": "LOGD_..."}`, 422 detail shaped like FastAPI's. */
export function checkErrorAnswer(o: Outcome): ErrorCheck {
  const ct = String(o.headers?.['content-type'] ?? '');
  if (!/^application\/json\b/i.test(ct)) return { ok: false, why: `content-type ${JSON.stringify(ct)}` };
  let body: any;
  try {
    body = JSON.parse(o.body!.toString('utf8'));
  } catch {
    return { ok: false, why: `body is not JSON: ${o.body!.toString('utf8').slice(0, 200)}` };
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) return { ok: false, why: 'body is not an object' };
  if (typeof body.code !== 'string' || !/^LOGD_[A-Z0-9_]+$/.test(body.code)) return { ok: false, why: `code ${JSON.stringify(body.code)}` };
  if (body.detail === undefined || body.detail === null || body.detail === '') return { ok: false, why: 'no detail', code: body.code };
  if (o.status === 422) {
    const d = body.detail;
    const shaped = Array.isArray(d) && d.length > 0 && d.every((i: any) => i && Array.isArray(i.loc) && typeof i.msg === 'string' && typeof i.type === 'string');
    if (!shaped) return { ok: false, why: `422 detail not [{loc, msg, type}]: ${JSON.stringify(d).slice(0, 200)}`, code: body.code };
  }
  return { ok: true, code: body.code };
}

/** The code each status must carry. */
export const CODES_BY_STATUS: Record<number, string[]> = {
  400: ['LOGD_INVALID_JSON', 'LOGD_INVALID_UTF8'],
  404: ['LOGD_NOT_FOUND'],
  405: ['LOGD_METHOD_NOT_ALLOWED'],
  413: ['LOGD_BODY_TOO_LARGE'],
  415: ['LOGD_UNSUPPORTED_MEDIA_TYPE'],
  422: ['LOGD_VALIDATION_FAILED'],
};

// ---------------------------------------------------------------------------
// raw sockets

export interface RawResult {
  /** raw bytes received before the connection ended (or the deadline) */
  received: Buffer;
  /** how it ended */
  end: 'closed' | 'reset' | 'deadline' | 'error';
  error?: string;
}

/** Opens a TCP connection to logd; resolves once connected. */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.removeListener('error', reject); resolve(s); });
    s.once('error', reject);
  });
}

/**
 * Collects what the server sends on `s` until it closes the connection, a
 * full HTTP response has arrived (`untilResponse`), or the deadline passes.
 */
export function collect(s: net.Socket, deadlineMs: number, untilResponse = true): Promise<RawResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (end: RawResult['end'], error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), end, error });
    };
    const timer = setTimeout(() => finish('deadline'), deadlineMs);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (untilResponse && parseResponse(Buffer.concat(chunks))) finish('closed');
    });
    s.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : 'error', err.code ?? err.message));
    s.on('close', () => finish('closed'));
  });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Parses one complete HTTP/1.1 response with Content-Length (or chunked); undefined if incomplete. */
export function parseResponse(buf: Buffer): RawResponse | undefined {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const rest = buf.subarray(headEnd + 4);
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    return rest.length >= n ? { status: Number(m[1]), headers, body: rest.subarray(0, n) } : undefined;
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = rest.indexOf('\r\n', at);
      if (eol < 0) return undefined;
      const size = parseInt(rest.subarray(at, eol).toString('latin1'), 16);
      if (Number.isNaN(size)) return undefined;
      if (size === 0) return { status: Number(m[1]), headers, body: Buffer.concat(parts) };
      if (rest.length < eol + 2 + size + 2) return undefined;
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
  }
  return undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends `data` on a new connection and collects until the first full answer (or, with `untilResponse` false, the close) or the deadline. */
export async function rawRequest(port: number, data: string | Buffer, deadlineMs = 2000, untilResponse = true): Promise<RawResult & { response?: RawResponse }> {
  const s = await connect(port);
  const done = collect(s, deadlineMs, untilResponse);
  s.write(data);
  const r = await done;
  s.destroy();
  return { ...r, response: parseResponse(r.received) };
}
