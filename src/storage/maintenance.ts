/**
 * Storage maintenance, run by every persister each storage.maintenance_interval_s:
 * creates the partitions of the coming day ahead, drops what retention
 * expired, then, while `logs` is over retention.max_bytes, its oldest
 * partitions. One node at a time drops (a session advisory lock); the
 * others only report.
 *
 * A drop is one transaction: lock the partition against new rows, take its
 * rows out of the statistics rollups (for a whole time range from the
 * hourly rollups, which count exactly its rows; for a level leaf by counting
 * the leaf), record the drop, DROP TABLE. A failure leaves rows and rollups
 * as they were. Lock waits are bounded (DROP_LOCK_TIMEOUT), so a drop that
 * would queue behind a long read gives up until the next pass instead of
 * stalling COPY behind it.
 *
 * Retention never drops what the stream may still load into: a partition
 * [from, to) of retention R can receive a log accepted until to + R (the
 * door refuses older timestamps), so it goes only once every stream entry
 * received before to + R is persisted (the stream's first entry is newer).
 */
import pg from 'pg';
import type { Config } from '../config';
import { pgConfig } from '../connections';
import { SQL } from '../sql';
import { DAY_MS, HOUR_MS, leafRetentionDays } from './layout';
import { createPartitions, listPartitions, type Leaf, type Partition } from './partitions';

/** Arbitrary, fixed: the session advisory lock of the node that drops. */
const DROP_LOCK = 4_812_990_119;
const DROP_LOCK_TIMEOUT = '2s';

export type DropReason = 'retention' | 'budget';

/** One partition, or one level leaf of it, that may expire on its own. */
export interface Unit {
  partition: Partition;
  /** undefined: the whole partition */
  leaf?: Leaf;
  /** its retention, in days, by the current configuration */
  days: number;
}

/** The units that expire on their own: a plain partition, or each leaf of a partitioned one. */
export function units(cfg: Config, partitions: Partition[]): Unit[] {
  const out: Unit[] = [];
  for (const p of partitions) {
    if (!p.leaves.length) {
      out.push({ partition: p, days: leafRetentionDays(cfg, undefined) });
      continue;
    }
    const listed = p.leaves.flatMap((l) => l.levels ?? []);
    for (const leaf of p.leaves) out.push({ partition: p, leaf, days: leafRetentionDays(cfg, leaf.levels, listed) });
  }
  return out;
}

/** When a unit expires: its end plus its retention. */
export const expiry = (u: Unit): number => u.partition.to + u.days * DAY_MS;

export interface DropRecord {
  partition: string;
  from: number;
  to: number;
  levels?: string;
  rows: number;
  bytes: number;
  reason: DropReason;
  retentionDays: number;
  at: number;
}

/** What `logd storage`, `logd status`, /metrics and /health show. */
export interface StorageState {
  partitions: number;
  /** start of the oldest partition and end of the newest, epoch ms (null: none, or the legacy partition's open start) */
  oldest: number | null;
  newest: number | null;
  rows: number;
  bytes: number;
  lastDrop?: DropRecord;
  /** when the next partition expires by retention, epoch ms */
  nextDrop: number | null;
  /** set while the disk budget, not retention, decides what is kept: a budget drop took logs still inside their retention */
  budgetDropping?: string;
}

const ms = (d: Date | null): number | null => (d ? d.getTime() : null);

async function lastDrops(db: pg.ClientBase): Promise<{ last?: DropRecord; lastBudget?: DropRecord }> {
  const pick = async (where: string): Promise<DropRecord | undefined> => {
    const { rows } = await db.query<{ partition: string; range_from: Date | null; range_to: Date; levels: string | null; rows: string; bytes: string; reason: DropReason; retention_days: number; dropped_at: Date }>(
      `SELECT partition, range_from, range_to, levels, rows, bytes, reason, retention_days, dropped_at FROM logd_partition_drops ${where} ORDER BY id DESC LIMIT 1`,
    );
    const r = rows[0];
    return r && {
      partition: r.partition, from: ms(r.range_from) ?? -Infinity, to: r.range_to.getTime(), levels: r.levels ?? undefined,
      rows: Number(r.rows), bytes: Number(r.bytes), reason: r.reason, retentionDays: r.retention_days, at: r.dropped_at.getTime(),
    };
  };
  return { last: await pick(''), lastBudget: await pick("WHERE reason = 'budget'") };
}

