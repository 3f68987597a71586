/**
 * Storage lifecycle on a real PostgreSQL: partitions created ahead and across
 * midnight UTC (the clock injected into maintain()), by several nodes at
 * once; per-level retention by leaf drops; the disk budget; rollups equal to
 * COUNT(*) after every drop; the door's accepted window; and drops while the
 * persister loads (the stream gate, partitions made again on demand).
 */
import Redis from 'ioredis';
import pg from 'pg';
import t from 'tap';
import { loadConfig, type Config } from '../src/config';
import { migrate } from '../src/persist/migrate';
import { countParams } from '../src/persist/summary';
import type { Tally } from '../src/queue/frame';
import { SQL } from '../src/sql';
import { DAY_MS, HOUR_MS } from '../src/storage/layout';
import { maintain } from '../src/storage/maintenance';
import { createPartitions, listPartitions } from '../src/storage/partitions';
import { startLoad } from './helpers/load';
import { postJson, request, startLogd } from './helpers/logd';
import { assertRollupsExact } from './helpers/rollups';
import { cleanupAll, startPostgres, startRedis, waitFor, type PostgresServer } from './helpers/services';

t.teardown(cleanupAll);

/** A fresh database on `server` with logd's schema, and a config pointing at it. */
async function database(server: PostgresServer, name: string, env: Record<string, string> = {}): Promise<Config> {
  const url = await server.createDatabase(name);
  const cfg = loadConfig(undefined, { ...server.env, POSTGRES_DB: name, ...env });
  await migrate(cfg);
  t.ok(url, `database ${name}`);
  return cfg;
}

