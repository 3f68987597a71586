/**
 * Erasure: DELETE /api/logs and `logd purge` delete exactly a device's logs
 * (before `until`, or all), leave every rollup equal to COUNT(*) over `logs`,
 * invalidate the device's cached reads and the statistics; a large purge in
 * small chunks never holds up ingest of another device; the route needs the
 * admin scope; bad options are refused naming them; PostgreSQL down answers
 * 503 as reads do.
 */
import { spawnSync } from 'node:child_process';
import Redis from 'ioredis';
import pg from 'pg';
import t from 'tap';
import { Versions } from '../src/cache/versions';
import { loadConfig } from '../src/config';
import { purge } from '../src/storage/purge';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { LOGD_BIN, postJson, request, serviceEnv, startLogd, waitRows, type Logd } from './helpers/logd';
import { assertRollupsExact } from './helpers/rollups';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const HOUR = 3_600_000;
/** A whole hour, so the logs' hours are the same at every run. */
const NOW = Math.floor(Date.now() / HOUR) * HOUR;

/** `n` logs of a device, one every `step` ms back from NOW (14 minutes: about three days for 300), levels in turn. */
const logsOf = (device: string, n: number, from = 0, step = 14 * 60_000): object[] =>
  Array.from({ length: n }, (_, i) => ({
    device_id: device, log_level: LEVELS[(from + i) % 5], message: `m${from + i}`, timestamp: new Date(NOW - (from + i) * step - 1000).toISOString(),
  }));

