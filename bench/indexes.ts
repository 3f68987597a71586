/**
 * Index sets of `logs` measured against each other (BENCHMARKS.md, "Index
 * sets"): what each costs COPY, and what each buys the read queries, on
 * an unpartitioned `logs` with a primary key (each partition of the
 * partitioned `logs` carries the same btrees).
 *
 *   npm run bench:indexes            # BENCH_BASE_ROWS=2000000 BENCH_COPY_ROWS=500000 BENCH_QUERY_ROWS=10000000
 *
 * 1. COPY: for each set, `logs` holds BENCH_BASE_ROWS rows with the set's
 *    indexes, then BENCH_COPY_ROWS newer rows are COPYed (twice, median).
 *    Then the persister's transaction with and without the rollup upsert.
 *    Rates are given per second of wall time and per CPU second of the
 *    PostgreSQL backend (autovacuum off, so GIN pending-list cleanup is paid
 *    there too): on cores shared with other work, the CPU figure is the one
 *    to compare.
 * 2. Reads: BENCH_QUERY_ROWS rows; each set's indexes are built in turn and
 *    the read queries (the real SQL files) timed directly in PostgreSQL.
 */
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SQL } from '../src/sql';
import { countParams } from '../src/persist/summary';
import { summarizeRows } from '../src/queue/frame';
import { cleanupAll } from '../test/helpers/services';
import { COPY_LOGS, copyRows, deviceName, generate, type DataShape } from './lib/data';
import { backendCpuMs, connect, median, quantile, schemaSql, startBenchPostgres, timed } from './lib/pg';

const BASE_ROWS = Number(process.env.BENCH_BASE_ROWS ?? 2_000_000);
const COPY_ROWS = Number(process.env.BENCH_COPY_ROWS ?? 500_000);
const QUERY_ROWS = Number(process.env.BENCH_QUERY_ROWS ?? 10_000_000);
const DEVICES = 1000;
/** 10M rows over 30 days: ~14,000 logs an hour, ~4 a second. */
const STEP_MS = (30 * 86_400_000) / 10_000_000;
const START_MS = Date.UTC(2026, 9, 1);

const DEV = 'CREATE INDEX logs_device_created_idx ON logs (device_id, created_at DESC, id DESC)';
const CREATED = 'CREATE INDEX logs_created_idx ON logs (created_at DESC, id DESC)';
const BRIN = 'CREATE INDEX logs_created_brin_idx ON logs USING BRIN (created_at)';
const GIN_DATA = 'CREATE INDEX logs_data_gin_idx ON logs USING GIN (log_data jsonb_path_ops)';
const TRGM = 'CREATE INDEX logs_message_trgm_idx ON logs USING GIN (message gin_trgm_ops)';

const SETS: [name: string, statements: string[]][] = [
  ['PK only', []],
  ['reference: (device_id, created_at), (log_level), (created_at), GIN(log_data)', [
    'CREATE INDEX ref_device ON logs (device_id, created_at DESC)', 'CREATE INDEX ref_level ON logs (log_level)',
    'CREATE INDEX ref_created ON logs (created_at DESC)', 'CREATE INDEX ref_data ON logs USING GIN (log_data)']],
  ['A: (device_id, created_at, id) + BRIN(created_at)', [DEV, BRIN]],
  ['B: (device_id, created_at, id) + (created_at, id)', [DEV, CREATED]],
  ['C: B + GIN(log_data jsonb_path_ops)', [DEV, CREATED, GIN_DATA]],
  ['D: B + GIN(message gin_trgm_ops)', [DEV, CREATED, TRGM]],
  ['E: B + both GINs', [DEV, CREATED, GIN_DATA, TRGM]],
];

const shape = (rows: number, offset = 0): DataShape => ({ rows, offset, devices: DEVICES, startMs: START_MS, stepMs: STEP_MS, seed: 42 });
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

/**
 * The table the index sets were compared on: `logs` unpartitioned, with a
 * primary key on id (schema.sql then adds the rollup tables beside it).
 */
const PLAIN_LOGS = `CREATE TABLE logs (
  id BIGSERIAL PRIMARY KEY, device_id VARCHAR(50) NOT NULL, log_level VARCHAR(20) NOT NULL, message TEXT, log_data JSONB,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), indexed_at TIMESTAMPTZ DEFAULT NOW())`;

async function resetTable(db: pg.Client): Promise<void> {
  await db.query('DROP TABLE IF EXISTS logs CASCADE');
  await db.query(PLAIN_LOGS);
  await db.query(schemaSql());
  // Only the primary key stays; each set adds its own.
  await db.query('DROP INDEX IF EXISTS logs_device_created_idx, logs_created_brin_idx, logs_created_idx');
  await db.query('ALTER TABLE logs SET (autovacuum_enabled = false)');
}

