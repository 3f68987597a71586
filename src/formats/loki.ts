/**
 * Loki's push API as Drafts, transport-free: the JSON body, the protobuf
 * PushRequest in snappy's block format, and the label selector
 * `{name="value", ...}` protobuf streams carry their labels in.
 *
 * Formats: github.com/grafana/loki pkg/push/push.proto (protobuf),
 * pkg/loghttp/entry.go (a JSON value: ["<unix epoch ns>", "<line>",
 * {structured metadata}?]), github.com/google/snappy format_description.txt
 * (the block format), and the Prometheus selector syntax
 * (prometheus.io/docs/prometheus/latest/querying/basics/).
 *
 * Every entry becomes one Draft: device_id the first of `deviceLabels`
 * present in the stream's labels, else in the entry's structured metadata;
 * the level from the `level`, else `detected_level` label, else those keys
 * of the structured metadata (the first levelFromText() names; INFO when
 * none does); the line as message; the timestamp to the microsecond (0 or
 * absent: receive time); log_data `{labels, structured_metadata?, org_id?}`.
 * A stream whose labels do not parse is refused whole, an entry of the wrong
 * shape alone; the decoders report both to the sink and go on.
 */
import { Root, type Type } from 'protobufjs/light';
import type { Draft } from '../model/entry';
import { levelFromText, type LogLevel } from '../model/levels';
import { nanosInstant, secondsInstant, type Instant } from '../model/time';

/** Label names and values, or structured metadata (no prototype: `__proto__` is a valid label name). */
export type Labels = Record<string, string>;

export interface LokiOptions {
  /** labels (then structured metadata keys) whose first present value is the device */
  deviceLabels: readonly string[];
  /** the X-Scope-OrgID header, '' when not sent */
  orgId: string;
}

/** A stream as sent, for naming it: the protobuf label string, or the JSON `stream` value. */
export type StreamRef = { text: string } | { json: unknown };

export interface LokiSink {
  /** entry `index` of `stream` */
  entry(d: Draft, stream: StreamRef, index: number): void;
  /** `count` entries refused: the whole stream (`index` undefined) or its entry `index` */
  reject(stream: StreamRef, index: number | undefined, reason: string, count: number): void;
}

/** Levels are read from these, labels first, then structured metadata. */
const LEVEL_KEYS = ['level', 'detected_level'];
/** A stream is named in answers with at most this many characters. */
const MAX_NAME = 200;

/** The stream as a selector (`{job="x"}`), cut to MAX_NAME characters. */
export function streamName(s: StreamRef): string {
  let text: string;
  if ('text' in s) text = s.text;
  else if (s.json !== null && typeof s.json === 'object' && !Array.isArray(s.json)) {
    text = `{${Object.entries(s.json).map(([k, v]) => `${k}=${JSON.stringify(typeof v === 'string' ? v : v ?? null)}`).join(', ')}}`;
  } else text = JSON.stringify(s.json) ?? 'undefined';
  return text.length > MAX_NAME ? `${text.slice(0, MAX_NAME)}...` : text;
}

// ---------------------------------------------------------------------------
// label selectors

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;
const SPACE = /[ \t\r\n]/;
const SIMPLE_ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"', "'": "'" };
const HEX_ESCAPES: Record<string, number> = { x: 2, u: 4, U: 8 };

/**
 * The labels of a selector `{name="value", ...}` (as Prometheus parses it:
 * values in double or single quotes with Go's escapes, or in backquotes
 * raw; a trailing comma allowed; only the `=` matcher), or why it is not one.
 */
export function parseLabels(s: string): Labels | string {
  const labels: Labels = Object.create(null);
  let p = 0;
  const skip = (): void => {
    while (p < s.length && SPACE.test(s[p])) p++;
  };
  const at = (what: string): string => `malformed labels at offset ${p}: ${what}`;
  skip();
  if (s[p] !== '{') return at('expected "{"');
  p++;
  skip();
  while (s[p] !== '}') {
    if (p >= s.length) return at('expected "}"');
    if (!NAME_START.test(s[p])) return at('expected a label name');
    const start = p;
    while (p < s.length && NAME_CHAR.test(s[p])) p++;
    const name = s.slice(start, p);
    skip();
    if (s[p] !== '=' || s[p + 1] === '~') return at(`expected "=" after label ${name} (stream labels take no other matcher)`);
    p++;
    skip();
    const value = quoted(s, p);
    if (typeof value === 'string') return at(value);
    if (Object.hasOwn(labels, name)) return at(`label ${name} repeated`);
    labels[name] = value.text;
    p = value.end;
    skip();
    if (s[p] === ',') {
      p++;
      skip();
    } else if (s[p] !== '}') return at('expected "," or "}"');
  }
  p++;
  skip();
  return p === s.length ? labels : at('text after "}"');
}

