/**
 * The log model: an accepted entry, as every ingest path hands it to the
 * frame encoder (src/queue/frame.ts). The JSON API refuses what breaks its
 * rules (src/http/validate.ts); paths whose senders cannot take a refusal
 * per record (syslog, journal upload) make a Draft and accept() stores it
 * with what it could keep, saying in log_data what it changed.
 */
import type { AcceptWindow } from '../storage/layout';
import type { LogLevel } from './levels';
import { parseTimestamp } from './time';

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
  /** event time, ISO-8601 with an offset; absent = receive time */
  time?: string;
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
  return /\\u(0000|d[89a-f])/i.test(text) ? JSON.stringify(storableValue(data)) : text;
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
  let message = storable(d.message);
  if (message.length > MAX_MESSAGE) {
    data.message_truncated = message.length;
    message = cut(message, MAX_MESSAGE);
  }
  let time = d.time === undefined ? undefined : parseTimestamp(d.time);
  if (d.time !== undefined && (time === undefined || window.refuses(d.log_level, time.ms) !== undefined)) {
    data.timestamp_refused = d.time;
    time = undefined;
  }
  return {
    device_id: cut(storable(d.device_id) || peer, MAX_DEVICE_ID),
    log_level: d.log_level,
    message: message || '-',
    data: dataJson(data),
    time: time?.iso,
    hour: time?.hour,
  };
}
