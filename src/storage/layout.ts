/**
 * The storage layout, as pure functions of the configuration: `logs` is
 * range-partitioned on created_at in partitions of storage.partition_hours
 * (UTC, aligned to midnight); when retention.by_level gives some levels
 * their own retention, each partition is itself list-partitioned on
 * log_level, one leaf per distinct retention and a DEFAULT leaf for the
 * levels on retention.days (and any other level), so a level expires by
 * dropping its leaf. The door refuses timestamps outside the window the
 * retention keeps (acceptWindow).
 */
import type { Config } from '../config';
import { LOG_LEVELS } from '../model/levels';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

/** Retention of a level, in days: its retention.by_level override, else retention.days (also for a level logd does not know). */
export function retentionDays(cfg: Config, level: string): number {
  return (cfg.retention.by_level as Record<string, number | undefined>)[level] ?? cfg.retention.days;
}

/** Longest retention of any level, in days. */
export const maxRetentionDays = (cfg: Config): number => Math.max(cfg.retention.days, ...Object.values(cfg.retention.by_level));

/** The levels of one leaf; `levels` undefined is the DEFAULT leaf (every level no other leaf lists). */
export interface LevelGroup {
  suffix: string;
  levels?: string[];
}

/**
 * The leaves of a new partition: none (one plain partition) when every level
 * has retention.days; else one per distinct overriding retention, in level
 * order, plus the DEFAULT leaf `rest`.
 */
export function levelGroups(cfg: Config): LevelGroup[] {
  const byDays = new Map<number, string[]>();
  for (const level of LOG_LEVELS) {
    const days = retentionDays(cfg, level);
    if (days === cfg.retention.days) continue;
    const list = byDays.get(days);
    if (list) list.push(level);
    else byDays.set(days, [level]);
  }
  if (!byDays.size) return [];
  const groups: LevelGroup[] = [...byDays.values()].map((levels) => ({ suffix: levels.map((l) => l.toLowerCase()).join('_'), levels }));
  groups.push({ suffix: 'rest' });
  return groups;
}

/**
 * Retention of a leaf, in days, by the current configuration: the longest of
 * its levels' (a leaf made under an older by_level keeps every level it
 * holds that long). `levels` undefined with `siblings` given is a DEFAULT leaf
 * beside leaves listing `siblings`; with neither it is a plain partition.
 */
export function leafRetentionDays(cfg: Config, levels: string[] | undefined, siblings: string[] = []): number {
  if (levels) return Math.max(...levels.map((l) => retentionDays(cfg, l)));
  const rest = LOG_LEVELS.filter((l) => !siblings.includes(l));
  return Math.max(cfg.retention.days, ...rest.map((l) => retentionDays(cfg, l)));
}

/** The UTC-aligned partition [from, to) holding epoch ms `t`, for storage.partition_hours. */
export function partitionRange(cfg: Config, t: number): { from: number; to: number } {
  const width = cfg.storage.partition_hours * HOUR_MS;
  const day = Math.floor(t / DAY_MS) * DAY_MS;
  const from = day + Math.floor((t - day) / width) * width;
  // a width that does not divide 24 h ends the day's last partition at midnight
  return { from, to: Math.min(from + width, day + DAY_MS) };
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** Name of the partition starting at epoch ms `from`: logs_YYYYMMDD_HH (a leaf adds _<group>). */
export function partitionName(from: number): string {
  const d = new Date(from);
  return `logs_${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}_${pad(d.getUTCHours())}`;
}

/** The timestamps the door accepts for each level. */
export interface AcceptWindow {
  /** why a log of `level` at epoch ms `t` is refused, or undefined when it is accepted */
  refuses(level: string, t: number): string | undefined;
}

/**
 * Accepted: from the level's retention ago (older logs would be stored into
 * a partition the retention drops) to ingest.max_future_s ahead of `now`.
 */
export function acceptWindow(cfg: Config, now: number): AcceptWindow {
  const newest = now + cfg.ingest.max_future_s * 1000;
  return {
    refuses(level, t) {
      const days = retentionDays(cfg, level);
      const oldest = now - days * DAY_MS;
      if (t >= oldest && t <= newest) return undefined;
      const rule = (cfg.retention.by_level as Record<string, number | undefined>)[level] === undefined ? 'retention.days' : `retention.by_level.${level}`;
      return `Timestamp should be inside the accepted window for ${level}: from ${new Date(oldest).toISOString()} (${rule} = ${days} days ago) to ${new Date(newest).toISOString()} (ingest.max_future_s = ${cfg.ingest.max_future_s} ahead)`;
    },
  };
}
