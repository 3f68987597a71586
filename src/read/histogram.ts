/**
 * GET /api/histogram: logs per time bucket over [since, until), per level
 * (or in total for one device), from the hourly rollups and at most half an
 * hour of logs at each end (SQL.histogram). Every bucket of the range is listed,
 * empty ones with 0, oldest first; the first and last count only their part
 * inside the range.
 */
import { LOG_LEVELS } from '../model/levels';
import { SQL } from '../sql';
import type { ReadPool } from './db';

/** The steps a histogram takes, in seconds: each divides a day, so buckets align to UTC midnight. */
export const HISTOGRAM_STEPS: Record<string, number> = { '1h': 3600, '2h': 7200, '3h': 10_800, '4h': 14_400, '6h': 21_600, '12h': 43_200, '1d': 86_400 };

/** At most this many buckets in one answer. */
export const MAX_BUCKETS = 1000;

/** The smallest step that gives at most `target` buckets over [since, until) (epoch ms). */
export function defaultStep(sinceMs: number, untilMs: number, target = 200): string {
  const steps = Object.entries(HISTOGRAM_STEPS);
  return (steps.find(([, s]) => bucketCount(sinceMs, untilMs, s) <= target) ?? steps[steps.length - 1])[0];
}

/** How many buckets of `step` seconds [since, until) (epoch ms) touches. */
export function bucketCount(sinceMs: number, untilMs: number, step: number): number {
  const ms = step * 1000;
  return Math.max(0, Math.ceil(untilMs / ms) - Math.floor(sinceMs / ms));
}

export interface Histogram {
  since: string;
  until: string;
  step: string;
  deviceId?: string;
}

/** `{"since","until","step","device_id"?,"buckets":[{"start","total","levels"?}]}`. */
export async function histogram(db: ReadPool, h: Histogram): Promise<string> {
  const step = HISTOGRAM_STEPS[h.step];
  const rows = await db.rows(SQL.histogram, [h.since, h.until, step, h.deviceId ?? null]);
  const ms = step * 1000;
  const first = Math.floor(Date.parse(h.since) / ms);
  const count = bucketCount(Date.parse(h.since), Date.parse(h.until), step);
  const totals = new Array<number>(count).fill(0);
  const levels = h.deviceId === undefined ? totals.map(() => new Map<string, number>(LOG_LEVELS.map((l) => [l, 0]))) : undefined;
  for (const [bucket, level, n] of rows) {
    const i = Number(bucket) / step - first;
    totals[i] += Number(n);
    if (levels && level !== null) levels[i].set(level, (levels[i].get(level) ?? 0) + Number(n));
  }
  const buckets = totals.map((total, i) => ({
    start: new Date((first + i) * ms).toISOString(),
    total,
    ...(levels ? { levels: Object.fromEntries(levels[i]) } : {}),
  }));
  return JSON.stringify({ since: h.since, until: h.until, step: h.step, ...(h.deviceId === undefined ? {} : { device_id: h.deviceId }), buckets });
}
