/**
 * Read benchmark (BENCHMARKS.md, "Read path"): private Redis and PostgreSQL,
 * BENCH_ROWS logs (default 10 million) over 30 days COPYed straight into
 * the daily partitions of `logs` (or of BENCH_PARTITION_HOURS hours), with
 * the indexes and rollups built by schema.sql as on an upgrade, then a real
 * `logd serve` (2 HTTP workers),
 * and sequential requests over one keep-alive connection: p50 and p99 per
 * case, the median over BENCH_RUNS runs.
 *
 *   npm run bench:read            # BENCH_ROWS=10000000 BENCH_RUNS=3 BENCH_SAMPLES=1000
 *                                 # BENCH_ONLY=<regex>: only the cases whose name matches
 *                                 # BENCH_PARTITION_HOURS=24, BENCH_COPY_ROWS=100000
 *
 * Before logd starts, the search indexes are built on every closed partition
 * the way a persister builds them (buildSearchIndex, one per pass): the
 * build's wall and CPU time per million rows, and the COPY ceiling of an
 * open partition (COPYs of BENCH_COPY_ROWS rows into tomorrow's) before the
 * builds, during the first two (flat out, then paced at half the ceiling),
 * and after them all against a twin of `logs` without search indexes,
 * alternated.
 *
 * "uncached" cases make every request a cache miss the way a persisted batch
 * does: the case's version key is set to a new token before each request
 * (not timed). Scans (filters no index serves) get fewer samples, within
 * BENCH_SLOW_BUDGET_MS per case and run.
 */
import http from 'node:http';
import os from 'node:os';
import Redis from 'ioredis';
import { cleanupAll, startRedis } from '../test/helpers/services';
import { startLogd } from '../test/helpers/logd';
import { loadConfig } from '../src/config';
import { cacheKeys } from '../src/cache/versions';
import { DAY_MS, HOUR_MS, partitionName, partitionRange } from '../src/storage/layout';
import { createPartitions } from '../src/storage/partitions';
import { buildSearchIndex } from '../src/storage/search-indexes';
import { copyRows, deviceName } from './lib/data';
import { backendCpuMs, connect, median, quantile, schemaSql, startBenchPostgres, timed } from './lib/pg';

const ROWS = Number(process.env.BENCH_ROWS ?? 10_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 1000);
const SLOW_BUDGET_MS = Number(process.env.BENCH_SLOW_BUDGET_MS ?? 20_000);
const ONLY = new RegExp(process.env.BENCH_ONLY ?? '');
const COPY_ROWS = Number(process.env.BENCH_COPY_ROWS ?? 100_000);
/** storage.partition_hours of the data set and of logd */
const PARTITION_HOURS = Number(process.env.BENCH_PARTITION_HOURS ?? 24);
const LAYOUT_ENV = { LOGD_STORAGE_PARTITION_HOURS: String(PARTITION_HOURS) };
const LAYOUT = loadConfig(undefined, LAYOUT_ENV);
/** Start of the partition now falls in (the open one). */
const openStart = (): number => partitionRange(LAYOUT, Date.now()).from;
const DEVICES = 1000;
/** The rows span 30 days up to an hour ago: ~14,000 logs an hour. */
const SPAN_MS = 30 * 86_400_000;
const END_MS = Date.now() - 3_600_000;

interface Case {
  name: string;
  target?: number;
  /** the path of request i */
  path(i: number): string;
  /** untimed, before request i */
  before?(i: number): Promise<unknown>;
  /** at most this many samples per run (slow cases, within BENCH_SLOW_BUDGET_MS) */
  samples?: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
  });
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
const iso = (t: number): string => new Date(t).toISOString();
const q = (params: Record<string, string>): string => new URLSearchParams(params).toString();