/** The state of storage as PostgreSQL has it now. */
export async function storageState(db: pg.ClientBase, cfg: Config, now: number, partitions?: Partition[]): Promise<StorageState> {
  const all = partitions ?? await listPartitions(db);
  const { rows } = await db.query<{ n: string }>('SELECT coalesce(sum(n), 0)::text AS n FROM logd_counts_by_level');
  const { last, lastBudget } = await lastDrops(db);
  const next = units(cfg, all).map(expiry).filter((t) => Number.isFinite(t));
  const state: StorageState = {
    partitions: all.length,
    oldest: all.length && Number.isFinite(all[0].from) ? all[0].from : null,
    newest: all.length ? all[all.length - 1].to : null,
    rows: Number(rows[0].n),
    bytes: all.reduce((s, p) => s + p.bytes, 0),
    lastDrop: last,
    nextDrop: next.length ? Math.min(...next) : null,
  };
  if (lastBudget && now < lastBudget.to + lastBudget.retentionDays * DAY_MS) {
    state.budgetDropping = `retention.max_bytes (${cfg.retention.max_bytes} bytes) dropped ${lastBudget.partition} (${lastBudget.rows} logs up to ${new Date(lastBudget.to).toISOString()}) at ${new Date(lastBudget.at).toISOString()}, inside its ${lastBudget.retentionDays}-day retention`;
  }
  return state;
}

const tsParam = (t: number): string | null => (Number.isFinite(t) ? new Date(t).toISOString() : null);

/**
 * Drops one unit in one transaction, rollups adjusted; the record of the
 * drop, or undefined when a lock was not granted in time or the drop lost a
 * deadlock (next pass).
 */
export async function dropUnit(db: pg.ClientBase, u: Unit, reason: DropReason): Promise<DropRecord | undefined> {
  const table = u.leaf?.name ?? u.partition.name;
  const id = db.escapeIdentifier(table);
  const from = tsParam(u.partition.from);
  const to = tsParam(u.partition.to)!;
  await db.query('BEGIN');
  try {
    await db.query(`SET LOCAL lock_timeout = '${DROP_LOCK_TIMEOUT}'`);
    // a search index being built on the table would hold the drop off until it ends: retention goes first
    await db.query(
      'SELECT pg_cancel_backend(pid) FROM pg_stat_progress_create_index WHERE relid IN (SELECT relid FROM pg_partition_tree($1::regclass))',
      [table],
    );
    // no new rows while they are counted; the loads already in it commit first
    await db.query(`LOCK TABLE ${id} IN SHARE MODE`);
    let rows: number;
    if (!u.leaf) {
      rows = Number((await db.query<{ rows: string }>(SQL.dropRangeCounts, [from, to])).rows[0].rows);
    } else {
      const { rows: [c] } = await db.query<{ rows: string; devices: string[] | null; levels: string[]; buckets: string[]; counts: string[] }>(
        SQL.leafCounts.replaceAll('{leaf}', id),
      );
      rows = Number(c.rows);
      if (c.devices) await db.query(SQL.addCounts, [c.devices, c.levels, c.buckets, c.counts]);
    }
    await db.query(SQL.removeEmptyCounts, [from, to]);
    const bytes = u.leaf?.bytes ?? u.partition.bytes;
    const levels = u.leaf ? (u.leaf.levels?.join(',') ?? 'DEFAULT') : null;
    await db.query(
      'INSERT INTO logd_partition_drops (partition, range_from, range_to, levels, rows, bytes, reason, retention_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [table, from, to, levels, rows, bytes, reason, u.days],
    );
    await db.query(`DROP TABLE ${id}`);
    await db.query('COMMIT');
    return { partition: table, from: u.partition.from, to: u.partition.to, levels: levels ?? undefined, rows, bytes, reason, retentionDays: u.days, at: Date.now() };
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    // lock_not_available; deadlock_detected: a COPY routing rows into the table held the parent (it locks the
    // parent, then the partition; the drop holds the partition and then needs the parent). Either way: next pass.
    const code = (err as { code?: string }).code;
    if (code === '55P03' || code === '40P01') return undefined;
    throw err;
  }
}

