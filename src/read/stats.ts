/** GET /api/stats from the rollups the persister maintains (never a scan of `logs`). */
import { LOG_LEVELS } from '../model/levels';
import { SQL } from '../sql';
import type { ReadPool } from './db';

/**
 * `{"total_logs","logs_by_level","recent_devices","top_devices"}` (and
 * "since" for a window). logs_by_level lists every level, 0 included, then
 * any other level stored (rows written by hand).
 */
export async function stats(db: ReadPool, since: string | undefined): Promise<string> {
  const rows = await db.rows(since === undefined ? SQL.stats : SQL.statsSince, since === undefined ? [] : [since]);
  const levels = new Map<string, number>(LOG_LEVELS.map((l) => [l, 0]));
  const devices: { device_id: string; count: number }[] = [];
  let total = 0;
  for (const [kind, key, n] of rows) {
    const count = Number(n);
    if (kind === 'level') {
      levels.set(key!, count);
      total += count;
    } else {
      devices.push({ device_id: key!, count });
    }
  }
  devices.sort((a, b) => b.count - a.count || (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
  return JSON.stringify({
    ...(since === undefined ? {} : { since }),
    total_logs: total,
    logs_by_level: Object.fromEntries(levels),
    recent_devices: devices.map((d) => d.device_id),
    top_devices: devices,
  });
}
