/**
 * PostgreSQL for the read routes: each HTTP worker splits its
 * postgres.pool_size connections into two pools, so searches that may read
 * the whole table can never take the connections other reads need.
 *
 *   device queries, /api/stats, searches   ──> reads: pool_size - search_concurrency
 *   an index bounds, /health                        connections, statement_timeout_ms
 *
 *   searches with a filter applied along   ──> scans: search_concurrency connections,
 *   the scan (q, data, level)                       search_timeout_ms
 *
 * A read waits at most postgres.acquire_timeout_ms for a connection of its
 * pool, then gets LOGD_BUSY; failures are mapped to the catalogue here.
 */
import pg from 'pg';
import type { Config } from '../config';
import { pgConfig } from '../connections';
import { LogdError } from '../errors';

export type Row = (string | null)[];

/**
 * What pg-pool rejects a connect() with when its connectionTimeoutMillis
 * passed while every connection was in use
 * (https://github.com/brianc/node-postgres/blob/master/packages/pg-pool/index.js).
 * A new connection that does not come up in that time fails with
 * "Connection terminated due to connection timeout" instead: PostgreSQL is
 * unavailable, not busy.
 */
const POOL_EXHAUSTED = 'timeout exceeded when trying to connect';

/** PostgreSQL is down, restarting, out of connections, or unreachable: the client should retry. */
function unavailable(err: unknown): boolean {
  const code = String((err as { code?: unknown }).code ?? '');
  if (/^(08|53|57P0)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code)) return true;
  return /Connection terminated/i.test((err as Error).message ?? '');
}

/** One of a worker's two read pools, and what its failures tell the client. */
export class ReadPool {
  readonly pool: pg.Pool;

  /**
   * @param busy the LOGD_BUSY detail: which connections are all in use
   * @param timedOut the LOGD_QUERY_TIMEOUT detail: which timeout cancelled the statement
   */
  constructor(config: pg.PoolConfig, private readonly busy: string, private readonly timedOut: string) {
    this.pool = new pg.Pool(config);
  }

  /** Runs a read statement; rows come as arrays of text. */
  async rows(text: string, values: unknown[]): Promise<Row[]> {
    try {
      return (await this.pool.query<Row>({ text, values, rowMode: 'array' })).rows;
    } catch (err) {
      throw this.failure(err);
    }
  }

  /** What a failure of this pool (a connection, a statement) tells the client. */
  failure(err: unknown): LogdError {
    if (err instanceof LogdError) return err;
    if ((err as Error).message === POOL_EXHAUSTED) return new LogdError('LOGD_BUSY', this.busy, { cause: err });
    // 57014: cancelled by the pool's statement_timeout.
    if ((err as { code?: unknown }).code === '57014') return new LogdError('LOGD_QUERY_TIMEOUT', this.timedOut, { cause: err });
    return new LogdError(unavailable(err) ? 'LOGD_DATABASE_UNAVAILABLE' : 'LOGD_INTERNAL', undefined, { cause: err });
  }
}

/**
 * The worker's two pools. statement_timeout is a startup parameter of each
 * connection, so neither kind of read pays a round trip to set it.
 */
export function readPools(cfg: Config): { reads: ReadPool; scans: ReadPool } {
  const p = cfg.postgres;
  const wait = `waited postgres.acquire_timeout_ms (${p.acquire_timeout_ms} ms); retry later`;
  const narrow = 'narrow it (device_id, since, until)';
  const shared = { ...pgConfig(cfg), connectionTimeoutMillis: p.acquire_timeout_ms };
  return {
    reads: new ReadPool(
      { ...shared, max: p.pool_size - p.search_concurrency, statement_timeout: p.statement_timeout_ms },
      `all ${p.pool_size - p.search_concurrency} connections of this worker for device queries, statistics and index-bounded searches are in use; ${wait}`,
      `the query ran longer than postgres.statement_timeout_ms (${p.statement_timeout_ms} ms); ${narrow}`,
    ),
    scans: new ReadPool(
      { ...shared, max: p.search_concurrency, statement_timeout: p.search_timeout_ms },
      `postgres.search_concurrency (${p.search_concurrency}) searches filtering by q, data or level are already running on this worker; ${wait}`,
      `the search ran longer than postgres.search_timeout_ms (${p.search_timeout_ms} ms); ${narrow}, or give q a term of 3 characters or more (the search indexes serve those)`,
    ),
  };
}