async function load(): Promise<Awaited<ReturnType<typeof startBenchPostgres>>> {
  const server = await startBenchPostgres();
  const db = await connect(server);
  try {
    await db.query(schemaSql());
    // One partition per storage.partition_hours (BENCH_PARTITION_HOURS; 24, the default: one per UTC day) of the data.
    const startMs = END_MS - SPAN_MS;
    const times: number[] = [];
    for (let t = Math.floor(startMs / DAY_MS) * DAY_MS; t <= END_MS; t += PARTITION_HOURS * HOUR_MS) times.push(t);
    const { partitions } = await createPartitions(db, LAYOUT, times);
    // Load without indexes, then let schema.sql build them on every partition and backfill the rollups, as on an upgrade.
    await db.query('DROP INDEX logs_device_created_idx, logs_created_idx');
    await db.query("DELETE FROM logd_migrations WHERE name IN ('rollups-backfill', 'daily-rollups')");
    let last = 0;
    const copy = await timed(() => copyRows(db, { rows: ROWS, devices: DEVICES, startMs, stepMs: SPAN_MS / ROWS, seed: 7 }, (n) => {
      if (n - last >= 1_000_000) {
        last = n;
        process.stderr.write(`  loaded ${fmt(n)} rows\n`);
      }
    }));
    const schema = await timed(() => db.query(schemaSql()));
    // The backfill writes the rollup rows in hash order; the persister writes
    // an hour's (a day's) rows during that hour (day), so the rows of a window
    // lie on few pages. CLUSTER gives the backfilled rows that layout.
    const cluster = await timed(async () => {
      for (const t of ['logd_hourly_by_level', 'logd_hourly_by_device', 'logd_daily_by_level', 'logd_daily_by_device']) await db.query(`CLUSTER ${t} USING ${t}_pkey`);
    });
    const vacuum = await timed(() => db.query('VACUUM ANALYZE'));
    console.log(`Loaded ${fmt(ROWS)} rows into ${partitions.length} partitions of ${PARTITION_HOURS} hours: COPY ${fmt(copy / 1000)} s (${fmt(ROWS / (copy / 1000))} rows/s), `
      + `indexes + rollup backfill (schema.sql) ${fmt(schema / 1000)} s, CLUSTER of the rollups ${fmt(cluster / 1000)} s, VACUUM ANALYZE ${fmt(vacuum / 1000)} s.`);
    await searchIndexes(server, db);
    const [{ size }] = (await db.query("SELECT pg_size_pretty(sum(pg_total_relation_size(relid))) AS size FROM pg_partition_tree('logs')")).rows;
    const [{ open }] = (await db.query('SELECT count(*) AS open FROM logs WHERE created_at >= $1', [iso(openStart())])).rows;
    console.log(`logs with all indexes: ${size}; the open partition (from ${iso(openStart())}) holds ${fmt(Number(open))} rows.`);
  } finally {
    await db.end();
  }
  return server;
}

/**
 * The partition the COPY ceilings are measured on: tomorrow's, laid out as
 * the open one (the same btrees, no search indexes), emptied after each
 * COPY so every measurement starts alike (no dead rows, no bloat).
 */
const ceilingDay = (): number => Math.floor(Date.now() / DAY_MS) * DAY_MS + DAY_MS;

/**
 * `logs_twin`: `logs` without the feature, for an A/B in the same database
 * state: the same columns, defaults, btrees and partition bounds, and no
 * search index anywhere.
 */
async function twin(db: Awaited<ReturnType<typeof connect>>): Promise<void> {
  await db.query('CREATE TABLE logs_twin (LIKE logs INCLUDING ALL) PARTITION BY RANGE (created_at)');
  const { rows } = await db.query<{ name: string; bound: string }>(
    "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'logs'::regclass",
  );
  for (const r of rows) await db.query(`CREATE TABLE ${r.name}_twin PARTITION OF logs_twin ${r.bound}`);
}

/** One COPY of `rows` rows into tomorrow's partition of `table`: rows/s of wall time and per CPU second of its backend. */
async function copyOpen(db: Awaited<ReturnType<typeof connect>>, pid: number, rows: number, seed: number, table = 'logs'): Promise<{ wall: number; cpu: number }> {
  const cpu0 = backendCpuMs(pid);
  const wall = await timed(() => copyRows(db, { rows, devices: DEVICES, startMs: ceilingDay(), stepMs: (PARTITION_HOURS * HOUR_MS) / 2 / rows, seed }, undefined, table));
  const cpu = backendCpuMs(pid) - cpu0;
  await db.query(`TRUNCATE ${partitionName(ceilingDay())}${table === 'logs' ? '' : '_twin'}`);
  return { wall: rows / (wall / 1000), cpu: rows / (cpu / 1000) };
}

/** COPYs into that partition until `until` settles; paced to `rate` rows/s when given. Rows/s over the whole time. */
async function copyWhile(db: Awaited<ReturnType<typeof connect>>, until: Promise<unknown>, rate?: number): Promise<number> {
  let settled = false;
  void until.finally(() => { settled = true; });
  const t0 = performance.now();
  let rows = 0;
  const chunk = rate ? Math.max(1, Math.round(rate / 10)) : COPY_ROWS;
  while (!settled) {
    const tick = performance.now();
    await copyRows(db, { rows: chunk, devices: DEVICES, startMs: ceilingDay(), stepMs: 1, seed: 13, offset: rows });
    rows += chunk;
    // paced: the next chunk at its tenth of a second, as a persister at a sustained rate would send it
    if (rate) await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - tick))));
  }
  const achieved = rows / ((performance.now() - t0) / 1000);
  await db.query(`TRUNCATE ${partitionName(ceilingDay())}`);
  return achieved;
}

