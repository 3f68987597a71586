/** Checks that every statistics rollup equals COUNT(*) over `logs`. */
import type { Test } from 'tap';
import type { PostgresServer } from './services';

/** Each rollup table, and the GROUP BY over `logs` it must equal. */
const ROLLUPS: [string, string, string][] = [
  ['logd_counts_by_level', 'log_level, n', 'SELECT log_level, count(*) FROM logs GROUP BY 1'],
  ['logd_counts_by_device', 'device_id, n', 'SELECT device_id, count(*) FROM logs GROUP BY 1'],
  ['logd_hourly_by_level', 'bucket, log_level, n', "SELECT date_trunc('hour', created_at, 'UTC'), log_level, count(*) FROM logs GROUP BY 1, 2"],
  ['logd_hourly_by_device', 'bucket, device_id, n', "SELECT date_trunc('hour', created_at, 'UTC'), device_id, count(*) FROM logs GROUP BY 1, 2"],
  ['logd_daily_by_level', 'day, log_level, n', "SELECT date_trunc('day', created_at, 'UTC'), log_level, count(*) FROM logs GROUP BY 1, 2"],
  ['logd_daily_by_device', 'day, device_id, n', "SELECT date_trunc('day', created_at, 'UTC'), device_id, count(*) FROM logs GROUP BY 1, 2"],
];

/** One assertion per rollup: no row differs from COUNT(*) (a row of 0 counts as a difference). */
export async function assertRollupsExact(t: Test, pg: PostgresServer, when: string): Promise<void> {
  for (const [table, columns, truth] of ROLLUPS) {
    const diff = await pg.query(`(SELECT ${columns} FROM ${table} EXCEPT ${truth}) UNION ALL (${truth} EXCEPT SELECT ${columns} FROM ${table})`);
    t.same(diff, [], `${when}: ${table} equals COUNT(*) over logs`);
  }
}
