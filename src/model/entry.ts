/**
 * The log model: an accepted entry, as every ingest path hands it to the
 * frame encoder (src/queue/frame.ts). The JSON API refuses what breaks its
 * rules (src/http/validate.ts); paths whose senders cannot take a refusal
 * per record (syslog, journal upload) make a Draft and accept() stores it
 * with what it could keep, saying in log_data what it changed.
 */
import type { AcceptWindow } from '../storage/layout';
import type { LogLevel } from './levels';
import { parseTimestamp, type Instant } from './time';

/** Longest device_id (logs.device_id is VARCHAR(50)) and message, in characters. */
export const MAX_DEVICE_ID = 50;
export const MAX_MESSAGE = 5000;
/** Deepest nesting accepted inside log_data (objects and arrays). */
export const MAX_LOG_DATA_DEPTH = 32;

export interface Accepted {
  device_id: string;
  log_level: string;
  message: string;
  /** log_data as JSON text ('{}' when absent). */
  data: string;
  /** event time as ISO-8601 text, or undefined for "receive time". */
  time: string | undefined;
  /** UTC epoch hour of `time` (undefined with it) */
  hour: number | undefined;
}

/** What a transport-free parser makes of one input record, before accept(). */
export interface Draft {
  /** '' when the record names no device: accept() uses the sender's address */
  device_id: string;
  log_level: LogLevel;
  message: string;
  data: Record<string, unknown>;
  /** event time, ISO-8601 with an offset (or already parsed); absent = receive time */
  time?: string | Instant;
  /** the parser has kept `data` within MAX_LOG_DATA_DEPTH levels itself */
  boundedDepth?: boolean;
}

/** Why PostgreSQL text cannot hold `s` (U+0000, unpaired surrogates), or undefined. */
export function unstorable(s: string): string | undefined {
  if (s.includes('\u0000')) return 'String should not contain NUL (U+0000) characters';
  if (!s.isWellFormed()) return 'String should not contain unpaired UTF-16 surrogates';
  return undefined;
}

/** `s` with NUL and unpaired surrogates replaced by U+FFFD. */
function storable(s: string): string {
  return unstorable(s) === undefined ? s : s.replaceAll('\u0000', '\uFFFD').toWellFormed();
}

/** At most `max` UTF-16 units of `s`, never ending inside a surrogate pair. */
function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  const code = s.charCodeAt(max - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

function storableValue(v: unknown): unknown {
  if (typeof v === 'string') return storable(v);
  if (Array.isArray(v)) return v.map(storableValue);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[storable(k)] = storableValue(x);
    return out;
  }
  return v;
}

/**
 * log_data's JSON text. JSON.stringify escapes NUL and unpaired surrogates
 * as \u0000 and \udXXX (paired ones are written as they are), which jsonb
 * refuses; only then is the object walked and cleaned.
 */
function dataJson(data: Record<string, unknown>): string {
  const text = JSON.stringify(data);
  return text.includes('\\u') && /\\u(0000|d[89a-f])/i.test(text) ? JSON.stringify(storableValue(data)) : text;
}

/** Whether `v` nests objects and arrays more than MAX_LOG_DATA_DEPTH levels deep (`v` itself the first). */
export const nestsTooDeep = (v: unknown): boolean => depth(v, MAX_LOG_DATA_DEPTH) > MAX_LOG_DATA_DEPTH;

/** How deep `v` nests objects and arrays, counting up to `limit + 1` at most (a bound on the recursion). */
function depth(v: unknown, limit: number): number {
  if (v === null || typeof v !== 'object') return 0;
  if (limit < 0) return 1;
  let max = 0;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const x = o[k];
    if (x !== null && typeof x === 'object') max = Math.max(max, depth(x, limit - 1));
    if (max > limit) break;
  }
  return max + 1;
}

const timeText = (t: string | Instant): string => (typeof t === 'string' ? t : t.iso);

/** The message cut to MAX_MESSAGE (its length then in `message_truncated`), NUL and unpaired surrogates replaced; '-' when empty. */
function keptMessage(m: string, data: Record<string, unknown>): string {
  let message = storable(m);
  if (message.length > MAX_MESSAGE) {
    data.message_truncated = message.length;
    message = cut(message, MAX_MESSAGE);
  }
  return message || '-';
}

/**
 * A Draft as an accepted entry: NUL and unpaired surrogates replaced, the
 * device cut to MAX_DEVICE_ID (`peer` when empty), the message cut to
 * MAX_MESSAGE (`message_truncated`: its length) or '-' when empty, and a
 * time outside `window` replaced by the receive time (`timestamp_refused`:
 * the time sent).
 */
export function accept(d: Draft, window: AcceptWindow, peer: string): Accepted {
  const data = d.data;
  const message = keptMessage(d.message, data);
  let time = d.time === undefined ? undefined : typeof d.time === 'string' ? parseTimestamp(d.time) : d.time;
  if (d.time !== undefined && (time === undefined || window.refuses(d.log_level, time.ms) !== undefined)) {
    data.timestamp_refused = timeText(d.time);
    time = undefined;
  }
  return {
    device_id: cut(storable(d.device_id) || peer, MAX_DEVICE_ID),
    log_level: d.log_level,
    message,
    data: dataJson(data),
    time: time?.iso,
    hour: time?.hour,
  };
}

/**
 * A Draft as an accepted entry, or why it is refused, for the protocols
 * that answer per record (OTLP, Loki, Elasticsearch bulk): a time that is
 * not a date-time or lies outside `window`, log_data nested deeper than
 * MAX_LOG_DATA_DEPTH, or no device while `fallback` (the protocol's
 * default_device_id) is empty. Text is kept as accept() keeps it.
 */
export function admit(d: Draft, window: AcceptWindow, fallback: string): Accepted | string {
  const device = d.device_id || fallback;
  if (!device) return 'the record names no device (and default_device_id is empty)';
  let time: Instant | undefined;
  if (d.time !== undefined) {
    time = typeof d.time === 'string' ? parseTimestamp(d.time) : d.time;
    if (time === undefined) return `timestamp ${JSON.stringify(d.time)} is not an ISO-8601 date-time`;
    const why = window.refuses(d.log_level, time.ms);
    if (why) return why;
  }
  if (!d.boundedDepth && nestsTooDeep(d.data)) {
    return `attributes nest deeper than ${MAX_LOG_DATA_DEPTH} levels`;
  }
  const message = keptMessage(d.message, d.data);
  return {
    device_id: cut(storable(device), MAX_DEVICE_ID),
    log_level: d.log_level,
    message,
    data: dataJson(d.data),
    time: time?.iso,
    hour: time?.hour,
  };
}
