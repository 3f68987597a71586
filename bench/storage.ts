/**
 * COPY ceilings of the storage layouts of `logs` (BENCHMARKS.md, "Storage
 * layout: COPY ceilings (issue 12)"), in one run on one private PostgreSQL.
 *
 *   npm run bench:storage     # BENCH_ROWS=400000 BENCH_RUNS=7
 *                             # BENCH_LAYOUTS=<regex>: only the layouts whose key matches
 *                             # BENCH_QUIET_WAIT_S=300: waits for a quiet machine before the runs, in all
 *
 * PostgreSQL is the ingest bench's (bench/lib/stack.ts: stock settings,
 * fsync on, data directory on /dev/shm when it exists). Each layout lives in
 * a schema of its own, loaded over a connection of its own whose
 * search_path starts with that schema. The rows are the ingest bench's COPY
 * ceiling rows (bench/lib/gen.ts: 100-log frames encoded by logd's own
 * copyRow), the same for every layout, one COPY statement per
 * persister.batch_max_rows rows (the configuration `logd serve` loads), each
 * its own transaction. A batch is one instant of live traffic; the batches
 * are spread evenly over the current UTC day.
 *
 * A run starts from empty layouts (every schema dropped and made again, the
 * partitions made before the clock starts as maintenance makes them ahead,
 * then CHECKPOINT), then loads the batches in turn, each batch into every
 * layout, the layouts' order rotated at each batch: the machine's drifting
 * load spreads over all of them. Per layout and run: rows per second of
 * COPY wall time, and the CPU per row of all PostgreSQL processes and of the
 * COPYing backend alone (/proc); medians over the runs.
 */
import { readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { loadConfig, type Config } from '../src/config';
import { COPY_COLUMNS } from '../src/queue/frame';
import { DAY_MS, levelGroups, partitionName, partitionRange } from '../src/storage/layout';
import { createPartitions } from '../src/storage/partitions';
import { frames } from './lib/gen';
import { backendCpuMs, median, ROOT } from './lib/pg';
import { CLK_TCK, descendants, machineCpu, QUIET_CORES, QuietGate } from './lib/proc';
import { benchPostgres, installReaper, logdConfig, stopAll } from './lib/stack';

const ROWS = Number(process.env.BENCH_ROWS ?? 400_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const ONLY = new RegExp(process.env.BENCH_LAYOUTS ?? '');
/** Before each run, wait (at most 20 s a run, this in all) while other processes use more than QUIET_CORES. */
const QUIET_WAIT_S = Number(process.env.BENCH_QUIET_WAIT_S ?? 300);
const PER_FRAME = 100;

/** The statements of a schema file that make `logs` and its indexes (comments stripped). */
function logsDdl(sql: string): string[] {
  const ddl = sql.replace(/--.*$/gm, '').split(';').map((s) => s.trim())
    .filter((s) => /^CREATE TABLE IF NOT EXISTS logs \(/.test(s) || /^CREATE INDEX IF NOT EXISTS \w+ ON logs /.test(s));
  if (!/^CREATE TABLE/.test(ddl[0] ?? '')) throw new Error('no CREATE TABLE IF NOT EXISTS logs in the schema file');
  return ddl;
}

interface Layout {
  key: string;
  title: string;
  /** makes the layout in an empty schema (first on the connection's search_path), ready for rows at `times` (epoch ms); returns the table to COPY into */
  make(db: pg.Client, times: number[]): Promise<string>;
}

const NEW_DDL = logsDdl(readFileSync(path.join(ROOT, 'schema.sql'), 'utf8'));
/** The release before partitioning (commit 24cfe88's schema.sql). */
const UNPARTITIONED_DDL = logsDdl(readFileSync(path.join(ROOT, 'test', 'fixtures', 'schema-unpartitioned.sql'), 'utf8'));

/** `logs` as `ddl` makes it (schema.sql's by default), with the partitions createPartitions makes for `cfg`. */
const partitioned = (cfg: Config, ddl = NEW_DDL) => async (db: pg.Client, times: number[]): Promise<string> => {
  for (const s of ddl) await db.query(s);
  await createPartitions(db, cfg, times);
  return 'logs';
};

/** `ddl` with BRIN (created_at) in place of logs_created_idx. */
function brinForCreated(ddl: string[]): string[] {
  const i = ddl.findIndex((s) => / logs_created_idx ON logs /.test(s));
  if (i < 0) throw new Error('schema.sql makes no logs_created_idx');
  return ddl.map((s, j) => (j === i ? 'CREATE INDEX logs_created_brin_idx ON logs USING BRIN (created_at)' : s));
}

/** `logs` list-partitioned by cfg's level groups first, each group range-partitioned by cfg's partition width. */
const levelsFirst = (cfg: Config) => async (db: pg.Client, times: number[]): Promise<string> => {
  const [table, ...indexes] = NEW_DDL;
  if (!/PARTITION BY RANGE \(created_at\)$/.test(table)) throw new Error('schema.sql no longer range-partitions logs on created_at');
  await db.query(table.replace(/PARTITION BY RANGE \(created_at\)$/, 'PARTITION BY LIST (log_level)'));
  for (const s of indexes) await db.query(s);
  const ranges = new Map(times.map((t) => partitionRange(cfg, t)).map((r) => [r.from, r.to]));
  for (const g of levelGroups(cfg)) {
    const group = `logs_${g.suffix}`;
    const values = g.levels ? `FOR VALUES IN (${g.levels.map((l) => db.escapeLiteral(l)).join(', ')})` : 'DEFAULT';
    await db.query(`CREATE TABLE ${group} PARTITION OF logs ${values} PARTITION BY RANGE (created_at)`);
    for (const [from, to] of ranges) {
      await db.query(`CREATE TABLE ${partitionName(from)}_${g.suffix} PARTITION OF ${group} FOR VALUES FROM ('${new Date(from).toISOString()}') TO ('${new Date(to).toISOString()}')`);
    }
  }
  return 'logs';
};

const ALL_LAYOUTS: Layout[] = [
  {
    key: 'unpartitioned',
    title: '(a) previous release (24cfe88): unpartitioned, `id BIGSERIAL PRIMARY KEY`, logs_device_created_idx, logs_created_idx',
    async make(db) {
      for (const s of UNPARTITIONED_DDL) await db.query(s);
      return 'logs';
    },
  },
  {
    key: 'plain',
    title: '(e) unpartitioned, no primary key, the same two btrees: `CREATE TABLE … (LIKE logs INCLUDING ALL)`, the table `npm run bench` measures its COPY ceiling on',
    async make(db) {
      for (const s of NEW_DDL) await db.query(s);
      await db.query('CREATE TABLE bench_storage_plain (LIKE logs INCLUDING ALL)');
      return 'bench_storage_plain';
    },
  },
  {
    key: 'daily',
    title: '(b) schema.sql: range partitions of one day (default storage.partition_hours = 24), no primary key, the two btrees per partition',
    make: partitioned(loadConfig(undefined, {})),
  },
  {
    key: 'daily_levels',
    title: '(c) as (b), with retention.by_level DEBUG = 3, ERROR = 90: each day list-partitioned into leaves debug, error, rest',
    make: partitioned(loadConfig(undefined, { LOGD_RETENTION_BY_LEVEL: 'DEBUG=3,ERROR=90' })),
  },
  {
    key: 'hourly',
    title: '(d) as (b), storage.partition_hours = 1: partitions of one hour',
    make: partitioned(loadConfig(undefined, { LOGD_STORAGE_PARTITION_HOURS: '1' })),
  },
  {
    key: 'daily_brin',
    title: '(f) alternative, not schema.sql: as (b) with BRIN (created_at) instead of logs_created_idx (an index that cannot give the newest-first order)',
    make: partitioned(loadConfig(undefined, {}), brinForCreated(NEW_DDL)),
  },
  {
    key: 'levels_first',
    title: '(g) alternative, not what createPartitions makes: level groups first (LIST: debug, error, rest), each range-partitioned by day, the two btrees per leaf',
    make: levelsFirst(loadConfig(undefined, { LOGD_RETENTION_BY_LEVEL: 'DEBUG=3,ERROR=90' })),
  },
];
const LAYOUTS = ALL_LAYOUTS.filter((l) => ONLY.test(l.key));

/** One layout in one run: sums over its batches. */
interface Run {
  layout: string;
  rows: number;
  seconds: number;
  backendMs: number;
  /** CPU ticks of all PostgreSQL processes, and of the machine's processes that are neither PostgreSQL's nor this one's */
  pgTicks: number;
  othersTicks: number;
  /** tables holding rows after the run (leaves) and the size of their indexes */
  leaves: number;
  indexBytes: number;
}

/** A connection of its own per layout, whose schema comes first on its search_path. */
interface Slot {
  layout: Layout;
  db: pg.Client;
  backend: number;
  table: string;
  run: Run;
}

/** CPU ticks of each PostgreSQL process (/proc). */
const pgTicks = (pgPid: number): Map<number, number> => new Map(descendants([pgPid]).map((p) => [p.pid, p.cpu]));
/** CPU used between two readings by the processes seen in the second (one that exited in between is not counted). */
const ticksBetween = (a: Map<number, number>, b: Map<number, number>): number => [...b].reduce((sum, [pid, t]) => sum + t - (a.get(pid) ?? 0), 0);
const selfTicks = (): number => {
  const u = process.cpuUsage();
  return ((u.user + u.system) / 1e6) * CLK_TCK;
};

/** Drops and makes again each slot's schema and layout, then CHECKPOINT: every run starts from empty tables. */
async function reset(slots: Slot[], times: number[]): Promise<void> {
  for (const s of slots) {
    await s.db.query(`DROP SCHEMA IF EXISTS ${s.layout.key} CASCADE`);
    await s.db.query(`CREATE SCHEMA ${s.layout.key}`);
    s.table = await s.layout.make(s.db, times);
    s.run = { layout: s.layout.key, rows: 0, seconds: 0, backendMs: 0, pgTicks: 0, othersTicks: 0, leaves: 0, indexBytes: 0 };
  }
  await slots[0].db.query('CHECKPOINT');
}

/** COPY of one batch into one slot, timed. */
async function copyBatch(s: Slot, pgPid: number, batch: string[]): Promise<void> {
  const p0 = pgTicks(pgPid), m0 = machineCpu().busy, n0 = selfTicks(), b0 = backendCpuMs(s.backend);
  const t0 = performance.now();
  await pipeline(Readable.from(batch), s.db.query(copyFrom(`COPY ${s.table} (${COPY_COLUMNS.join(', ')}) FROM STDIN`)));
  s.run.seconds += (performance.now() - t0) / 1000;
  s.run.backendMs += backendCpuMs(s.backend) - b0;
  const pg = ticksBetween(p0, pgTicks(pgPid));
  s.run.pgTicks += pg;
  s.run.othersTicks += Math.max(0, machineCpu().busy - m0 - pg - (selfTicks() - n0));
  s.run.rows += batch.length * PER_FRAME;
}

async function finish(s: Slot): Promise<Run> {
  const { rows } = await s.db.query<{ n: string; leaves: string; index_bytes: string }>(
    `WITH leaf AS (SELECT relid FROM pg_partition_tree($1) WHERE isleaf UNION SELECT $1::regclass WHERE NOT EXISTS (SELECT FROM pg_partition_tree($1)))
     SELECT (SELECT count(*) FROM ${s.table}) AS n, count(*) AS leaves, sum(pg_indexes_size(relid)) AS index_bytes FROM leaf`, [s.table]);
  if (Number(rows[0].n) !== s.run.rows) throw new Error(`${s.layout.key}: ${rows[0].n} rows after the COPYs, ${s.run.rows} sent`);
  return { ...s.run, leaves: Number(rows[0].leaves), indexBytes: Number(rows[0].index_bytes) };
}

/** Where PostgreSQL keeps its data, on what (statfs: tmpfs or not), and how it flushes. */
async function dataDirectory(db: pg.Client): Promise<string> {
  const show = async (name: string): Promise<string> => (await db.query<Record<string, string>>(`SHOW ${name}`)).rows[0][name];
  const dir = await show('data_directory');
  const onTmpfs = statfsSync(dir).type === 0x01021994;
  return `data directory ${dir} (${onTmpfs ? 'tmpfs' : 'not tmpfs'}), fsync ${await show('fsync')}, synchronous_commit ${await show('synchronous_commit')}, shared_buffers ${await show('shared_buffers')}`;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  installReaper();
  const t0 = Date.now();
  const log = (s: string): void => { process.stderr.write(`[storage ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`); };
  const { batchRows } = logdConfig(ROOT, process.env, {});
  const framesPerBatch = Math.max(1, Math.floor(batchRows / PER_FRAME));
  const batchCount = Math.ceil(ROWS / (framesPerBatch * PER_FRAME));
  const day = Math.floor(Date.now() / DAY_MS) * DAY_MS;
  const starts = Array.from({ length: batchCount }, (_, b) => day + Math.floor((b * DAY_MS) / batchCount));
  const batches = starts.map((at, b) => frames(ROOT, `storage${b}`, framesPerBatch, PER_FRAME, at));
  // a frame is one millisecond after the one before it (gen.ts)
  const times = starts.flatMap((at) => [at, at + framesPerBatch - 1]);

  const server = await benchPostgres();
  const slots: Slot[] = [];
  try {
    for (const layout of LAYOUTS) {
      const db = new pg.Client({ host: '127.0.0.1', port: server.port, user: 'logd', database: 'logd' });
      await db.connect();
      await db.query(`SET search_path = ${layout.key}, public`);
      slots.push({ layout, db, backend: (db as unknown as { processID: number }).processID, table: '', run: undefined as unknown as Run });
    }
    const where = await dataDirectory(slots[0].db);
    log(`PostgreSQL: ${where}`);
    log(`${batchCount} batches of ${framesPerBatch * PER_FRAME} rows (persister.batch_max_rows ${batchRows}), ${RUNS} runs: ${LAYOUTS.map((l) => l.key).join(', ')}`);
    // unrecorded: the backends' caches and the server's first writes
    await reset(slots, times);
    for (const s of slots) await copyBatch(s, server.pid, batches[0]);
    const runs: Run[] = [];
    const gate = new QuietGate(QUIET_WAIT_S * 1000);
    for (let i = 0; i < RUNS; i++) {
      await reset(slots, times);
      const quiet = await gate.wait([process.pid]);
      if (quiet.others > QUIET_CORES) log(`run ${i + 1} starts with other processes using ${quiet.others.toFixed(2)} cores`);
      // batch by batch, the layouts' order rotated at each batch
      for (const [b, batch] of batches.entries()) {
        for (let k = 0; k < slots.length; k++) await copyBatch(slots[(b + k + i) % slots.length], server.pid, batch);
      }
      for (const s of slots) {
        const r = await finish(s);
        runs.push(r);
        log(`${r.layout} #${i + 1}: ${fmt(r.rows / r.seconds)} rows/s, PostgreSQL ${((r.pgTicks / CLK_TCK) * 1e6 / r.rows).toFixed(2)} µs CPU per row (backend ${((r.backendMs * 1e3) / r.rows).toFixed(2)}), others ${(r.othersTicks / CLK_TCK / r.seconds).toFixed(2)} cores`);
      }
    }
    const of = (key: string): Run[] => runs.filter((r) => r.layout === key);
    const rate = (r: Run): number => r.rows / r.seconds;
    const pgUs = (r: Run): number => ((r.pgTicks / CLK_TCK) * 1e6) / r.rows;
    const beUs = (r: Run): number => (r.backendMs * 1e3) / r.rows;
    /** median over the runs of a layout's figure divided by the reference layout's in the same run, with the range */
    const paired = (key: string, ref: string, fn: (r: Run) => number): string => {
      const base = of(ref);
      const xs = of(key).map((r, i) => fn(r) / fn(base[i]));
      return `${median(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
    };
    const first = LAYOUTS[0];
    const out: string[] = [];
    out.push(`${RUNS} runs, ${fmt(batchCount * framesPerBatch * PER_FRAME)} rows per layout and run (${batchCount} COPY statements of ${fmt(framesPerBatch * PER_FRAME)} rows, one per transaction), the layouts alternated batch by batch; ${os.availableParallelism()} cores; PostgreSQL: ${where}. Ratios: median over the runs of the layout's figure over ${first.key}'s in the same run (range).`);
    out.push('');
    out.push(`| layout | rows/s, median (min-max) | rows/s vs ${first.key} | COPYing backend CPU µs/row, median | vs ${first.key} | PostgreSQL CPU µs/row (all its processes), median | vs ${first.key} | tables holding the rows | their indexes | others (cores), median |`);
    out.push('|---|---|---|---|---|---|---|---|---|---|');
    for (const l of LAYOUTS) {
      const rs = of(l.key);
      const rates = rs.map(rate);
      out.push(`| ${l.title} | ${fmt(median(rates))} (${fmt(Math.min(...rates))}-${fmt(Math.max(...rates))}) | ${paired(l.key, first.key, rate)} `
        + `| ${median(rs.map(beUs)).toFixed(2)} | ${paired(l.key, first.key, beUs)} `
        + `| ${median(rs.map(pgUs)).toFixed(2)} | ${paired(l.key, first.key, pgUs)} `
        + `| ${rs[0].leaves} | ${(rs[0].indexBytes / 1024 / 1024).toFixed(1)} MB | ${median(rs.map((r) => r.othersTicks / CLK_TCK / r.seconds)).toFixed(2)} |`);
    }
    const ref = LAYOUTS.find((l) => l.key === 'daily');
    if (ref) {
      out.push('');
      out.push(`Against ${ref.key} in the same run:`);
      out.push('');
      out.push('| layout | rows/s | COPYing backend CPU per row | PostgreSQL CPU per row |');
      out.push('|---|---|---|---|');
      for (const l of LAYOUTS.filter((x) => x !== ref)) out.push(`| ${l.key} | ${paired(l.key, ref.key, rate)} | ${paired(l.key, ref.key, beUs)} | ${paired(l.key, ref.key, pgUs)} |`);
    }
    out.push('');
    out.push('Per run (rows/s; backend CPU µs/row):');
    out.push('');
    for (const l of LAYOUTS) out.push(`- ${l.key}: ${of(l.key).map((r) => `${fmt(rate(r))}; ${beUs(r).toFixed(2)}`).join(' | ')}`);
    process.stdout.write(`${out.join('\n')}\n`);
    log(`done in ${((Date.now() - t0) / 60_000).toFixed(1)} min`);
  } finally {
    for (const s of slots) await s.db.end().catch(() => undefined);
    await server.pool.end();
    await stopAll();
  }
}

main().catch(async (err) => {
  process.stderr.write(`bench:storage: ${(err as Error).stack ?? err}\n`);
  await stopAll().catch(() => undefined);
  process.exit(1);
});