async function withClient<T>(cfg: Config, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: cfg.postgres.host, port: cfg.postgres.port, user: cfg.postgres.user, database: cfg.postgres.database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Stores logs as the persister does: rows and their counts in one transaction (partitions made first). */
async function store(cfg: Config, logs: { device: string; level: string; at: number }[]): Promise<void> {
  await withClient(cfg, async (c) => {
    await createPartitions(c, cfg, logs.map((l) => l.at));
    await c.query('BEGIN');
    await c.query('INSERT INTO logs (device_id, log_level, message, created_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])',
      [logs.map((l) => l.device), logs.map((l) => l.level), logs.map((l, i) => `m${i}`), logs.map((l) => new Date(l.at).toISOString())]);
    const tallies: Tally[] = logs.map((l) => [l.device, l.level, Math.floor(l.at / HOUR_MS), 1]);
    await c.query(SQL.addCounts, countParams(tallies));
    await c.query('COMMIT');
  });
}

const leafNames = async (cfg: Config): Promise<string[]> =>
  withClient(cfg, async (c) => (await listPartitions(c)).flatMap((p) => [p.name, ...p.leaves.map((l) => l.name)]));

const countByLevel = async (server: PostgresServer, db: string): Promise<Record<string, number>> => {
  const rows = await (await pgOf(server, db)).query<{ log_level: string; n: string }>('SELECT log_level, count(*) AS n FROM logs GROUP BY 1');
  return Object.fromEntries(rows.map((r) => [r.log_level, Number(r.n)]));
};

t.test('partitions: ahead, across midnight UTC, hourly, by several nodes at once', async (t) => {
  const server = await startPostgres();
  const daily = await database(server, 'daily');
  const before = Date.UTC(2026, 2, 1, 23, 30);
  const r1 = await maintain(daily, before, undefined);
  t.same(await leafNames(daily), ['logs_20260301_00', 'logs_20260302_00'], 'today and tomorrow');
  t.equal(r1.created, 2);
  const r2 = await maintain(daily, Date.UTC(2026, 2, 2, 0, 10), undefined);
  t.equal(r2.created, 1, 'after midnight: the new tomorrow');
  t.same(await leafNames(daily), ['logs_20260301_00', 'logs_20260302_00', 'logs_20260303_00']);
  await withClient(daily, async (c) => {
    await c.query("INSERT INTO logs (device_id, log_level, message, created_at) VALUES ('d', 'INFO', 'last', '2026-03-01T23:59:59.999999Z'), ('d', 'INFO', 'first', '2026-03-02T00:00:00Z')");
    const { rows } = await c.query<{ p: string; message: string }>('SELECT tableoid::regclass::text AS p, message FROM logs ORDER BY created_at');
    t.same(rows, [{ p: 'logs_20260301_00', message: 'last' }, { p: 'logs_20260302_00', message: 'first' }], 'the last microsecond of a day and midnight land in their own days');
  });

  const hourly = await database(server, 'hourly', { LOGD_STORAGE_PARTITION_HOURS: '1' });
  // four nodes at once: each creates what it finds missing, under the advisory lock
  const runs = await Promise.all([0, 1, 2, 3].map(() => maintain(hourly, before, undefined)));
  t.equal(runs.reduce((s, r) => s + r.created, 0), 25, `${runs.map((r) => r.created).join(' + ')}: every hour from 23:00 to a day later made once, by one node or another`);
  const names = await leafNames(hourly);
  t.equal(new Set(names).size, names.length);
  t.ok(names.includes('logs_20260301_23') && names.includes('logs_20260302_00') && names.includes('logs_20260302_23'), 'hourly names');
  const parts = await withClient(hourly, (c) => listPartitions(c));
  t.ok(parts.every((p, i) => p.to - p.from === HOUR_MS && (i === 0 || parts[i - 1].to === p.from)), 'contiguous, one hour each');

  // a width change never overlaps what exists: the new daily range is clipped to the hourly neighbour
  await withClient(hourly, (c) => createPartitions(c, hourly, [Date.UTC(2026, 2, 3, 5)]));
  const wider = loadConfig(undefined, { ...server.env, POSTGRES_DB: 'hourly' });
  const { partitions: made } = await withClient(wider, (c) => createPartitions(c, wider, [Date.UTC(2026, 2, 3, 12), Date.UTC(2026, 2, 3, 1)]));
  t.ok(made.some((p) => p.from === Date.UTC(2026, 2, 3, 6) && p.to === Date.UTC(2026, 2, 4)), 'after the hourly partition: 06:00 to midnight');
  t.ok(made.some((p) => p.from === Date.UTC(2026, 2, 3) && p.to === Date.UTC(2026, 2, 3, 5)), 'before it: midnight to 05:00');
});

t.test('retention per level drops leaves and whole partitions; rollups stay exact; the stream gate holds', async (t) => {
  const server = await startPostgres();
  const cfg = await database(server, 'levels', { LOGD_RETENTION_BY_LEVEL: 'DEBUG=3,ERROR=90' });
  const now = Date.UTC(2026, 5, 15, 12);
  const levels = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
  const logs: { device: string; level: string; at: number }[] = [];
  for (const age of [95, 40, 10, 2]) {
    for (const [i, level] of levels.entries()) {
      for (let d = 0; d < 3; d++) logs.push({ device: `dev-${d}`, level, at: now - age * DAY_MS + i * HOUR_MS + d });
    }
  }
  await store(cfg, logs);
  const leaves = await leafNames(cfg);
  t.ok(leaves.includes('logs_20260613_00_debug') && leaves.includes('logs_20260613_00_error') && leaves.includes('logs_20260613_00_rest'), 'a leaf per distinct retention and the DEFAULT leaf');
  await assertRollupsExact(t, await pgOf(server, 'levels'), 'before');

  const gated = await maintain(cfg, now, now - 100 * DAY_MS);
  t.same(gated.dropped, [], 'nothing goes while the stream still holds a log received before any expiry');

  const r = await maintain(cfg, now, undefined);
  const dropped = r.dropped.map((d) => `${d.partition}:${d.rows}`).sort();
  t.same(dropped, [
    'logs_20260312_00:15', // 95 days: every leaf expired, so the whole partition
    'logs_20260506_00_debug:3', 'logs_20260506_00_rest:9', // 40 days: all but ERROR
    'logs_20260605_00_debug:3', // 10 days: DEBUG only
  ], 'what expired went, by whole partition or by leaf');
  t.same(await countByLevel(server, 'levels'), { DEBUG: 3, INFO: 6, WARNING: 6, ERROR: 9, CRITICAL: 6 }, 'what is inside its retention stays');
  await assertRollupsExact(t, await pgOf(server, 'levels'), 'after the drops');
  const again = await maintain(cfg, now, undefined);
  t.same(again.dropped, [], 'a second pass drops nothing');
  t.equal(again.state.lastDrop?.reason, 'retention');
  t.equal(again.state.nextDrop, Date.UTC(2026, 5, 14) + 3 * DAY_MS, 'next: the DEBUG leaf of 2 days ago, 3 days after its end');
});

t.test('the disk budget drops the oldest partitions, never the current one, and says so', async (t) => {
  const server = await startPostgres();
  const cfg0 = await database(server, 'budget');
  const now = Date.UTC(2026, 5, 15, 12);
  const logs = [5, 4, 3, 2, 1, 0].flatMap((age) => Array.from({ length: 200 }, (_, i) => ({ device: `d${i % 7}`, level: 'INFO', at: now - age * DAY_MS - i * 1000 })));
  await store(cfg0, logs);
  const parts = await withClient(cfg0, (c) => listPartitions(c));
  const newestTwo = parts.filter((p) => p.from <= now).slice(-2).reduce((s, p) => s + p.bytes, 0);
  const cfg = loadConfig(undefined, { ...server.env, POSTGRES_DB: 'budget', LOGD_RETENTION_MAX_BYTES: String(newestTwo) });
  const r = await maintain(cfg, now, undefined);
  t.ok(r.dropped.length >= 3 && r.dropped.every((d) => d.reason === 'budget'), `${r.dropped.length} partitions dropped by the budget`);
  t.same(r.dropped.map((d) => d.partition).slice(0, 3), ['logs_20260610_00', 'logs_20260611_00', 'logs_20260612_00'], 'oldest first');
  const left = await withClient(cfg, (c) => listPartitions(c));
  t.ok(left.some((p) => p.from <= now && now < p.to), 'the partition of now is kept');
  t.ok(r.state.bytes <= newestTwo || left.filter((p) => p.to <= now).length === 0, 'under the budget, or nothing older left to drop');
  t.match(r.state.budgetDropping, /retention\.max_bytes .* inside its 30-day retention/, 'the state says the budget decides');
  await assertRollupsExact(t, await pgOf(server, 'budget'), 'after budget drops');
});

t.test('a running logd drops by the disk budget and /health says degraded', async (t) => {
  const redis = await startRedis();
  const server = await startPostgres();
  const logd = await startLogd({ redis, pg: server, env: { LOGD_RETENTION_DAYS: '30', LOGD_RETENTION_MAX_BYTES: '1', LOGD_STORAGE_MAINTENANCE_INTERVAL_S: '1' } });
  t.teardown(() => logd.stop());
  const old = new Date(Date.now() - 2 * DAY_MS).toISOString();
  t.equal((await postJson(`${logd.url}/api/log`, { device_id: 'b', log_level: 'INFO', message: 'two days old', timestamp: old })).status, 200);
  const health = await waitFor('/health to name the disk budget', async () => {
    const h = await request(`${logd.url}/health`);
    return h.status === 503 && (h.body as { reasons: string[] }).reasons.some((r) => /^disk budget: retention\.max_bytes \(1 bytes\) dropped logs_/.test(r)) ? h : undefined;
  }, 30_000);
  t.equal((health.body as { status: string }).status, 'degraded');
  const [drop] = await server.query<{ reason: string; rows: string }>("SELECT reason, rows::text FROM logd_partition_drops WHERE reason = 'budget' AND rows > 0");
  t.same(drop, { reason: 'budget', rows: '1' }, 'the two-day-old log went with its partition');
  const stats = await request(`${logd.url}/api/stats`);
  t.equal((stats.body as { total_logs: number }).total_logs, Number((await server.query<{ n: string }>('SELECT count(*) AS n FROM logs'))[0].n), 'stats follow');
});

t.test('the door refuses timestamps outside the accepted window with 422 naming timestamp', async (t) => {
  const redis = await startRedis();
  const server = await startPostgres();
  const logd = await startLogd({ redis, pg: server, env: { LOGD_RETENTION_DAYS: '30', LOGD_RETENTION_BY_LEVEL: 'DEBUG=3', LOGD_INGEST_MAX_FUTURE_S: '3600' } });
  t.teardown(() => logd.stop());
  const at = (ms: number): string => new Date(Date.now() + ms).toISOString();
  const cases: [string, unknown, number, RegExp?][] = [
    ['INFO 29 days old', { device_id: 'w', log_level: 'INFO', message: 'ok', timestamp: at(-29 * DAY_MS) }, 200],
    ['INFO 31 days old', { device_id: 'w', log_level: 'INFO', message: 'old', timestamp: at(-31 * DAY_MS) }, 422, /retention\.days = 30 days ago/],
    ['DEBUG 4 days old', { device_id: 'w', log_level: 'DEBUG', message: 'old', timestamp: at(-4 * DAY_MS) }, 422, /retention\.by_level\.DEBUG = 3 days ago/],
    ['30 minutes ahead', { device_id: 'w', log_level: 'INFO', message: 'soon', timestamp: at(30 * 60_000) }, 200],
    ['2 hours ahead', { device_id: 'w', log_level: 'INFO', message: 'late', timestamp: at(2 * HOUR_MS) }, 422, /ingest\.max_future_s = 3600/],
    ['year 1970', { device_id: 'w', log_level: 'INFO', message: 'epoch', timestamp: 0 }, 422, /accepted window/],
    ['year 9999', { device_id: 'w', log_level: 'INFO', message: 'far', timestamp: '9999-12-31T23:59:59Z' }, 422, /accepted window/],
  ];
  for (const [name, body, status, msg] of cases) {
    const r = await postJson(`${logd.url}/api/log`, body);
    t.equal(r.status, status, name);
    if (msg) {
      const issue = (r.body as { detail: { loc: unknown[]; msg: string; type: string }[] }).detail[0];
      t.same(issue.loc, ['body', 'timestamp'], `${name}: names timestamp`);
      t.match(issue.msg, msg, `${name}: names the window`);
      t.equal(issue.type, 'timestamp_out_of_window');
    }
  }
  const batch = await postJson(`${logd.url}/api/logs/batch`, { logs: [{ device_id: 'w', log_level: 'INFO', message: 'a' }, { device_id: 'w', log_level: 'INFO', message: 'b', timestamp: at(-40 * DAY_MS) }] });
  t.equal(batch.status, 422, 'one log out of the window refuses the batch');
  t.same((batch.body as { detail: { loc: unknown[] }[] }).detail[0].loc, ['body', 'logs', 1, 'timestamp']);
  // the 29-day-old log went into a partition made on demand
  await waitFor('the accepted logs stored', async () => Number((await server.query<{ n: string }>('SELECT count(*) AS n FROM logs'))[0].n) === 2, 20_000);
  t.equal((await request(`${logd.url}/health`)).status, 200, 'nothing failed or dead-lettered');
});

t.test('drops while the persister loads: nothing inside retention lost, partitions made again, rollups exact', async (t) => {
  const redis = await startRedis();
  const server = await startPostgres();
  const logd = await startLogd({ redis, pg: server, env: { LOGD_RETENTION_DAYS: '30', LOGD_PERSISTER_BATCH_MAX_ROWS: '200' } });
  t.teardown(() => logd.stop());
  const cfg = loadConfig(undefined, { ...server.env, ...redisEnv(redis.port) });
  const r = new Redis(redis.port, '127.0.0.1');
  t.teardown(() => r.disconnect());
  const streamFrom = async (): Promise<number | undefined> => {
    const [first] = await r.xrange(cfg.redis.stream, '-', '+', 'COUNT', 1);
    return first ? Number(first[0].split('-')[0]) : undefined;
  };
  const later = Date.now() + 31 * DAY_MS; // a clock at which today's partition has expired

  // 1. the persister paused with logs in the stream: a pass at the later clock keeps today's partition
  const [persister] = logd.children('persister');
  process.kill(persister, 'SIGSTOP');
  const paused = startLoad(logd.url, { prefix: 'paused', clients: 2, perRequest: 20, maxRequests: 25 });
  const { acked } = await paused.stop();
  t.ok(acked.length > 0);
  const gated = await maintain(cfg, later, await streamFrom());
  process.kill(persister, 'SIGCONT');
  t.same(gated.dropped, [], 'the stream holds logs received before the expiry: nothing dropped');
  await waitFor('every acknowledged log stored', async () => Number((await server.query<{ n: string }>("SELECT count(*) AS n FROM logs WHERE message LIKE 'paused-%'"))[0].n) === acked.length, 30_000);

  // 2. today's partition dropped again and again under load: the persister makes it again and loads on
  const load = startLoad(logd.url, { prefix: 'live', clients: 2, perRequest: 20, maxRequests: 400 });
  let drops = 0;
  // A pass that cannot take the partition's lock within its wait drops nothing: on a loaded machine the first
  // passes may all give way to the COPY, so the load goes on until one has dropped (within a deadline).
  const until = Date.now() + 60_000;
  while ((load.ackedCount() < 2000 || drops === 0) && drops < 20 && Date.now() < until) {
    const pass = await maintain(cfg, later, undefined);
    drops += pass.dropped.length;
  }
  const live = await load.stop();
  t.ok(drops > 0, `${drops} drops of the partition being loaded`);
  const last = await server.query<{ at: Date }>('SELECT max(dropped_at) AS at FROM logd_partition_drops');
  t.ok(last[0].at, 'drops recorded');
  await waitFor('the backlog persisted', async () => (await streamFrom()) === undefined || Number(await r.get(`${cfg.redis.stream}:backlog`)) === 0, 30_000);
  t.equal(await r.xlen(cfg.queue.dead_stream), 0, 'nothing dead-lettered: a missing partition is not the data\'s fault');
  // the heartbeat of the retry that recovered may be the last one published yet
  await waitFor('healthy', async () => (await request(`${logd.url}/health`)).status === 200, 10_000);
  t.ok(live.acked.length > 0);
  await assertRollupsExact(t, server, 'after drops during loading');
});

/** The server, with queries on another database. */
async function pgOf(server: PostgresServer, database: string): Promise<PostgresServer> {
  return {
    ...server,
    query: async <R>(sql: string, params?: unknown[]) => {
      const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: server.user, database });
      await c.connect();
      try {
        return (await c.query(sql, params)).rows as R[];
      } finally {
        await c.end();
      }
    },
  };
}

const redisEnv = (port: number): Record<string, string> => ({ REDIS_HOST: '127.0.0.1', REDIS_PORT: String(port) });