/** The quoted string at `p` and the index after it, or what is wrong with it. */
function quoted(s: string, p: number): { text: string; end: number } | string {
  const quote = s[p];
  if (quote === '`') {
    const end = s.indexOf('`', p + 1);
    return end < 0 ? 'unterminated value' : { text: s.slice(p + 1, end), end: end + 1 };
  }
  if (quote !== '"' && quote !== "'") return 'expected a quoted value';
  let text = '';
  let from = p + 1;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (c === quote) return { text: text + s.slice(from, i), end: i + 1 };
    if (c === '\n') break;
    if (c !== '\\') continue;
    text += s.slice(from, i);
    const e = s[i + 1];
    if (e !== undefined && Object.hasOwn(SIMPLE_ESCAPES, e)) {
      text += SIMPLE_ESCAPES[e];
      i++;
    } else if (e !== undefined && Object.hasOwn(HEX_ESCAPES, e)) {
      const digits = s.slice(i + 2, i + 2 + HEX_ESCAPES[e]);
      const code = /^[0-9a-fA-F]+$/.test(digits) && digits.length === HEX_ESCAPES[e] ? parseInt(digits, 16) : NaN;
      if (!(code <= 0x10ffff)) return `bad escape \\${e}${digits} at offset ${i}`;
      text += String.fromCodePoint(code);
      i += 1 + digits.length;
    } else return `unknown escape \\${e ?? ''} at offset ${i}`;
    from = i + 1;
  }
  return 'unterminated value';
}

// ---------------------------------------------------------------------------
// the mapping

/** What a stream's labels give every entry of it: undefined where the entries' structured metadata may. */
interface StreamInfo {
  ref: StreamRef;
  labels: Labels;
  device: string | undefined;
  level: LogLevel | undefined;
}

function firstPresent(l: Labels, keys: readonly string[]): string | undefined {
  for (const k of keys) if (Object.hasOwn(l, k)) return l[k];
  return undefined;
}

function levelOf(l: Labels): LogLevel | undefined {
  for (const k of LEVEL_KEYS) {
    const level = Object.hasOwn(l, k) ? levelFromText(l[k]) : undefined;
    if (level) return level;
  }
  return undefined;
}

const streamInfo = (ref: StreamRef, labels: Labels, opts: LokiOptions): StreamInfo =>
  ({ ref, labels, device: firstPresent(labels, opts.deviceLabels), level: levelOf(labels) });

function draft(s: StreamInfo, line: string, time: Instant | undefined, metadata: Labels | undefined, opts: LokiOptions): Draft {
  const data: Record<string, unknown> = { labels: s.labels };
  if (metadata) data.structured_metadata = metadata;
  if (opts.orgId) data.org_id = opts.orgId;
  const d: Draft = {
    device_id: s.device ?? (metadata && firstPresent(metadata, opts.deviceLabels)) ?? '',
    log_level: s.level ?? (metadata && levelOf(metadata)) ?? 'INFO',
    message: line,
    data,
    // labels and metadata hold strings: two levels
    boundedDepth: true,
  };
  if (time) d.time = time;
  return d;
}

/** Nanoseconds since the epoch as an Instant, undefined for 0 (receive time), or why they are not a time logd keeps. */
function nanosTime(ns: bigint): Instant | undefined | string {
  if (ns === 0n) return undefined;
  return nanosInstant(ns) ?? `timestamp ${ns} ns is outside years 1970..9999`;
}

// ---------------------------------------------------------------------------
// JSON: {"streams":[{"stream":{labels},"values":[["<ns>","<line>",{metadata}?]]}]}

const NANOS_TEXT = /^\d{1,19}$/;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The first key of `o` whose value is not a string, or undefined (then `o` is Labels as it is). */
function nonString(o: Record<string, unknown>): string | undefined {
  for (const k in o) if (typeof o[k] !== 'string') return k;
  return undefined;
}

