/**
 * Search indexes on closed partitions. COPY writes mostly into the
 * partition of now, which keeps only the btrees ingest needs; once a
 * partition's range has ended, a persister builds GIN indexes on each of
 * its tables in the background: pg_trgm on `message` (serves `q`, an ILIKE
 * substring) and jsonb_path_ops on `log_data` (serves `data`, containment).
 * The planner uses them per partition with no change to the search query,
 * and scans only the partitions that have none yet.
 *
 * A pass builds at most one index, with CREATE INDEX CONCURRENTLY (reads and
 * the occasional late COPY into that partition go on), and only while the
 * stream's backlog is under storage.search_index_max_backlog: a trigram
 * index costs far more CPU per row than loading the row did, and must not
 * starve the persister (which also ends a build under way when the backlog
 * passes that limit, src/persist/main.ts). One node builds at a time (a session advisory
 * lock). A retention drop of the partition cancels its build rather than
 * wait for it. A build cut short (a crash, a stop, a cancel) leaves an
 * invalid index, which no query uses; the next pass drops it and builds
 * again (or it goes with its table).
 */
import type pg from 'pg';
import type { Config } from '../config';
import { listPartitions, type Partition } from './partitions';

/** Arbitrary, fixed: the session advisory lock of the node that builds. */
const BUILD_LOCK = 4_812_990_120;

/** The search indexes of a table: name suffix, definition, and the extension it needs. */
export const SEARCH_INDEXES: readonly { suffix: string; using: string; extension?: string }[] = [
  { suffix: 'message_trgm', using: 'gin (message gin_trgm_ops)', extension: 'pg_trgm' },
  { suffix: 'data_gin', using: 'gin (log_data jsonb_path_ops)' },
];

export type SearchState = 'open' | 'built' | 'building' | 'pending';

const indexName = (table: string, suffix: string): string => `${table}_${suffix}`;

/** The tables that hold a partition's rows: its level leaves, or itself. */
const tablesOf = (p: Partition): string[] => (p.leaves.length ? p.leaves.map((l) => l.name) : [p.name]);

/** The search indexes that exist, by name: whether valid. */
async function existing(db: pg.ClientBase | pg.Pool): Promise<Map<string, boolean>> {
  const { rows } = await db.query<{ name: string; valid: boolean }>(
    'SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname ~ $1',
    [`^logs_.*_(${SEARCH_INDEXES.map((x) => x.suffix).join('|')})$`],
  );
  return new Map(rows.map((r) => [r.name, r.valid]));
}

/** The search indexes this database can have: those whose extension is installed (schema.sql creates pg_trgm where it may). */
async function wanted(db: pg.ClientBase | pg.Pool): Promise<typeof SEARCH_INDEXES> {
  const { rows } = await db.query<{ extname: string }>('SELECT extname FROM pg_extension');
  const installed = new Set(rows.map((r) => r.extname));
  return SEARCH_INDEXES.filter((x) => !x.extension || installed.has(x.extension));
}

/** Each partition's state: open (its range has not ended), built, building (an index is being made) or pending. */
export async function searchStates(db: pg.ClientBase | pg.Pool, partitions: Partition[], now: number): Promise<Map<Partition, SearchState>> {
  const indexes = await existing(db);
  const kinds = await wanted(db);
  const { rows } = await db.query<{ name: string }>(
    'SELECT c.relname AS name FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid',
  );
  const building = new Set(rows.map((r) => r.name));
  const out = new Map<Partition, SearchState>();
  for (const p of partitions) {
    const tables = tablesOf(p);
    const names = tables.flatMap((t) => kinds.map((x) => indexName(t, x.suffix)));
    if (p.to > now) out.set(p, 'open');
    else if (names.every((n) => indexes.get(n) === true)) out.set(p, 'built');
    else if (tables.some((t) => building.has(t))) out.set(p, 'building');
    else out.set(p, 'pending');
  }
  return out;
}

export interface BuildResult {
  /** the index built, if any */
  built?: string;
  /** invalid indexes dropped before it */
  dropped: string[];
  /** why nothing was built, when nothing was */
  skipped?: 'disabled' | 'backlog' | 'other node' | 'nothing to build' | 'cancelled';
}

/**
 * One builder pass at `now`: drops invalid search indexes left by a build
 * cut short, then builds the first missing one, newest closed partition
 * first (recent logs are searched most). `backlog`: the stream's unpersisted
 * logs. `db` must not be in a transaction (CREATE INDEX CONCURRENTLY).
 */
export async function buildSearchIndex(db: pg.ClientBase, cfg: Config, now: number, backlog: number): Promise<BuildResult> {
  if (!cfg.storage.search_indexes) return { dropped: [], skipped: 'disabled' };
  if (backlog > cfg.storage.search_index_max_backlog) return { dropped: [], skipped: 'backlog' };
  const { rows } = await db.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1) AS got', [BUILD_LOCK]);
  if (!rows[0].got) return { dropped: [], skipped: 'other node' };
  try {
    const indexes = await existing(db);
    const dropped: string[] = [];
    for (const [name, valid] of indexes) {
      if (valid) continue;
      await db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${db.escapeIdentifier(name)}`);
      dropped.push(name);
      indexes.delete(name);
    }
    const kinds = await wanted(db);
    const closed = (await listPartitions(db)).filter((p) => p.to <= now).reverse();
    for (const p of closed) {
      for (const table of tablesOf(p)) {
        for (const x of kinds) {
          const name = indexName(table, x.suffix);
          if (indexes.has(name)) continue;
          try {
            await db.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${db.escapeIdentifier(name)} ON ${db.escapeIdentifier(table)} USING ${x.using}`);
          } catch (err) {
            const code = (err as { code?: string }).code;
            // undefined_table: retention dropped the partition meanwhile
            if (code === '42P01') return { dropped, skipped: 'nothing to build' };
            // query_canceled: a retention drop of this partition cancelled the build (maintenance.ts, dropUnit)
            if (code === '57014') return { dropped, skipped: 'cancelled' };
            throw err;
          }
          return { built: name, dropped };
        }
      }
    }
    return { dropped, skipped: 'nothing to build' };
  } finally {
    await db.query('SELECT pg_advisory_unlock($1)', [BUILD_LOCK]);
  }
}
