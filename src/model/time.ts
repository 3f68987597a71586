/**
 * Timestamps of the log model: the civil-date arithmetic every path shares
 * (valid for years 1..9999, unlike Date.UTC, where 0..99 mean 19xx) and the
 * one parser of the ISO-8601 text logd accepts and writes.
 */

const HOUR_MS = 3_600_000;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}

/** The UTC epoch minute of a civil date and time at `offset` minutes east of UTC. */
export function utcMinute(y: number, m: number, d: number, hh: number, mm: number, offset: number): number {
  return daysFromCivil(y, m, d) * 1440 + hh * 60 + mm - offset;
}

/** The UTC epoch hour of a civil date and time at `offset` minutes east of UTC. */
export function utcHour(y: number, m: number, d: number, hh: number, mm: number, offset: number): number {
  return Math.floor(utcMinute(y, m, d, hh, mm, offset) / 60);
}

const WRITTEN = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::\d\d(?:\.\d+)?)?(?:(Z)|([+-])(\d\d)(?::?(\d\d))?)$/i;

/**
 * The UTC epoch hour of an ISO-8601 time with an offset (what logd writes:
 * parseTimestamp's text or toISOString), or NaN. Date.parse is not used: it
 * refuses offsets like "+05" that logd accepts.
 */
export function epochHour(iso: string): number {
  const m = WRITTEN.exec(iso);
  if (!m || (!m[6] && !m[7])) return NaN;
  const offset = m[6] ? 0 : (m[7] === '+' ? 1 : -1) * (Number(m[8]) * 60 + Number(m[9] ?? 0));
  return utcHour(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), offset);
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** A timestamp of the model: text PostgreSQL parses the same way whatever its settings, its UTC epoch hour and ms. */
export interface Instant {
  iso: string;
  hour: number;
  ms: number;
}

/**
 * An ISO-8601 date-time (no offset = UTC) or epoch milliseconds as an
 * Instant, or undefined if it is not a real date-time. Sub-millisecond
 * digits of ISO input are kept in `iso`.
 */
export function parseTimestamp(ts: string | number): Instant | undefined {
  if (typeof ts === 'number') return { iso: new Date(ts).toISOString(), hour: Math.floor(ts / HOUR_MS), ms: ts };
  const m = ISO.exec(ts);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = '00', frac = '', zone = 'Z'] = m;
  const year = Number(y), month = Number(mo), day = Number(d);
  if (year < 1 || month < 1 || month > 12 || day < 1) return undefined;
  if (day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return undefined;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  if (zone.length > 1 && (Number(zone.slice(1, 3)) > 15)) return undefined;
  // zone: Z, ±HH, ±HHMM or ±HH:MM; minutes east of UTC
  const offset = zone.length === 1 ? 0 : (zone[0] === '+' ? 1 : -1) * (Number(zone.slice(1, 3)) * 60 + (zone.length > 3 ? Number(zone.slice(-2)) : 0));
  const minute = utcMinute(year, month, day, Number(h), Number(mi), offset);
  const ms = minute * 60_000 + Number(s) * 1000 + Math.floor(Number(`0${frac || '.0'}`) * 1000);
  return { iso: `${y}-${mo}-${d}T${h}:${mi}:${s}${frac}${zone.toUpperCase()}`, hour: Math.floor(minute / 60), ms };
}

/** parseTimestamp's text alone (query parameters). */
export const normalizeTimestamp = (ts: string | number): string | undefined => parseTimestamp(ts)?.iso;

const NS_PER_S = 1_000_000_000n;

/** The ISO text of the last second nanosInstant() wrote (a request's records mostly share their seconds). */
let lastSecond = NaN;
let lastPrefix = '';

/**
 * An Instant from nanoseconds since the Unix epoch (OTLP, Loki), to the
 * microsecond PostgreSQL keeps (the rest is cut), or undefined outside
 * years 1970..9999.
 */
export function nanosInstant(ns: bigint): Instant | undefined {
  if (ns < 0n || ns >= 253_402_300_800_000_000_000n) return undefined;
  return secondsInstant(Number(ns / NS_PER_S), Number(ns % NS_PER_S));
}

/** An Instant from whole seconds since the Unix epoch (0 to 253402300799: years 1970..9999) and nanoseconds (0 to 999999999). */
export function secondsInstant(second: number, nanos: number): Instant {
  if (second !== lastSecond) {
    lastSecond = second;
    lastPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const ms = second * 1000 + Math.floor(nanos / 1_000_000);
  return { iso: `${lastPrefix}.${String(Math.floor(nanos / 1000)).padStart(6, '0')}Z`, hour: Math.floor(ms / HOUR_MS), ms };
}