t.test('purge', async (t) => {
  const redis = await startRedis();
  const db = await startPostgres();
  // One connection for the test's own queries (PostgreSQL is stopped at the end: its error is expected).
  const sql = new pg.Client({ connectionString: db.url });
  sql.on('error', () => undefined);
  await sql.connect();
  let logd: Logd | undefined;
  t.teardown(async () => {
    await logd?.stop();
    await sql.end().catch(() => undefined);
    await cleanupAll();
  });
  const query = async <R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]> => (await sql.query(text, params)).rows as R[];
  const cliEnv = { ...process.env, ...serviceEnv(redis, db) };
  // Tokens live in Redis: made before logd starts, every worker loads them at start.
  const token = (scope: string): string => {
    const r = spawnSync(process.execPath, [LOGD_BIN, 'token', 'create', '--name', `p-${scope}`, '--scope', scope], { env: cliEnv, encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(r.stderr);
    return r.stdout.trim();
  };
  const auth = { read: { authorization: `Bearer ${token('read')}` }, admin: { authorization: `Bearer ${token('admin')}` } };
  // Partitions of 6 hours with level leaves (DEBUG apart), so a purge walks many leaves; partitions are made ahead
  // up to max_future_s, so it stays short.
  const env = { LOGD_AUTH_MODE: 'token', LOGD_STORAGE_PARTITION_HOURS: '6', LOGD_RETENTION_BY_LEVEL: 'DEBUG=36000', LOGD_INGEST_MAX_FUTURE_S: '3600' };
  logd = await startLogd({ redis, pg: db, workers: 2, env });
  const url = logd.url;
  const get = (path: string) => request(`${url}${path}`, { headers: auth.admin });
  const count = async (where = 'TRUE', params: unknown[] = []): Promise<number> =>
    Number((await query<{ n: string }>(`SELECT count(*) AS n FROM logs WHERE ${where}`, params))[0].n);
  const send = async (logs: object[]): Promise<void> => {
    for (let i = 0; i < logs.length; i += 1000) {
      const r = await postJson(`${url}/api/logs/batch`, { logs: logs.slice(i, i + 1000) }, auth.admin);
      if (r.status !== 200) throw new Error(`batch refused: ${r.status} ${r.text}`);
    }
  };
  const del = (query: string, headers: Record<string, string> = auth.admin) => request(`${url}/api/logs?${query}`, { method: 'DELETE', headers });

  await send([...logsOf('p-a', 300), ...logsOf('p-b', 300), ...logsOf('p-c', 300)]);
  await waitRows(db, 900);
  const leaves = await query("SELECT relname FROM pg_class WHERE relname ~ '^logs_\\d{8}_\\d\\d_(debug|rest)$'");
  t.ok(leaves.length >= 24, `${leaves.length} level leaves hold the logs`);

  await t.test('DELETE with until: only the older logs of the device, rollups exact, cached reads invalidated', async (t) => {
    const until = `${new Date(NOW - 30 * HOUR - 123).toISOString().slice(0, 23)}456Z`;
    const cached = await waitFor('the device query to come from the cache', async () => {
      const r = await get('/api/logs/p-a?limit=1000');
      return r.body?.source === 'cache' ? r : undefined;
    }, 10_000);
    t.equal(cached.body.total, 300);
    await waitFor('the stats to come from the cache', async () => (await get('/api/stats')).body?.source === 'cache', 10_000);
    const older = await count("device_id = 'p-a' AND created_at < $1", [until]);
    t.ok(older > 100 && older < 200, `${older} logs of p-a before ${until}`);

    const r = await del(`device_id=p-a&until=${encodeURIComponent(until)}`);
    t.equal(r.status, 200, r.text);
    t.same(r.body, { device_id: 'p-a', until, deleted: older }, 'the answer counts the logs deleted');
    t.equal(await count("device_id = 'p-a' AND created_at < $1", [until]), 0, 'none of them is left');
    t.equal(await count("device_id = 'p-a'"), 300 - older, 'its newer logs are kept');
    t.equal(await count("device_id <> 'p-a'"), 600, 'other devices are untouched');
    await assertRollupsExact(t, db, 'after a purge with until');

    const after = await get('/api/logs/p-a?limit=1000');
    t.equal(after.body.source, 'database', 'the cached answer is no longer served');
    t.equal(after.body.total, 300 - older);
    t.notOk(after.body.data.some((l: { created_at: string }) => l.created_at < until), 'no purged log in the answer');
    const stats = await get('/api/stats');
    t.equal(stats.body.source, 'database');
    t.equal(stats.body.total_logs, 900 - older, 'the statistics dropped');
    t.same(stats.body.top_devices.find((d: { device_id: string }) => d.device_id === 'p-a'), { device_id: 'p-a', count: 300 - older });
  });

  await t.test('DELETE without until: every log of the device and its rollup rows', async (t) => {
    const r = await del('device_id=p-b');
    t.equal(r.status, 200, r.text);
    t.same(r.body, { device_id: 'p-b', until: null, deleted: 300 });
    t.equal(await count("device_id = 'p-b'"), 0);
    t.same(await query("SELECT device_id FROM logd_counts_by_device WHERE device_id = 'p-b'"), [], 'no counts_by_device row left');
    t.same(await query("SELECT 1 FROM logd_hourly_by_device WHERE device_id = 'p-b' UNION ALL SELECT 1 FROM logd_daily_by_device WHERE device_id = 'p-b'"), [], 'no hourly or daily row left');
    await assertRollupsExact(t, db, 'after a purge of all logs');
    const stats = await get('/api/stats');
    t.notOk(stats.body.recent_devices.includes('p-b'), 'the device is gone from the statistics');
    t.same((await del('device_id=p-b')).body.deleted, 0, 'again: nothing to delete');
    t.same((await del('device_id=never-seen')).body, { device_id: 'never-seen', until: null, deleted: 0 }, 'a device without logs');
  });

  await t.test('options are validated; GET /api/logs and 405s are unchanged', async (t) => {
    const bad = await del('device_id=p-c&until=yesterday');
    t.equal(bad.status, 422);
    t.equal(bad.body.code, 'LOGD_VALIDATION_FAILED');
    t.same(bad.body.detail.map((i: { loc: string[] }) => i.loc), [['query', 'until']], 'names until');
    const missing = await del('until=2026-01-01T00:00:00Z');
    t.equal(missing.status, 422);
    t.same(missing.body.detail.map((i: { loc: string[]; type: string }) => [i.loc, i.type]), [[['query', 'device_id'], 'missing']], 'names device_id');
    t.same((await del(`device_id=${'x'.repeat(51)}`)).body.detail[0].loc, ['query', 'device_id'], 'device_id longer than 50');
    t.same((await del('device_id=p-c&since=2026-01-01')).body.detail[0].loc, ['query', 'since'], 'unknown parameter');
    t.equal(await count("device_id = 'p-c'"), 300, 'nothing deleted by refused requests');
    const search = await get('/api/logs?device_id=p-c&limit=5');
    t.equal(search.status, 200);
    t.equal(search.body.total, 5, 'GET /api/logs searches as before');
    const put = await request(`${url}/api/logs`, { method: 'PUT', headers: auth.admin });
    t.equal(put.status, 405);
    t.match(put.body.detail, /DELETE/, 'the 405 lists DELETE');
  });

  await t.test('logd purge', async (t) => {
    const cli = (...args: string[]) => spawnSync(process.execPath, [LOGD_BIN, 'purge', ...args], { env: cliEnv, encoding: 'utf8', timeout: 30_000 });
    const until = NOW - 20 * HOUR;
    const older = await count("device_id = 'p-c' AND created_at < $1", [new Date(until).toISOString()]);
    t.ok(older > 0, `${older} logs of p-c before the bound`);
    const r = cli('--device', 'p-c', '--until', String(until));
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, new RegExp(`^deleted ${older} logs of device p-c`));
    t.equal(await count("device_id = 'p-c'"), 300 - older);
    await assertRollupsExact(t, db, 'after logd purge --until');
    const all = cli('--device', 'p-c');
    t.equal(all.status, 0, all.stderr);
    t.match(all.stdout, new RegExp(`^deleted ${300 - older} logs of device p-c`));
    t.equal(await count("device_id = 'p-c'"), 0);
    await assertRollupsExact(t, db, 'after logd purge');

    const noDevice = cli('--until', '2026-01-01');
    t.equal(noDevice.status, 2);
    t.match(noDevice.stderr, /--device/);
    const badUntil = cli('--device', 'p-a', '--until', '2026-13-01');
    t.equal(badUntil.status, 2);
    t.match(badUntil.stderr, /--until/);
  });

  await t.test('a large purge in small chunks: ingest of another device goes on, a locked leaf is waited for', async (t) => {
    const big = 50_000;
    const base = await count();
    await send(logsOf('p-big', big, 0, 5000));
    await waitFor(`${big} logs of p-big persisted`, async () => (await count()) === base + big, 60_000);
    const cfg = loadConfig(undefined, {});
    const client = new Redis(redis.port, redis.host);
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    t.teardown(async () => {
      client.disconnect();
      await Promise.all([pool.end(), holder.end()]);
    });
    // A transaction holds the leaf of the device's oldest log, as a partition drop does, past a chunk's lock_timeout.
    const [{ leaf }] = await query<{ leaf: string }>("SELECT tableoid::regclass::text AS leaf FROM logs WHERE device_id = 'p-big' ORDER BY created_at LIMIT 1");
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${leaf} IN SHARE MODE`);
    const waiters = async (): Promise<Date[]> => (await query<{ started: Date }>(
      'SELECT a.query_start AS started FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted AND l.relation = $1::regclass', [leaf])).map((r) => r.started);

    let running = true;
    const purged = purge(pool, 'p-big', undefined, { versions: new Versions(client, cfg), chunkRows: 200 }).finally(() => { running = false; });
    const released = (async () => {
      const first = await waitFor('a chunk to wait for the locked leaf', async () => (await waiters())[0], 20_000);
      await waitFor('the chunk to time out and be tried again', async () => (await waiters()).some((at) => at > first), 20_000);
      await holder.query('COMMIT');
    })();
    let sent = 0;
    let persistedDuring = 0;
    while (running) {
      // the newest hours: never in the locked leaf
      await send(logsOf('p-live', 20, sent, 60_000));
      sent += 20;
      await waitRows(db, sent, "device_id = 'p-live'");
      if (running) persistedDuring++;
    }
    await released;
    t.equal(await purged, big, 'every log of the device deleted');
    t.ok(persistedDuring >= 3, `${persistedDuring} batches of another device accepted and persisted while the purge ran`);
    t.equal(await count("device_id = 'p-big'"), 0);
    t.equal(await count("device_id = 'p-live'"), sent, 'every log sent meanwhile is stored');
    await assertRollupsExact(t, db, 'after a purge during ingest');
  });

  await t.test('the admin scope; PostgreSQL down', async (t) => {
    t.equal((await del('device_id=p-a', {})).status, 401, 'no token: 401');
    const forbidden = await del('device_id=p-a', auth.read);
    t.equal(forbidden.status, 403, 'a read token: 403');
    t.equal(forbidden.body.code, 'LOGD_FORBIDDEN');
    const left = await count("device_id = 'p-a'");
    t.ok(left > 0);
    const ok = await del('device_id=p-a');
    t.equal(ok.status, 200, 'an admin token: 200');
    t.equal(ok.body.deleted, left);
    await assertRollupsExact(t, db, 'after the last purge');

    await db.stop();
    const down = await del('device_id=p-c');
    t.equal(down.status, 503, 'PostgreSQL down: 503');
    t.equal(down.body.code, 'LOGD_DATABASE_UNAVAILABLE');
  });
});
