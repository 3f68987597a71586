/**
 * Erasure of a device's logs (DELETE /api/logs, `logd purge`): those created
 * before a time, or all of them. The leaf partitions of `logs` are walked
 * one by one (those starting at or after the time are skipped), each in
 * chunks of one transaction: delete at most chunkRows of the device's rows,
 * take their counts out of the statistics rollups (add-counts.sql with
 * negated counts), delete the rollup rows brought to 0, COMMIT. Every
 * committed chunk took out of the rollups exactly what it deleted, so a purge
 * that fails halfway leaves rows and rollups consistent.
 *
 * Ingest never waits behind a purge: a chunk holds its row and rollup locks
 * for one short transaction, and waits at most LOCK_TIMEOUT for a lock (a
 * partition being dropped holds its table, a persister's transaction its
 * rollup rows); a chunk that times out is rolled back and retried.
 *
 * Afterwards the device's cached reads and the statistics are invalidated
 * (also when the purge failed after deleting rows). A log of the device
 * persisted into a partition the purge has already walked remains: logs
 * still in the stream are persisted after it.
 */
import pg from 'pg';
import type { Versions } from '../cache/versions';
import { LogdError } from '../errors';
import { SQL } from '../sql';
import { listPartitions } from './partitions';

/** Rows deleted per transaction, by default. */
export const PURGE_CHUNK_ROWS = 5000;
/** Longest wait of a chunk for a lock. */
const LOCK_TIMEOUT = '1s';
/** Times a chunk whose lock wait timed out is tried again, after RETRY_MS, 2 x RETRY_MS, ... */
const LOCK_RETRIES = 5;
const RETRY_MS = 200;

export interface PurgeOptions {
  /** invalidates the cached reads of the device and the statistics */
  versions: Versions;
  /** most rows deleted per transaction (PURGE_CHUNK_ROWS) */
  chunkRows?: number;
}

interface ChunkRow {
  rows: number;
  devices: string[] | null;
  levels: string[] | null;
  buckets: string[] | null;
  counts: string[] | null;
  first: string | null;
  last: string | null;
}

/** What a chunk did: rows deleted, or why none were. */
type Chunk = number | 'locked' | 'dropped';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs fn on a connection of the pool (released after it; destroyed when fn failed), or on the client. */
async function withClient<T>(db: pg.Pool | pg.Client, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  if (!(db instanceof pg.Pool)) return fn(db);
  const c = await db.connect();
  let failed: Error | undefined;
  try {
    return await fn(c);
  } catch (err) {
    failed = err as Error;
    throw err;
  } finally {
    c.release(failed);
  }
}

/** One chunk, in one transaction. */
async function deleteChunk(c: pg.ClientBase, sql: string, params: unknown[]): Promise<Chunk> {
  await c.query('BEGIN');
  try {
    await c.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
    const { rows: [r] } = await c.query<ChunkRow>(sql, params);
    if (r.rows) {
      await c.query(SQL.addCounts, [r.devices, r.levels, r.buckets, r.counts]);
      await c.query(SQL.removeEmptyCounts, [r.first, r.last]);
    }
    await c.query('COMMIT');
    return r.rows;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    const code = (err as { code?: string }).code;
    if (code === '55P03' || code === '40P01') return 'locked'; // lock_not_available, deadlock_detected
    if (code === '42P01') return 'dropped'; // undefined_table: retention dropped the partition meanwhile
    throw err;
  }
}

/**
 * Deletes the logs of `device` created before `until` (text PostgreSQL reads
 * as a timestamptz; undefined: all of them); the number of logs deleted.
 */
export async function purge(db: pg.Pool | pg.Client, device: string, until: string | undefined, opts: PurgeOptions): Promise<number> {
  const chunkRows = opts.chunkRows ?? PURGE_CHUNK_ROWS;
  const bound = until ?? 'infinity';
  const { partitions, boundMs } = await withClient(db, async (c) => ({
    partitions: await listPartitions(c),
    boundMs: (await c.query<{ ms: number }>('SELECT (extract(epoch FROM $1::timestamptz) * 1000)::float8 AS ms', [bound])).rows[0].ms,
  }));
  const leaves = partitions.filter((p) => p.from < boundMs).flatMap((p) => (p.leaves.length ? p.leaves.map((l) => l.name) : [p.name]));
  let deleted = 0;
  let failure: unknown;
  try {
    for (const leaf of leaves) {
      const sql = SQL.purgeChunk.replaceAll('{leaf}', pg.escapeIdentifier(leaf));
      for (let retries = 0; ;) {
        const r = await withClient(db, (c) => deleteChunk(c, sql, [device, bound, chunkRows]));
        if (r === 'dropped') break;
        if (r === 'locked') {
          if (++retries > LOCK_RETRIES) {
            throw new LogdError('LOGD_BUSY', `the logs of partition ${leaf} stayed locked (a partition drop or a long transaction) after ${LOCK_RETRIES} retries; ${deleted} logs of ${device} were deleted; retry`);
          }
          await sleep(RETRY_MS * retries);
          continue;
        }
        retries = 0;
        deleted += r;
        if (r < chunkRows) break;
      }
    }
  } catch (err) {
    failure = err;
  }
  if (deleted > 0) {
    try {
      await opts.versions.bump([device]);
    } catch (err) {
      failure ??= new LogdError('LOGD_QUEUE_UNAVAILABLE', `deleted ${deleted} logs of ${device}, but Redis did not take the invalidation of its cached reads (they expire within cache.device_ttl_s); retry`, { cause: err });
    }
  }
  if (failure) throw failure;
  return deleted;
}
