/**
 * Logs as the read routes return them: rows of SQL.deviceLogs and
 * SQL.searchLogs (all columns as text) written straight into JSON text, the
 * answer's body, without a JSON.parse / stringify round trip of log_data.
 */
import { SQL } from '../sql';
import type { ReadPool, Row } from './db';

const str = (s: string | null): string => (s === null ? 'null' : JSON.stringify(s));

/** One log; the row is (id, device_id, log_level, message, log_data as jsonb text, created_at as ISO text). */
function logJson(r: Row): string {
  return `{"id":${r[0]},"device_id":${str(r[1])},"log_level":${str(r[2])},"message":${str(r[3])},"log_data":${r[4] ?? 'null'},"created_at":${r[5] === null ? 'null' : `"${r[5]}"`}}`;
}

function logsJson(rows: Row[], count: number): string {
  let out = '[';
  for (let i = 0; i < count; i++) out += i ? `,${logJson(rows[i])}` : logJson(rows[i]);
  return `${out}]`;
}

/** GET /api/logs/{device_id}: `{"total":N,"data":[...]}`, newest first; total counts data, as the reference did. */
export async function deviceLogs(db: ReadPool, device: string, limit: number): Promise<string> {
  const rows = await db.rows(SQL.deviceLogs, [device, limit]);
  return `{"total":${rows.length},"data":${logsJson(rows, rows.length)}}`;
}

export interface Search {
  deviceId?: string;
  levels?: string[];
  since?: string;
  until?: string;
  /** case-insensitive substrings that message must all contain (q's terms) */
  terms?: string[];
  /** JSON text of an object that log_data must contain */
  data?: string;
  /** (created_at, id) of the last log of the previous page */
  after?: { createdAt: string; id: string };
  limit: number;
}

/**
 * Whether the search has a filter that PostgreSQL may apply row by row (q,
 * data and level on a partition without search indexes: the open one, those
 * not yet indexed; level everywhere): then how many rows it reads depends on
 * how rare the matches are, not on the limit. Such searches run in the scans
 * pool (db.ts).
 */
export const filtersAlongScan = (s: Search): boolean => s.terms !== undefined || s.data !== undefined || s.levels !== undefined;

/** A trigram index finds only terms of at least 3 characters (pg_trgm, https://www.postgresql.org/docs/current/pgtrgm.html#PGTRGM-INDEX). */
const TRIGRAM = 3;

/**
 * Whether no search index can serve the search's row filters, so every
 * partition in its range is read row by row, closed ones included: level
 * alone, or q whose terms are all shorter than a trigram. A `data` filter
 * or a longer q term is looked up in the closed partitions' indexes.
 */
export const scansEverywhere = (s: Search): boolean =>
  filtersAlongScan(s) && s.data === undefined && !(s.terms ?? []).some((t) => [...t].length >= TRIGRAM);

/** `%`, `_` and `\` of the searched text are literal. */
const likePattern = (text: string): string => `%${text.replace(/[\\%_]/g, '\\$&')}%`;

/** SQL.searchLogs with a condition for each q term after the first, $10 onwards; by number of terms. */
const searchSql: string[] = [];
function searchStatement(terms: number): string {
  searchSql[terms] ??= SQL.searchLogs.replace('/*more terms*/', Array.from({ length: Math.max(terms - 1, 0) }, (_, i) => `AND message ILIKE $${10 + i}`).join(' '));
  return searchSql[terms];
}

/**
 * GET /api/logs: `{"total":N,"data":[...],"next_cursor":...}`. One row more
 * than the page is asked for: it tells whether there is a next page, so the
 * last page says null instead of leading to an empty one.
 */
export async function searchLogs(db: ReadPool, s: Search, cursor: (createdAt: string, id: string) => string): Promise<string> {
  const patterns = (s.terms ?? []).map(likePattern);
  const rows = await db.rows(searchStatement(patterns.length), [
    s.deviceId ?? null, s.levels ?? null, s.since ?? null, s.until ?? null,
    patterns[0] ?? null, s.data ?? null,
    s.after?.createdAt ?? null, s.after?.id ?? null, s.limit + 1, ...patterns.slice(1),
  ]);
  const count = Math.min(rows.length, s.limit);
  const last = rows[count - 1];
  const next = rows.length > s.limit ? `"${cursor(last[5]!, last[0]!)}"` : 'null';
  return `{"total":${count},"data":${logsJson(rows, count)},"next_cursor":${next}}`;
}
