/**
 * Upgrade in place of a database made before partitioning (one plain `logs`
 * table), in one transaction under the migration lock, before any
 * persister of this version runs (rows wait in the stream meanwhile):
 *
 * 1. `logs` becomes `logs_legacy` (its indexes renamed with it); a row
 *    without created_at gets its indexed_at (a partition key cannot be
 *    NULL) and is added to the hourly and daily rollups, which skipped it.
 * 2. The boundary B is the start of the next hour: rows at or after it
 *    (future timestamps, which older logd accepted) move to new partitions,
 *    made once logs_legacy is attached so that they start at B (a partition
 *    of storage.partition_hours made before would overlap its range); they
 *    wait in a temporary table meanwhile. The partitions of the day after B
 *    are made with them.
 * 3. A CHECK (created_at IS NOT NULL AND created_at < B), validated, lets
 *    SET NOT NULL and ATTACH PARTITION ... FROM (MINVALUE) TO (B) skip their
 *    scans, and the legacy indexes match the partitioned ones, so they are
 *    attached, not rebuilt. Retention drops logs_legacy whole once B is
 *    older than its retention.
 *
 * The table's rows are never copied: the cost is one validation scan and
 * the rows moved in step 2.
 */
import type pg from 'pg';
import type { Config } from '../config';
import { DAY_MS, HOUR_MS } from './layout';
import { createPartitionsInTransaction } from './partitions';

export const LEGACY = 'logs_legacy';

/** Whether `logs` is a plain table (made before partitioning). */
export async function needsUpgrade(db: pg.ClientBase): Promise<boolean> {
  const { rows } = await db.query<{ relkind: string }>("SELECT relkind FROM pg_class WHERE oid = to_regclass('public.logs')");
  return rows[0]?.relkind === 'r';
}

/**
 * Converts the plain `logs` into a partitioned one holding it as its
 * legacy partition, then applies `schemaSql`: its CREATE INDEX on `logs`
 * attaches the legacy table's matching indexes instead of building them.
 * Returns the rows moved to new partitions.
 */
export async function upgradeLegacy(db: pg.ClientBase, cfg: Config, schemaSql: string, now = Date.now()): Promise<number> {
  const boundary = new Date(Math.floor(now / HOUR_MS) * HOUR_MS + HOUR_MS).toISOString();
  await db.query('BEGIN');
  try {
    await db.query('LOCK TABLE logs IN ACCESS EXCLUSIVE MODE');
    await db.query(`ALTER TABLE logs RENAME TO ${LEGACY}`);
    await db.query(`ALTER INDEX IF EXISTS logs_pkey RENAME TO ${LEGACY}_pkey`);
    for (const idx of ['logs_device_created_idx', 'logs_created_idx', 'logs_created_brin_idx']) {
      await db.query(`ALTER INDEX IF EXISTS ${idx} RENAME TO ${idx.replace(/^logs_/, `${LEGACY}_`)}`);
    }
    // the rollups count rows without created_at in their all-time totals only; they get indexed_at and their buckets
    const { rows: rollups } = await db.query<{ t: string | null }>("SELECT to_regclass('public.logd_hourly_by_level')::text AS t");
    const fix = `UPDATE ${LEGACY} SET created_at = coalesce(indexed_at, now()) WHERE created_at IS NULL RETURNING device_id, log_level, date_trunc('hour', created_at, 'UTC') AS bucket`;
    await db.query(rollups[0].t ? `WITH b AS (${fix}),
      hl AS (INSERT INTO logd_hourly_by_level AS c SELECT bucket, log_level, count(*) FROM b GROUP BY 1, 2 ON CONFLICT (bucket, log_level) DO UPDATE SET n = c.n + EXCLUDED.n)
      INSERT INTO logd_hourly_by_device AS c SELECT bucket, device_id, count(*) FROM b GROUP BY 1, 2 ON CONFLICT (bucket, device_id) DO UPDATE SET n = c.n + EXCLUDED.n` : fix);
    await db.query(`CREATE TABLE logs (LIKE ${LEGACY} INCLUDING DEFAULTS) PARTITION BY RANGE (created_at)`);
    await db.query('ALTER TABLE logs ALTER COLUMN created_at SET NOT NULL');
    // the sequence must outlive the legacy partition, which retention drops one day
    await db.query('ALTER SEQUENCE logs_id_seq OWNED BY logs.id');
    await db.query(`CREATE TEMP TABLE logd_upgrade_future (LIKE ${LEGACY}) ON COMMIT DROP`);
    const { rowCount } = await db.query(
      `WITH gone AS (DELETE FROM ${LEGACY} WHERE created_at >= $1 RETURNING *) INSERT INTO logd_upgrade_future SELECT * FROM gone`, [boundary]);
    await db.query(`ALTER TABLE ${LEGACY} ADD CONSTRAINT ${LEGACY}_range CHECK (created_at IS NOT NULL AND created_at < '${boundary}') NOT VALID`);
    await db.query(`ALTER TABLE ${LEGACY} VALIDATE CONSTRAINT ${LEGACY}_range`);
    await db.query(`ALTER TABLE ${LEGACY} ALTER COLUMN created_at SET NOT NULL`);
    await db.query(`ALTER TABLE logs ATTACH PARTITION ${LEGACY} FOR VALUES FROM (MINVALUE) TO ('${boundary}')`);
    const { rows: future } = await db.query<{ t: Date }>("SELECT DISTINCT date_trunc('hour', created_at, 'UTC') AS t FROM logd_upgrade_future");
    // the day after B too: a logd of the previous version, serving until its restart, keeps loading into `logs`
    const nextDay = Array.from({ length: DAY_MS / HOUR_MS }, (_, i) => Date.parse(boundary) + i * HOUR_MS);
    await createPartitionsInTransaction(db, cfg, [...future.map((r) => r.t.getTime()), ...nextDay]);
    const moved = rowCount ?? 0;
    if (moved) await db.query('INSERT INTO logs SELECT * FROM logd_upgrade_future');
    await db.query(schemaSql);
    await db.query('COMMIT');
    return moved;
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
