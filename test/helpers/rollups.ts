/** Checks that every statistics rollup equals COUNT(*) over `logs`, from one scan of `logs`. */
import type { Test } from 'tap';
import type { PostgresServer } from './services';

const DAY = "date_trunc('day', bucket, 'UTC')";

/** Each rollup table, its key columns, and the same grain over the counts per hour, level and device. */
const ROLLUPS: [string, string, string][] = [
  ['logd_counts_by_level', 'log_level', 'log_level'],
  ['logd_counts_by_device', 'device_id', 'device_id'],
  ['logd_hourly_by_level', 'bucket, log_level', 'bucket, log_level'],
  ['logd_hourly_by_device', 'bucket, device_id', 'bucket, device_id'],
  ['logd_daily_by_level', 'day, log_level', `${DAY}, log_level`],
  ['logd_daily_by_device', 'day, device_id', `${DAY}, device_id`],
];

/** One assertion per rollup: no row differs from COUNT(*) (a row of 0 counts as a difference). */
export async function assertRollupsExact(t: Test, pg: PostgresServer, when: string): Promise<void> {
  const diffs = ROLLUPS.map(([table, key, grain]) => {
    const truth = `SELECT ${grain}, sum(n)::bigint FROM truth GROUP BY ${grain}`;
    return `SELECT '${table}' AS rollup, d::text AS row FROM ((SELECT ${key}, n FROM ${table} EXCEPT ${truth}) UNION ALL (${truth} EXCEPT SELECT ${key}, n FROM ${table})) d`;
  });
  const rows = await pg.query<{ rollup: string; row: string }>(`WITH truth AS MATERIALIZED (
      SELECT date_trunc('hour', created_at, 'UTC') AS bucket, log_level, device_id, count(*) AS n FROM logs GROUP BY 1, 2, 3)
    ${diffs.join('\nUNION ALL\n')}`);
  for (const [table] of ROLLUPS) {
    t.same(rows.filter((r) => r.rollup === table).map((r) => r.row), [], `${when}: ${table} equals COUNT(*) over logs`);
  }
}