/**
 * Builds every search index as persisters would (one per pass, newest
 * closed partition first) and measures what the builds cost and what they
 * do to COPY into the open partition.
 */
async function searchIndexes(server: Awaited<ReturnType<typeof startBenchPostgres>>, db: Awaited<ReturnType<typeof connect>>): Promise<void> {
  const cfg = loadConfig(undefined, { ...server.env, ...LAYOUT_ENV });
  await createPartitions(db, cfg, [ceilingDay()]);
  const builder = await connect(server);
  try {
    const [copyPid, buildPid] = await Promise.all([db, builder].map(async (c) => Number((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p)));
    type Rate = { wall: number; cpu: number };
    const med = (r: Rate[]): Rate => ({ wall: median(r.map((x) => x.wall)), cpu: median(r.map((x) => x.cpu)) });
    // each series starts without WAL of earlier work pending, so no full-page images weigh on one and not another
    await db.query('CHECKPOINT');
    const first: Rate[] = [];
    for (let i = 0; i < 3; i++) first.push(await copyOpen(db, copyPid, COPY_ROWS, 11 + i));
    const before = med(first);
    const rows = new Map((await db.query<{ t: string; n: string }>(
      "SELECT c.relname AS t, c.reltuples::bigint AS n FROM pg_partition_tree('logs') p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf",
    )).rows.map((r) => [r.t, Number(r.n)]));
    const spent = new Map<string, { rows: number; wall: number; cpu: number }>();
    const build = async (): Promise<string | undefined> => {
      const cpu0 = backendCpuMs(buildPid);
      const t0 = performance.now();
      const r = await buildSearchIndex(builder, cfg, Date.now(), 0);
      if (!r.built) return undefined;
      const kind = r.built.replace(/^logs_\d{8}_\d\d_/, '');
      const k = spent.get(kind) ?? { rows: 0, wall: 0, cpu: 0 };
      spent.set(kind, { rows: k.rows + (rows.get(r.built.slice(0, -kind.length - 1)) ?? 0), wall: k.wall + performance.now() - t0, cpu: k.cpu + backendCpuMs(buildPid) - cpu0 });
      return r.built;
    };
    // the first build (a trigram index, the costlier kind) with COPY flat out beside it, the second paced at half the ceiling
    const flatOut = await copyWhile(db, build());
    const paced = await copyWhile(db, build(), before.wall / 2);
    while (await build());
    // with and without the feature, alternated in the same state: `logs` (search indexes on every closed partition) and its twin (none)
    await twin(db);
    await db.query('CHECKPOINT');
    const withIt: Rate[] = [];
    const without: Rate[] = [];
    for (let i = 0; i < 5; i++) {
      withIt.push(await copyOpen(db, copyPid, COPY_ROWS, 21 + i));
      without.push(await copyOpen(db, copyPid, COPY_ROWS, 21 + i, 'logs_twin'));
    }
    await db.query('DROP TABLE logs_twin');
    const [after, twinRate] = [med(withIt), med(without)];
    const pct = (a: number, b: number): string => `${((a / b) * 100).toFixed(0)}%`;
    console.log('\nSearch indexes, built one at a time (buildSearchIndex), newest closed partition first:');
    for (const [kind, k] of spent) {
      console.log(`  ${kind}: ${fmt(k.rows)} rows, ${fmt(k.wall / 1000)} s wall, ${(k.wall / 1000 / (k.rows / 1e6)).toFixed(1)} s wall and ${(k.cpu / 1000 / (k.rows / 1e6)).toFixed(1)} s CPU per million rows`);
    }
    console.log(`COPY of ${fmt(COPY_ROWS)} rows into an open partition (tomorrow's, emptied after each):`);
    console.log(`  before the builds (median of 3): ${fmt(before.wall)} rows/s (${fmt(before.cpu)} per CPU second of the backend)`);
    console.log(`  during the first build, flat out: ${fmt(flatOut)} rows/s, ${pct(flatOut, before.wall)} of before`);
    console.log(`  during the second build, paced at ${fmt(before.wall / 2)} rows/s: ${fmt(paced)} rows/s, ${pct(paced, before.wall / 2)} of the pace`);
    console.log(`  after the builds, alternated 5 times (medians): with the search indexes ${fmt(after.wall)} rows/s (${fmt(after.cpu)} per CPU second), `
      + `its twin without them ${fmt(twinRate.wall)} rows/s (${fmt(twinRate.cpu)} per CPU second): ${pct(after.wall, twinRate.wall)} (${pct(after.cpu, twinRate.cpu)} per CPU second)`);
  } finally {
    await builder.end();
  }
}

function cases(redis: Redis, middleCursor: string): Case[] {
  let token = 0;
  const bump = (key: string) => (): Promise<unknown> => redis.set(key, `bench.${++token}`, 'EX', 3600);
  const device = (i: number): string => deviceName((i * 7) % DEVICES);
  const dayAgo = iso(END_MS - 86_400_000);
  const midWindow = [iso(END_MS - 15 * 86_400_000), iso(END_MS - 15 * 86_400_000 + 3_600_000)];
  // index: an index gives the rows in order and the filters keep most of
  // them; range: q/data filter every row of an index range (cost grows with
  // the range); scan: no index narrows anything (the whole table).
  const open = iso(openStart());
  const closedOnly = iso(END_MS - 15 * 86_400_000);
  // index: an index gives the rows in order and the filters keep most of
  // them; search: q/data rows found through the search indexes of the closed
  // partitions (the open one scanned); range: q/data filter every row of an
  // index range (cost grows with the range); scan: no index narrows anything.
  const search = (name: string, params: Record<string, string>, kind: 'index' | 'search' | 'range' | 'scan' = 'index', target?: number): Case => ({
    name: `search: ${name}${kind === 'index' ? '' : `, ${kind}`}`,
    target: target ?? (kind === 'index' ? 50 : undefined),
    path: () => `/api/logs?${q(params)}`,
    samples: kind === 'scan' ? 5 : kind === 'range' ? 100 : kind === 'search' ? 200 : undefined,
  });
  return [
    { name: 'device query, cached', target: 2, path: () => `/api/logs/${deviceName(500)}?limit=100` },
    {
      name: 'device query, uncached', target: 20, path: (i) => `/api/logs/${device(i)}?limit=100`,
      before: (i) => bump(cacheKeys.deviceVersion(device(i)))(),
    },
    { name: 'stats, cached', target: 2, path: () => '/api/stats' },
    { name: 'stats, uncached', target: 20, path: () => '/api/stats', before: bump(cacheKeys.statsVersion) },
    { name: 'stats?since= 1 hour, uncached', target: 20, path: (i) => `/api/stats?since=${iso(Date.now() - 3_600_000 - i)}` },
    // the window's start moves through an hour over the samples, and with it the logs counted in `logs` (0 to 30 minutes of them)
    { name: 'stats?since= 24 hours, uncached', target: 5, path: (i) => `/api/stats?since=${iso(Date.now() - 86_400_000 - i * 3_600)}` },
    { name: 'stats?since= 30 days, uncached', target: 5, path: (i) => `/api/stats?since=${iso(Date.now() - 30 * 86_400_000 - i * 3_600)}` },
    // the range's ends move through an hour over the samples, so the partial hours counted from the rows vary (0 to 60 minutes of logs)
    { name: 'histogram: 24 hours, step 1h', target: 20, path: (i) => `/api/histogram?${q({ since: iso(Date.now() - 86_400_000 - i * 3_600), step: '1h' })}` },
    { name: 'histogram: 30 days, default step (4h)', target: 20, path: (i) => `/api/histogram?${q({ since: iso(Date.now() - 30 * 86_400_000 - i * 3_600) })}` },
    { name: 'histogram: 7 days of one device, step 1h', target: 20, path: (i) => `/api/histogram?${q({ since: iso(Date.now() - 7 * 86_400_000 - i * 3_600), step: '1h', device_id: device(i) })}` },
    search('no filter', { limit: '100' }),
    search('device_id', { device_id: deviceName(500) }),
    search('level=ERROR', { level: 'ERROR' }),
    search('level=CRITICAL', { level: 'CRITICAL' }),
    search('level=WARNING,ERROR', { level: 'WARNING,ERROR' }),
    search('since + until (1 hour, 15 days ago)', { since: midWindow[0], until: midWindow[1] }),
    search('device_id + since (1 day)', { device_id: deviceName(500), since: dayAgo }),
    search('cursor (a page in the middle)', { cursor: middleCursor }),
    search('q common ("took", 20%)', { q: 'took' }),
    search('q common, closed partitions only (until 15 days ago)', { q: 'took', until: closedOnly }),
    search('q rare (the phrase "kernel panic", ~100 rows)', { q: '"kernel panic"' }, 'search', 100),
    search('q rare, two words ("panic fatal")', { q: 'panic fatal' }, 'search', 100),
    search('q rare, the open partition only (since its start)', { q: '"kernel panic"', since: open }, 'search'),
    search('q rare, closed partitions only (until the open one\'s start)', { q: '"kernel panic"', until: open }, 'search'),
    search('q rare + device_id', { q: '"kernel panic"', device_id: deviceName(500) }, 'range'),
    search('q rare + since (1 day)', { q: '"kernel panic"', since: dayAgo }, 'search', 50),
    search('q of 2 characters ("zq", none)', { q: 'zq' }, 'scan'),
    search('data common ({"region":"eu-west"}, 1/8)', { data: '{"region":"eu-west"}' }),
    search('data common, closed partitions only (until 15 days ago)', { data: '{"region":"eu-west"}', until: closedOnly }),
    search('data rare ({"user":"u12345"}, ~100 rows)', { data: '{"user":"u12345"}' }, 'search', 100),
    search('data rare + device_id', { data: '{"user":"u12345"}', device_id: deviceName(500) }, 'range'),
    search('data rare + since (1 day)', { data: '{"user":"u12345"}', since: dayAgo }, 'search', 50),
  ];
}

async function run(port: number, c: Case): Promise<number[]> {
  const n = c.samples ?? SAMPLES;
  const samples: number[] = [];
  const deadline = performance.now() + SLOW_BUDGET_MS;
  // Negative i: warm-up (one request for a scan).
  for (let i = c.samples ? -1 : -20; i < n; i++) {
    if (c.before) await c.before(i);
    const t0 = performance.now();
    const r = await get(port, c.path(i));
    const t = performance.now() - t0;
    if (r.status !== 200) throw new Error(`${c.name}: ${c.path(i)} answered ${r.status}: ${r.body.slice(0, 300)}`);
    if (i >= 0) samples.push(t);
    if (i >= 0 && c.samples && performance.now() > deadline) break;
  }
  return samples;
}

async function main(): Promise<void> {
  const started = Date.now();
  const pg = await load();
  const redisServer = await startRedis();
  // Scans run to their end, to be measured, rather than being cut off at postgres.search_timeout_ms.
  const logd = await startLogd({ redis: redisServer, pg, workers: 2, env: { LOGD_POSTGRES_SEARCH_TIMEOUT_MS: '60000', ...LAYOUT_ENV } });
  const redis = new Redis(redisServer.port, redisServer.host);
  try {
    const page = JSON.parse((await get(logd.port, `/api/logs?${q({ until: iso(END_MS - 15 * 86_400_000), limit: '1' })}`)).body) as { next_cursor: string };
    const all = cases(redis, page.next_cursor).filter((c) => ONLY.test(c.name));
    const results = new Map<string, { p50: number[]; p99: number[]; n: number }>(all.map((c) => [c.name, { p50: [], p99: [], n: 0 }]));
    for (let r = 0; r < RUNS; r++) {
      for (const c of all) {
        const samples = await run(logd.port, c);
        const res = results.get(c.name)!;
        res.p50.push(median(samples));
        res.p99.push(quantile(samples, 0.99));
        res.n = samples.length;
      }
      process.stderr.write(`  run ${r + 1} of ${RUNS} done\n`);
    }
    console.log(`\n${os.cpus().length} cores (${os.cpus()[0].model}), ${fmt(os.totalmem() / 2 ** 30)} GiB; ${fmt(ROWS)} logs, ${DEVICES} devices, 30 days; `
      + `logd with 2 HTTP workers; sequential requests on one keep-alive connection; medians of ${RUNS} runs; total ${fmt((Date.now() - started) / 1000)} s.\n`);
    console.log('| case | samples/run | p50 ms | p99 ms | target p99 | |');
    console.log('|---|---|---|---|---|---|');
    for (const c of all) {
      const res = results.get(c.name)!;
      const p99 = median(res.p99);
      const verdict = c.target === undefined ? '' : p99 < c.target ? 'ok' : 'MISSED';
      console.log(`| ${c.name} | ${res.n} | ${ms(median(res.p50))} | ${ms(p99)} | ${c.target ? `< ${c.target} ms` : '—'} | ${verdict} |`);
    }
  } finally {
    redis.disconnect();
    agent.destroy();
    await logd.stop();
    await cleanupAll();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