const typeName = (v: unknown): string => (v === undefined ? 'nothing' : v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

/** A parsed JSON push body to the sink, or why it is not one. */
export function pushJson(body: unknown, opts: LokiOptions, sink: LokiSink): string | undefined {
  if (!isObject(body)) return `the body must be a JSON object with "streams", got ${typeName(body)}`;
  const streams = body.streams;
  if (!Array.isArray(streams)) return `"streams" must be an array, got ${typeName(streams)}`;
  for (const s of streams) jsonStream(s, opts, sink);
  return undefined;
}

function jsonStream(s: unknown, opts: LokiOptions, sink: LokiSink): void {
  const ref: StreamRef = { json: isObject(s) ? s.stream : s };
  const values = isObject(s) ? s.values : undefined;
  const count = Array.isArray(values) ? values.length : 0;
  if (!isObject(s)) return sink.reject(ref, undefined, `a stream must be an object, got ${typeName(s)}`, 0);
  if (!isObject(s.stream)) return sink.reject(ref, undefined, `"stream" must be an object of labels, got ${typeName(s.stream)}`, count);
  const bad = nonString(s.stream);
  if (bad !== undefined) return sink.reject(ref, undefined, `label ${bad} must be a string, got ${typeName(s.stream[bad])}`, count);
  if (!Array.isArray(values)) return sink.reject(ref, undefined, `"values" must be an array, got ${typeName(values)}`, 0);
  const info = streamInfo(ref, s.stream as Labels, opts);
  for (let i = 0; i < values.length; i++) {
    const r = jsonEntry(info, values[i], opts);
    if (typeof r === 'string') sink.reject(ref, i, r, 1);
    else sink.entry(r, ref, i);
  }
}

function jsonEntry(s: StreamInfo, v: unknown, opts: LokiOptions): Draft | string {
  if (!Array.isArray(v) || v.length < 2 || v.length > 3) return 'an entry must be ["<unix epoch ns>", "<line>"] or ["<unix epoch ns>", "<line>", {structured metadata}]';
  const [ts, line, meta] = v as unknown[];
  if (typeof ts !== 'string') return `the timestamp must be a string of Unix epoch nanoseconds, got ${typeName(ts)}`;
  if (ts !== '' && !NANOS_TEXT.test(ts)) return `the timestamp must be a string of Unix epoch nanoseconds, got ${JSON.stringify(ts.slice(0, 40))}`;
  if (typeof line !== 'string') return `the line must be a string, got ${typeName(line)}`;
  let metadata: Labels | undefined;
  if (v.length === 3) {
    if (!isObject(meta)) return `structured metadata must be an object of strings, got ${typeName(meta)}`;
    const bad = nonString(meta);
    if (bad !== undefined) return `structured metadata ${bad} must be a string, got ${typeName(meta[bad])}`;
    metadata = nonEmpty(meta as Labels);
  }
  const time = ts === '' ? undefined : nanosTime(BigInt(ts));
  if (typeof time === 'string') return time;
  return draft(s, line, time, metadata, opts);
}

function nonEmpty(l: Labels): Labels | undefined {
  for (const _ in l) return l;
  return undefined;
}

// ---------------------------------------------------------------------------
// protobuf: logproto.PushRequest

/** pkg/push/push.proto, the fields a push carries (EntryAdapter.parsed, for query answers, is skipped). */
const DESCRIPTOR = {
  nested: {
    google: { nested: { protobuf: { nested: { Timestamp: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } } } } } },
    logproto: {
      nested: {
        PushRequest: { fields: { streams: { rule: 'repeated', type: 'StreamAdapter', id: 1 } } },
        StreamAdapter: {
          fields: { labels: { type: 'string', id: 1 }, entries: { rule: 'repeated', type: 'EntryAdapter', id: 2 }, hash: { type: 'uint64', id: 3 } },
        },
        LabelPairAdapter: { fields: { name: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
        EntryAdapter: {
          fields: {
            timestamp: { type: 'google.protobuf.Timestamp', id: 1 },
            line: { type: 'string', id: 2 },
            structuredMetadata: { rule: 'repeated', type: 'LabelPairAdapter', id: 3 },
          },
        },
      },
    },
  },
};

/** logproto.PushRequest: decode() a body with it, or encode() one (benchmarks, tests). */
export const PushRequest: Type = Root.fromJSON(DESCRIPTOR).lookupType('logproto.PushRequest');

/** int64 as protobufjs gives it: a number, or a Long when the `long` package is present. */
type Int64 = number | { toNumber(): number };

interface PushMessage {
  streams: { labels: string; entries: EntryMessage[] }[];
}

interface EntryMessage {
  timestamp?: { seconds: Int64; nanos: number } | null;
  line: string;
  structuredMetadata: { name: string; value: string }[];
}

/** Seconds past 9999-12-31T23:59:59Z. */
const MAX_SECONDS = 253_402_300_799;

/** A decoded PushRequest, or why the bytes are not one. */
export function decodePushRequest(bytes: Uint8Array): PushMessage | string {
  try {
    return PushRequest.decode(bytes) as unknown as PushMessage;
  } catch (err) {
    return `the body is not a protobuf PushRequest: ${(err as Error).message}`;
  }
}

/** A decoded PushRequest to the sink. */
export function pushProtobuf(msg: PushMessage, opts: LokiOptions, sink: LokiSink): void {
  for (const s of msg.streams) {
    const ref: StreamRef = { text: s.labels };
    const labels = parseLabels(s.labels);
    if (typeof labels === 'string') {
      sink.reject(ref, undefined, labels, s.entries.length);
      continue;
    }
    const info = streamInfo(ref, labels, opts);
    for (let i = 0; i < s.entries.length; i++) {
      const e = s.entries[i];
      const time = protoTime(e.timestamp);
      if (typeof time === 'string') sink.reject(ref, i, time, 1);
      else sink.entry(draft(info, e.line, time, metadataOf(e), opts), ref, i);
    }
  }
}

function protoTime(ts: EntryMessage['timestamp']): Instant | undefined | string {
  if (!ts) return undefined;
  const seconds = typeof ts.seconds === 'number' ? ts.seconds : ts.seconds.toNumber();
  const nanos = ts.nanos;
  if (nanos < 0 || nanos > 999_999_999) return `timestamp nanos ${nanos} is outside 0..999999999`;
  if (seconds < 0 || seconds > MAX_SECONDS) return `timestamp of ${seconds} s is outside years 1970..9999`;
  return seconds === 0 && nanos === 0 ? undefined : secondsInstant(seconds, nanos);
}

function metadataOf(e: EntryMessage): Labels | undefined {
  if (!e.structuredMetadata.length) return undefined;
  const out: Labels = Object.create(null);
  for (const p of e.structuredMetadata) out[p.name] = p.value;
  return out;
}

// ---------------------------------------------------------------------------
// snappy, block format (github.com/google/snappy format_description.txt)

/**
 * The uncompressed length a snappy block declares (its leading varint, at
 * most 32 bits), or undefined when the bytes do not start with one.
 */
export function snappyLength(b: Uint8Array): number | undefined {
  let n = 0;
  for (let i = 0; i < 5 && i < b.length; i++) {
    n += (b[i] & 0x7f) * 2 ** (7 * i);
    if (b[i] < 0x80) return n <= 0xffffffff ? n : undefined;
  }
  return undefined;
}

/**
 * A snappy block uncompressed, or why it is not valid: every literal and
 * copy must lie inside the input and the output, and the output must be
 * exactly the declared length (a truncated block is refused, never padded).
 * Call snappyLength() first to bound the declared length.
 */
export function unsnappy(b: Uint8Array): Buffer | string {
  const length = snappyLength(b);
  if (length === undefined) return 'the body is not snappy block format: bad length header';
  const out = Buffer.allocUnsafe(length);
  let p = 0;
  while (b[p] >= 0x80) p++;
  p++;
  let o = 0;
  const bad = (why: string): string => `the body is not valid snappy block format: ${why} at byte ${p}`;
  while (p < b.length) {
    const tag = b[p];
    const kind = tag & 3;
    if (kind === 0) {
      let len = (tag >>> 2) + 1;
      let q = p + 1;
      if (len > 60) {
        const bytes = len - 60;
        if (q + bytes > b.length) return bad('truncated literal length');
        len = 0;
        for (let i = 0; i < bytes; i++) len += b[q + i] * 2 ** (8 * i);
        len += 1;
        q += bytes;
      }
      if (q + len > b.length) return bad('literal past the end of the input');
      if (o + len > length) return bad('output past the declared length');
      out.set(b.subarray(q, q + len), o);
      o += len;
      p = q + len;
      continue;
    }
    const size = kind === 1 ? 2 : kind === 2 ? 3 : 5;
    if (p + size > b.length) return bad('truncated copy');
    const len = kind === 1 ? ((tag >>> 2) & 7) + 4 : (tag >>> 2) + 1;
    const offset = kind === 1 ? ((tag >>> 5) << 8) | b[p + 1]
      : kind === 2 ? b[p + 1] | (b[p + 2] << 8)
        : (b[p + 1] | (b[p + 2] << 8) | (b[p + 3] << 16)) + b[p + 4] * 0x1000000;
    if (offset === 0 || offset > o) return bad(`copy offset ${offset} outside the output`);
    if (o + len > length) return bad('output past the declared length');
    if (offset >= len) out.copyWithin(o, o - offset, o - offset + len);
    else for (let i = 0; i < len; i++) out[o + i] = out[o - offset + i];
    o += len;
    p += size;
  }
  return o === length ? out : `the body is not valid snappy block format: ${o} of the declared ${length} bytes`;
}