/** Wall and backend-CPU time of fn, in ms. */
async function costed(db: pg.Client, fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const pid = (db as unknown as { processID: number }).processID;
  const cpu0 = backendCpuMs(pid);
  const wall = await timed(fn);
  return { wall, cpu: backendCpuMs(pid) - cpu0 };
}

async function copyThroughput(db: pg.Client): Promise<void> {
  console.log(`\n## COPY: ${fmt(COPY_ROWS)} rows into a table of ${fmt(BASE_ROWS)} rows with the set's indexes\n`);
  console.log('| index set | index build (base) | COPY rows/s (wall) | COPY rows per backend CPU second | vs PK only (CPU) |');
  console.log('|---|---|---|---|---|');
  let pkOnly = 0;
  for (const [name, statements] of SETS) {
    await resetTable(db);
    await copyRows(db, shape(BASE_ROWS));
    const build = await timed(async () => { for (const s of statements) await db.query(s); });
    await db.query('VACUUM ANALYZE logs');
    const wall: number[] = [], cpu: number[] = [];
    for (let run = 0; run < 3; run++) {
      const t = await costed(db, () => copyRows(db, shape(COPY_ROWS, BASE_ROWS + run * COPY_ROWS)));
      wall.push(COPY_ROWS / (t.wall / 1000));
      cpu.push(COPY_ROWS / (t.cpu / 1000));
      await db.query('CHECKPOINT');
    }
    const rate = median(cpu);
    if (!statements.length) pkOnly = rate;
    console.log(`| ${name} | ${fmt(build)} ms | ${fmt(median(wall))} | ${fmt(rate)} | ${Math.round((100 * rate) / pkOnly)}% |`);
  }
}

/** The persister's transaction (COPY of a 20k-row batch, COMMIT), with and without the rollup upsert, on set B. */
async function rollupCost(db: pg.Client): Promise<void> {
  await resetTable(db);
  await copyRows(db, shape(BASE_ROWS));
  for (const s of [DEV, CREATED]) await db.query(s);
  await db.query('VACUUM ANALYZE logs');
  const batches = [...generate(shape(40 * 20_000, BASE_ROWS), 20_000)];
  // Totals over the batches: the CPU clock ticks in 10 ms, about a tenth of one batch.
  const wall = { without: 0, with: 0 };
  const cpu = { without: 0, with: 0 };
  let tallies = 0;
  for (const [i, rows] of batches.entries()) {
    const withCounts = i % 2 === 1;
    const params = countParams(summarizeRows(rows));
    tallies += params[0].length;
    const t = await costed(db, async () => {
      await db.query('BEGIN');
      await pipeline(Readable.from([rows]), db.query(copyFrom(COPY_LOGS)));
      if (withCounts) await db.query(SQL.addCounts, params);
      await db.query('COMMIT');
    });
    wall[withCounts ? 'with' : 'without'] += t.wall;
    cpu[withCounts ? 'with' : 'without'] += t.cpu;
  }
  const rows = (batches.length / 2) * 20_000;
  console.log(`\n## Persister transaction (20,000-row batches, set B; ${fmt(tallies / batches.length)} (device, level, hour) counts per batch)\n`);
  console.log(`| ${batches.length / 2} batches | rows/s (wall) | rows per backend CPU second |`);
  console.log('|---|---|---|');
  console.log(`| COPY, COMMIT | ${fmt(rows / (wall.without / 1000))} | ${fmt(rows / (cpu.without / 1000))} |`);
  console.log(`| COPY, rollup upsert, COMMIT | ${fmt(rows / (wall.with / 1000))} | ${fmt(rows / (cpu.with / 1000))} |`);
}

interface Query { name: string; sql: string; params: unknown[] }