export interface PassResult {
  created: number;
  dropped: DropRecord[];
  state: StorageState;
}

/**
 * One maintenance pass at time `now` (epoch ms): partitions ahead, retention
 * drops, budget drops. `streamFrom` is the receive time (epoch ms) of the
 * stream's first entry, or undefined when the stream is empty.
 */
export async function maintain(cfg: Config, now: number, streamFrom: number | undefined, db?: pg.Client): Promise<PassResult> {
  const client = db ?? new pg.Client(pgConfig(cfg));
  if (!db) await client.connect();
  try {
    // this hour to a day ahead; any other time gets its partition when a log needs it (Partitions.ensure)
    const times: number[] = [];
    for (let t = Math.floor(now / HOUR_MS) * HOUR_MS; t <= now + DAY_MS; t += HOUR_MS) times.push(t);
    const made = await createPartitions(client, cfg, times);
    let { partitions } = made;
    const dropped: DropRecord[] = [];
    const { rows } = await client.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1) AS got', [DROP_LOCK]);
    if (rows[0].got) {
      try {
        const safeBefore = Math.min(now, streamFrom ?? now);
        dropped.push(...await dropExpired(client, cfg, partitions, safeBefore));
        // sizes as they are now (partitions made in this pass were listed empty)
        partitions = await listPartitions(client);
        dropped.push(...await dropOverBudget(client, cfg, partitions, now));
        if (dropped.length) partitions = await listPartitions(client);
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [DROP_LOCK]);
      }
    }
    return { created: made.created, dropped, state: await storageState(client, cfg, now, partitions) };
  } finally {
    if (!db) await client.end();
  }
}

/** Drops every unit whose retention ended before `safeBefore`: a whole partition when all its leaves expired, else the leaves alone. */
async function dropExpired(db: pg.ClientBase, cfg: Config, partitions: Partition[], safeBefore: number): Promise<DropRecord[]> {
  const out: DropRecord[] = [];
  const all = units(cfg, partitions);
  for (const p of partitions) {
    const mine = all.filter((u) => u.partition === p);
    const expired = mine.filter((u) => expiry(u) <= safeBefore);
    if (!expired.length) continue;
    const whole = expired.length === mine.length
      ? [{ partition: p, days: Math.max(...mine.map((u) => u.days)) }]
      : expired;
    for (const u of whole) {
      const r = await dropUnit(db, u, 'retention');
      if (r) out.push(r);
    }
  }
  return out;
}

/**
 * While the partitions of `logs` hold more than retention.max_bytes, drops
 * the oldest whole partition; never the one `now` falls in, nor a later one.
 */
async function dropOverBudget(db: pg.ClientBase, cfg: Config, partitions: Partition[], now: number): Promise<DropRecord[]> {
  const budget = cfg.retention.max_bytes;
  if (!budget) return [];
  const out: DropRecord[] = [];
  let total = partitions.reduce((s, p) => s + p.bytes, 0);
  const all = units(cfg, partitions);
  for (const p of partitions) {
    if (total <= budget || p.to > now) break;
    const r = await dropUnit(db, { partition: p, days: Math.max(...all.filter((u) => u.partition === p).map((u) => u.days)) }, 'budget');
    if (!r) break;
    out.push(r);
    total -= p.bytes;
  }
  return out;
}
