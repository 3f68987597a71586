/**
 * What the console searches for, and its place in the page's URL: the query
 * string holds it (device_id, level, range or since/until, q, data, limit,
 * view), so a URL can be shared and reloaded. Times are UTC throughout.
 */
import { LEVELS, type Level } from './api';

export const RANGES: Record<string, number> = {
  '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000,
};
const DEFAULT_RANGE = '24h';
export const DEFAULT_LIMIT = 100;

export interface Query {
  device: string;
  levels: Level[];
  /** a key of RANGES, or '' for the absolute since/until */
  range: string;
  /** ISO-8601 UTC, when range is '' */
  since: string;
  until: string;
  q: string;
  data: string;
  /** logs per page */
  limit: number;
  view: 'search' | 'live';
}

export function fromUrl(search: string): Query {
  const p = new URLSearchParams(search);
  const levels = p.getAll('level').flatMap((v) => v.split(',')).filter((v): v is Level => (LEVELS as readonly string[]).includes(v));
  const since = p.get('since') ?? '';
  const range = p.get('range') ?? '';
  const limit = Number(p.get('limit'));
  return {
    device: p.get('device_id') ?? '',
    levels: LEVELS.filter((l) => levels.includes(l)),
    range: Object.hasOwn(RANGES, range) ? range : since ? '' : DEFAULT_RANGE,
    since,
    until: p.get('until') ?? '',
    q: p.get('q') ?? '',
    data: p.get('data') ?? '',
    limit: Number.isInteger(limit) && limit > 0 ? limit : DEFAULT_LIMIT,
    view: p.get('view') === 'live' ? 'live' : 'search',
  };
}

export function toUrl(q: Query): string {
  const p = new URLSearchParams();
  if (q.view === 'live') p.set('view', 'live');
  if (q.device) p.set('device_id', q.device);
  if (q.levels.length) p.set('level', q.levels.join(','));
  if (q.range) p.set('range', q.range);
  else {
    if (q.since) p.set('since', q.since);
    if (q.until) p.set('until', q.until);
  }
  if (q.q) p.set('q', q.q);
  if (q.data) p.set('data', q.data);
  if (q.limit !== DEFAULT_LIMIT) p.set('limit', String(q.limit));
  const s = p.toString();
  return s ? `?${s}` : location.pathname;
}

/** The time range as the API takes it; a preset ends now. */
export function bounds(q: Query, now = Date.now()): { since: string; until: string } {
  if (q.range) return { since: new Date(now - RANGES[q.range]).toISOString(), until: new Date(now).toISOString() };
  return { since: q.since || new Date(now - RANGES[DEFAULT_RANGE]).toISOString(), until: q.until || new Date(now).toISOString() };
}

/** The filters both the search and the live tail take: device_id, level, q. */
export function filterParams(q: Query): URLSearchParams {
  const p = new URLSearchParams();
  if (q.device) p.set('device_id', q.device);
  if (q.levels.length) p.set('level', q.levels.join(','));
  if (q.q) p.set('q', q.q);
  return p;
}

/** GET /api/logs's parameters for the query's first page. */
export function searchParams(q: Query, range: { since: string; until: string }): URLSearchParams {
  const p = filterParams(q);
  p.set('since', range.since);
  p.set('until', range.until);
  if (q.data) p.set('data', q.data);
  p.set('limit', String(q.limit));
  return p;
}

/** ISO-8601 with microseconds (as logd writes created_at) moved by `us` microseconds. */
export function shiftMicros(iso: string, us: number): string {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(iso);
  if (!m) return iso;
  const total = Date.parse(`${m[1]}Z`) * 1000 + Number((m[2] ?? '').padEnd(6, '0')) + us;
  const micros = ((total % 1e6) + 1e6) % 1e6;
  return `${new Date((total - micros) / 1000).toISOString().slice(0, 19)}.${String(micros).padStart(6, '0')}Z`;
}

/** `2026-12-03T12:01:02.123456Z` as `2026-12-03 12:01:02.123`. */
export const shortTime = (iso: string | null): string => (iso ? `${iso.slice(0, 10)} ${iso.slice(11, 23)}` : '');

/** An ISO time as a datetime-local input's value (UTC), and back. */
export const toInput = (iso: string): string => (iso ? new Date(iso).toISOString().slice(0, 19) : '');
export const fromInput = (value: string): string => (value ? new Date(`${value}Z`).toISOString() : '');
