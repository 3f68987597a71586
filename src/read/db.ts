/** Read queries on PostgreSQL, with failures mapped to the catalogue. */
import type pg from 'pg';
import { LogdError } from '../errors';

/** PostgreSQL is down, restarting, out of connections, or unreachable: the client should retry. */
function unavailable(err: unknown): boolean {
  const code = String((err as { code?: unknown }).code ?? '');
  if (/^(08|53|57P0)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code)) return true;
  return /timeout exceeded when trying to connect|Connection terminated/i.test((err as Error).message ?? '');
}

/** Runs a read statement; rows come as arrays of text. */
export async function readRows(pool: pg.Pool, text: string, values: unknown[]): Promise<(string | null)[][]> {
  try {
    return (await pool.query<(string | null)[]>({ text, values, rowMode: 'array' })).rows;
  } catch (err) {
    // 57014: cancelled by statement_timeout (postgres.statement_timeout_ms).
    const code = (err as { code?: unknown }).code === '57014' ? 'LOGD_QUERY_TIMEOUT' : unavailable(err) ? 'LOGD_DATABASE_UNAVAILABLE' : 'LOGD_INTERNAL';
    throw new LogdError(code, undefined, { cause: err });
  }
}