function queries(rows: number): Query[] {
  const end = START_MS + rows * STEP_MS;
  const iso = (t: number): string => new Date(t).toISOString();
  const s = (o: { device?: string; levels?: string[]; since?: string; until?: string; q?: string; data?: string; after?: [string, string] }): unknown[] =>
    [o.device ?? null, o.levels ?? null, o.since ?? null, o.until ?? null, o.q ?? null, o.data ?? null, o.after?.[0] ?? null, o.after?.[1] ?? null, 101];
  const mid = iso(end - 15 * 86_400_000);
  return [
    { name: 'device (busiest), limit 100', sql: SQL.deviceLogs, params: [deviceName(0), 100] },
    { name: 'device (quiet), limit 100', sql: SQL.deviceLogs, params: [deviceName(900), 100] },
    { name: 'search: no filter', sql: SQL.searchLogs, params: s({}) },
    { name: 'search: level=ERROR', sql: SQL.searchLogs, params: s({ levels: ['ERROR'] }) },
    { name: 'search: level=CRITICAL', sql: SQL.searchLogs, params: s({ levels: ['CRITICAL'] }) },
    { name: 'search: since/until (1 h, 15 days ago)', sql: SQL.searchLogs, params: s({ since: mid, until: iso(end - 15 * 86_400_000 + 3_600_000) }) },
    { name: 'search: device + since (1 day)', sql: SQL.searchLogs, params: s({ device: deviceName(500), since: iso(end - 86_400_000) }) },
    { name: 'search: cursor (page in the middle)', sql: SQL.searchLogs, params: s({ after: [mid, String(Math.floor(rows / 2))] }) },
    { name: 'search: q common ("took", ~20%)', sql: SQL.searchLogs, params: s({ q: '%took%' }) },
    { name: 'search: q rare ("kernel panic", ~100 rows)', sql: SQL.searchLogs, params: s({ q: '%kernel panic%' }) },
    { name: 'search: q + device + since (1 day)', sql: SQL.searchLogs, params: s({ q: '%kernel panic%', device: deviceName(3), since: iso(end - 86_400_000) }) },
    { name: 'search: data common (region, 1/8)', sql: SQL.searchLogs, params: s({ data: '{"region":"eu-west"}' }) },
    { name: 'search: data rare (user, ~100 rows)', sql: SQL.searchLogs, params: s({ data: '{"user":"u12345"}' }) },
    { name: 'search: data + device', sql: SQL.searchLogs, params: s({ data: '{"user":"u12345"}', device: deviceName(3) }) },
  ];
}

/** p50 and p99 of a query; a slow one (a scan) gets fewer samples. */
async function measure(db: pg.Client, q: Query): Promise<[number, number]> {
  const samples: number[] = [];
  const deadline = performance.now() + 20_000;
  for (let i = 0; i < 200 && (i < 3 || performance.now() < deadline); i++) {
    const t = await timed(() => db.query(q.sql, q.params));
    if (i > 0) samples.push(t); // the first one warms caches and the plan
    if (t > 2000 && samples.length >= 2) break;
  }
  return [median(samples), quantile(samples, 0.99)];
}

async function readLatency(db: pg.Client): Promise<void> {
  await resetTable(db);
  await db.query('ALTER TABLE logs DROP CONSTRAINT logs_pkey');
  const load = await timed(() => copyRows(db, shape(QUERY_ROWS)));
  await db.query('ALTER TABLE logs ADD PRIMARY KEY (id)');
  await db.query(DEV);
  await db.query('VACUUM ANALYZE logs');
  console.log(`\n## Read queries on ${fmt(QUERY_ROWS)} rows (loaded in ${fmt(load / 1000)} s), p50 / p99 in ms, in PostgreSQL\n`);
  const qs = queries(QUERY_ROWS);
  const columns: [string, string[], string[]][] = [
    ['A: + BRIN(created_at)', [BRIN], ['DROP INDEX logs_created_brin_idx']],
    ['B: + (created_at, id)', [CREATED], []],
    ['C: B + GIN(log_data)', [GIN_DATA], ['DROP INDEX logs_data_gin_idx']],
    ['D: B + GIN(message trgm)', [TRGM], ['DROP INDEX logs_message_trgm_idx']],
  ];
  const results = new Map<string, string[]>(qs.map((q) => [q.name, []]));
  const builds: string[] = [];
  for (const [, create, drop] of columns) {
    builds.push(`${fmt(await timed(async () => { for (const s of create) await db.query(s); }) / 1000)} s`);
    await db.query('ANALYZE logs');
    for (const q of qs) {
      const [p50, p99] = await measure(db, q);
      results.get(q.name)!.push(`${ms(p50)} / ${ms(p99)}`);
    }
    for (const s of drop) await db.query(s);
  }
  console.log(`| query | ${columns.map((c) => c[0]).join(' | ')} |`);
  console.log(`|---|${columns.map(() => '---').join('|')}|`);
  console.log(`| (build of the added index) | ${builds.join(' | ')} |`);
  for (const q of qs) console.log(`| ${q.name} | ${results.get(q.name)!.join(' | ')} |`);
}

async function main(): Promise<void> {
  const server = await startBenchPostgres();
  const db = await connect(server);
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_trgm');
    if (process.env.BENCH_SKIP_COPY !== '1') {
      await copyThroughput(db);
      await rollupCost(db);
    }
    if (process.env.BENCH_SKIP_READS !== '1') await readLatency(db);
  } finally {
    await db.end();
    await cleanupAll();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
