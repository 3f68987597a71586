/**
 * Partitions of `logs`: what exists (listPartitions) and creating what a
 * time needs (Partitions.ensure). A new partition is made as a table of its
 * own (its level leaves attached to it first) and then attached to `logs`:
 * ATTACH PARTITION takes only a SHARE UPDATE EXCLUSIVE lock on `logs`, so
 * neither COPY nor reads wait for it, where CREATE TABLE ... PARTITION OF
 * would take an ACCESS EXCLUSIVE one. Creation runs under a transaction
 * advisory lock, so logd nodes creating the same partition at once make it
 * once; a range is clipped to its existing neighbours, so a change of
 * storage.partition_hours (or the legacy partition's odd bound) never
 * makes overlapping ranges.
 */
import type pg from 'pg';
import type { Config } from '../config';
import { SQL } from '../sql';
import { levelGroups, partitionName, partitionRange } from './layout';

/** Arbitrary, fixed: the advisory lock key under which partitions are created. */
const CREATE_LOCK = 4_812_990_118;

/** A list partition by level of a time partition. */
export interface Leaf {
  name: string;
  /** the levels it holds; undefined: the DEFAULT leaf */
  levels?: string[];
  bytes: number;
}

/** A time partition of `logs`: [from, to) in epoch ms (from -Infinity for the legacy partition). */
export interface Partition {
  name: string;
  from: number;
  to: number;
  /** its level leaves; empty for a plain partition */
  leaves: Leaf[];
  /** size on disk, indexes and TOAST included (the sum of its leaves') */
  bytes: number;
}

interface Row {
  name: string;
  parent: string;
  depth: number;
  partitioned: boolean;
  bound: string;
  from_ms: number | null;
  to_ms: number | null;
  bytes: number;
}

/** The levels of a list bound ("FOR VALUES IN ('DEBUG', 'INFO')"); undefined for DEFAULT. */
function listLevels(bound: string): string[] | undefined {
  const m = /IN \((.*)\)/.exec(bound);
  return m ? m[1].split(',').map((v) => v.trim().replace(/^'|'$/g, '')) : undefined;
}

/** Every time partition of `logs`, oldest first. */
export async function listPartitions(db: pg.ClientBase | pg.Pool): Promise<Partition[]> {
  const { rows } = await db.query<Row>(SQL.listPartitions);
  const byName = new Map<string, Partition>();
  for (const r of rows) {
    if (r.depth === 1) byName.set(r.name, { name: r.name, from: r.from_ms ?? -Infinity, to: r.to_ms ?? Infinity, leaves: [], bytes: r.bytes });
    else {
      const p = byName.get(r.parent);
      if (!p) continue;
      p.leaves.push({ name: r.name, levels: listLevels(r.bound), bytes: r.bytes });
      p.bytes += r.bytes;
    }
  }
  return [...byName.values()].sort((a, b) => a.from - b.from);
}

const iso = (t: number): string => new Date(t).toISOString();

/** Creates the partition for epoch ms `t` unless one covers it; the caller holds CREATE_LOCK. */
async function create(client: pg.ClientBase, cfg: Config, existing: Partition[], t: number): Promise<Partition | undefined> {
  if (existing.some((p) => p.from <= t && t < p.to)) return undefined;
  let { from, to } = partitionRange(cfg, t);
  for (const p of existing) {
    if (p.to > from && p.to <= t) from = p.to;
    if (p.from < to && p.from > t) to = p.from;
  }
  const name = partitionName(from);
  const id = client.escapeIdentifier(name);
  const groups = levelGroups(cfg);
  await client.query(`CREATE TABLE ${id} (LIKE logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)${groups.length ? ' PARTITION BY LIST (log_level)' : ''}`);
  const leaves: Leaf[] = [];
  for (const g of groups) {
    const leaf = `${name}_${g.suffix}`;
    const values = g.levels ? `FOR VALUES IN (${g.levels.map((l) => client.escapeLiteral(l)).join(', ')})` : 'DEFAULT';
    await client.query(`CREATE TABLE ${client.escapeIdentifier(leaf)} PARTITION OF ${id} ${values}`);
    leaves.push({ name: leaf, levels: g.levels, bytes: 0 });
  }
  await client.query(`ALTER TABLE logs ATTACH PARTITION ${id} FOR VALUES FROM ('${iso(from)}') TO ('${iso(to)}')`);
  return { name, from, to, leaves, bytes: 0 };
}

/** Every partition after a creation, and how many of them it made. */
export interface Created {
  partitions: Partition[];
  created: number;
}

/** Creates the partitions holding these epoch ms times, inside the caller's transaction. */
export async function createPartitionsInTransaction(client: pg.ClientBase, cfg: Config, times: number[]): Promise<Created> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [CREATE_LOCK]);
  const partitions = await listPartitions(client);
  let created = 0;
  for (const t of [...times].sort((a, b) => a - b)) {
    const made = await create(client, cfg, partitions, t);
    if (made) {
      partitions.push(made);
      created++;
    }
  }
  partitions.sort((a, b) => a.from - b.from);
  return { partitions, created };
}

/** createPartitionsInTransaction in a transaction of its own. */
export async function createPartitions(client: pg.ClientBase, cfg: Config, times: number[]): Promise<Created> {
  await client.query('BEGIN');
  try {
    const made = await createPartitionsInTransaction(client, cfg, times);
    await client.query('COMMIT');
    return made;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Which partitions exist, as last seen, so that the persister asks PostgreSQL only about times none covers. */
export class Partitions {
  private known: { from: number; to: number }[] = [];

  constructor(private readonly cfg: Config) {}

  covers(t: number): boolean {
    return this.known.some((p) => p.from <= t && t < p.to);
  }

  /** Forgets what was seen (a partition may have been dropped since). */
  forget(): void {
    this.known = [];
  }

  /** Makes sure a partition holds each of these times (epoch ms). */
  async ensure(client: pg.ClientBase, times: number[]): Promise<void> {
    const missing = times.filter((t) => !this.covers(t));
    if (!missing.length) return;
    this.known = (await createPartitions(client, this.cfg, missing)).partitions.map(({ from, to }) => ({ from, to }));
  }
}
