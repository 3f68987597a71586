/**
 * Search indexes on closed partitions (src/storage/search-indexes.ts), on a
 * real PostgreSQL: one index per pass, newest closed partition first, level
 * leaves included, never the partition of now; the search query uses them
 * with no change; an invalid index left by a build cut short is dropped and
 * built again; a full backlog, another node's build and the switch keep a
 * pass from building; `logd storage` shows each partition's state; and a
 * running logd's persister builds them by itself.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import t from 'tap';
import { loadConfig, type Config } from '../src/config';
import { migrate } from '../src/persist/migrate';
import { SQL } from '../src/sql';
import { DAY_MS } from '../src/storage/layout';
import { createPartitions, listPartitions } from '../src/storage/partitions';
import { maintain } from '../src/storage/maintenance';
import { buildSearchIndex, searchStates } from '../src/storage/search-indexes';
import { ReadPool } from '../src/read/db';
import { searchLogs, type Search } from '../src/read/logs';
import { decodeCursor, encodeCursor } from '../src/http/query';
import Redis from 'ioredis';
import { LOGD_BIN, postJson, serviceEnv, startLogd } from './helpers/logd';
import { cleanupAll, startPostgres, startRedis, waitFor, type PostgresServer } from './helpers/services';

t.teardown(cleanupAll);

const NOW = Date.UTC(2026, 5, 15, 12);

async function database(server: PostgresServer, name: string, env: Record<string, string> = {}): Promise<{ cfg: Config; c: pg.Client }> {
  await server.createDatabase(name);
  const cfg = loadConfig(undefined, { ...server.env, POSTGRES_DB: name, ...env });
  await migrate(cfg);
  const c = new pg.Client({ host: cfg.postgres.host, port: cfg.postgres.port, user: cfg.postgres.user, database: name });
  await c.connect();
  t.teardown(() => c.end());
  return { cfg, c };
}

/** `n` rows a day over the `days` days before NOW's and on NOW's day, one in 500 with a rare token and rare data. */
async function fill(c: pg.Client, cfg: Config, days: number, n: number): Promise<void> {
  const start = NOW - days * DAY_MS - (NOW % DAY_MS);
  await createPartitions(c, cfg, Array.from({ length: days + 1 }, (_, d) => start + d * DAY_MS));
  await c.query(`INSERT INTO logs (device_id, log_level, message, log_data, created_at)
    SELECT 'dev-' || (i % 20), (ARRAY['DEBUG','INFO','ERROR'])[1 + i % 3],
      'request ' || md5(i::text) || CASE WHEN i % 500 = 0 THEN ' needle-7' ELSE '' END,
      jsonb_build_object('i', i, 'order', CASE WHEN i % 500 = 0 THEN 'rare' ELSE 'common' END),
      to_timestamp(${start / 1000}) + (i::float8 * ${(days + 1) * 86_400} / ${(days + 1) * n}) * interval '1 second'
    FROM generate_series(0, ${(days + 1) * n - 1}) i`);
  await c.query('ANALYZE logs');
}

const indexes = async (c: pg.Client): Promise<{ name: string; valid: boolean }[]> =>
  (await c.query<{ name: string; valid: boolean }>(
    "SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname ~ '_(message_trgm|data_gin)$' ORDER BY 1",
  )).rows;

/** Passes until one builds nothing; the names built, in order. */
async function buildAll(c: pg.Client, cfg: Config, now = NOW): Promise<string[]> {
  const built: string[] = [];
  for (;;) {
    const r = await buildSearchIndex(c, cfg, now, 0);
    if (!r.built) return built;
    built.push(r.built);
  }
}

t.test('closed partitions get both indexes, one per pass, newest first; the search uses them', async (t) => {
  const server = await startPostgres();
  const { cfg, c } = await database(server, 'closed');
  await fill(c, cfg, 2, 3000);
  const first = await buildSearchIndex(c, cfg, NOW, 0);
  t.equal(first.built, 'logs_20260614_00_message_trgm', 'the newest closed partition first');
  t.same((await indexes(c)).map((x) => x.name), ['logs_20260614_00_message_trgm'], 'one index per pass');
  const rest = await buildAll(c, cfg);
  t.same(rest, ['logs_20260614_00_data_gin', 'logs_20260613_00_message_trgm', 'logs_20260613_00_data_gin']);
  t.ok((await indexes(c)).every((x) => x.valid), 'all valid');
  t.notOk((await indexes(c)).some((x) => x.name.startsWith('logs_20260615_00')), 'the partition of now has none');
  const states = new Map([...await searchStates(c, await listPartitions(c), NOW)].map(([p, s]) => [p.name, s]));
  t.same(['logs_20260613_00', 'logs_20260614_00', 'logs_20260615_00'].map((n) => states.get(n)), ['built', 'built', 'open']);

  const plan = async (q: string | null, data: string | null): Promise<string> => (await c.query(
    `EXPLAIN (COSTS OFF) ${SQL.searchLogs}`, [null, null, null, null, q, data, null, null, 51],
  )).rows.map((r) => r['QUERY PLAN']).join('\n');
  const byText = await plan('%needle-7%', null);
  t.match(byText, /Bitmap Index Scan on logs_20260614_00_message_trgm/, 'q: the trigram index of a closed partition');
  t.match(byText, /Seq Scan on logs_20260615_00/, 'q: the open partition is scanned');
  t.match(await plan(null, '{"order":"rare"}'), /Bitmap Index Scan on logs_20260613_00_data_gin/, 'data: the jsonb_path_ops index');
  // newest first, and no further than the page: a common text fills it from the open partition
  const run = (await c.query(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${SQL.searchLogs}`, [null, null, null, null, '%request%', null, null, null, 51]))
    .rows.map((r) => r['QUERY PLAN']).join('\n');
  t.match(run, /on logs_20260615_00 [^\n]*\(actual rows=\d/, 'the open partition gives the page');
  t.match(run, /on logs_20260614_00 [^\n]*\(never executed\)/, 'the older partitions are never read');
  t.match(run, /on logs_20260613_00 [^\n]*\(never executed\)/);
  const found = await c.query(SQL.searchLogs, [null, null, null, null, '%needle-7%', null, null, null, 1000]);
  t.equal(found.rows.length, 3 * 3000 / 500, 'every row with the token, across indexed and scanned partitions');
});

t.test('keyset pages across closed (indexed) and open (scanned) partitions: exact, newest first', async (t) => {
  const server = await startPostgres();
  const { cfg, c } = await database(server, 'pages');
  await fill(c, cfg, 3, 2000);
  await buildAll(c, cfg);
  const reads = new ReadPool({ host: cfg.postgres.host, port: cfg.postgres.port, user: cfg.postgres.user, database: 'pages', max: 1 }, 'busy', 'timeout');
  t.teardown(() => reads.pool.end());
  const truth = async (where: string): Promise<string[]> =>
    (await c.query<{ id: string }>(`SELECT id FROM logs WHERE ${where} ORDER BY created_at DESC, id DESC`)).rows.map((r) => r.id);
  const walk = async (s: Omit<Search, 'limit' | 'after'>, limit: number): Promise<{ ids: string[]; pages: number }> => {
    const ids: string[] = [];
    let after: Search['after'];
    let pages = 0;
    for (;;) {
      const page = JSON.parse(await searchLogs(reads, { ...s, limit, after }, encodeCursor)) as { data: { id: number }[]; next_cursor: string | null };
      pages++;
      ids.push(...page.data.map((r) => String(r.id)));
      if (page.next_cursor === null) return { ids, pages };
      const cursor = decodeCursor(page.next_cursor);
      if (!cursor.ok) throw new Error('bad cursor');
      after = cursor.value;
    }
  };
  const cases: [string, Omit<Search, 'limit' | 'after'>, string][] = [
    ['a rare token', { terms: ['needle-7'] }, "message LIKE '%needle-7%'"],
    ['two words, any order', { terms: ['NEEDLE-7', 'request'] }, "message LIKE '%needle-7%'"],
    ['a phrase that is not there', { terms: ['needle-7 request'] }, 'FALSE'],
    ['rare data', { data: '{"order":"rare"}' }, "log_data->>'order' = 'rare'"],
    ['a token and a device', { terms: ['needle-7'], deviceId: 'dev-0' }, "message LIKE '%needle-7%' AND device_id = 'dev-0'"],
  ];
  for (const [name, s, where] of cases) {
    const expected = await truth(where);
    const got = await walk(s, 5);
    t.same(got.ids, expected, `${name}: ${expected.length} logs, in order, none twice, none missed`);
    t.equal(got.pages, Math.max(1, Math.ceil(expected.length / 5)), `${name}: ${got.pages} pages`);
  }
  const days = new Set((await c.query<{ d: string }>("SELECT DISTINCT tableoid::regclass::text AS d FROM logs WHERE message LIKE '%needle-7%'")).rows.map((r) => r.d));
  t.equal(days.size, 4, 'the token is in 3 closed partitions and the open one');
});

t.test('level leaves each get their indexes; a build cut short is dropped and built again', async (t) => {
  const server = await startPostgres();
  const { cfg, c } = await database(server, 'leaves', { LOGD_RETENTION_BY_LEVEL: 'DEBUG=3' });
  await fill(c, cfg, 1, 600);
  const built = await buildAll(c, cfg);
  t.same(built.sort(), ['logs_20260614_00_debug_data_gin', 'logs_20260614_00_debug_message_trgm', 'logs_20260614_00_rest_data_gin', 'logs_20260614_00_rest_message_trgm']);
  // what a crash during CREATE INDEX CONCURRENTLY leaves: an index marked invalid, which no query uses
  await c.query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'logs_20260614_00_rest_message_trgm'::regclass");
  const state = async (): Promise<string | undefined> => [...await searchStates(c, await listPartitions(c), NOW)].find(([p]) => p.name === 'logs_20260614_00')?.[1];
  t.equal(await state(), 'pending', 'its partition is pending again');
  const again = await buildSearchIndex(c, cfg, NOW, 0);
  t.same(again.dropped, ['logs_20260614_00_rest_message_trgm'], 'the invalid index dropped');
  t.equal(again.built, 'logs_20260614_00_rest_message_trgm', 'and built again');
  t.ok((await indexes(c)).every((x) => x.valid));
  t.equal(await state(), 'built');
});

t.test('a pass builds nothing while the backlog is high, another node builds, or the switch is off', async (t) => {
  const server = await startPostgres();
  const { cfg, c } = await database(server, 'skips');
  await fill(c, cfg, 1, 300);
  t.equal((await buildSearchIndex(c, cfg, NOW, cfg.storage.search_index_max_backlog + 1)).skipped, 'backlog');
  const other = new pg.Client({ host: cfg.postgres.host, port: cfg.postgres.port, user: cfg.postgres.user, database: cfg.postgres.database });
  await other.connect();
  await other.query('SELECT pg_advisory_lock(4812990120)');
  t.equal((await buildSearchIndex(c, cfg, NOW, 0)).skipped, 'other node');
  await other.end();
  const off = loadConfig(undefined, { ...server.env, POSTGRES_DB: 'skips', LOGD_STORAGE_SEARCH_INDEXES: 'false' });
  t.equal((await buildSearchIndex(c, off, NOW, 0)).skipped, 'disabled');
  t.same(await indexes(c), [], 'nothing built');
  t.equal((await buildAll(c, cfg)).length, 2);
  t.equal((await buildSearchIndex(c, cfg, NOW, 0)).skipped, 'nothing to build', 'then nothing left');
});

t.test('a running logd builds them by itself and `logd storage` shows the states', async (t) => {
  const redis = await startRedis();
  const server = await startPostgres();
  const logd = await startLogd({ redis, pg: server, env: { LOGD_STORAGE_MAINTENANCE_INTERVAL_S: '1' } });
  t.teardown(() => logd.stop());
  const old = new Date(Date.now() - 2 * DAY_MS).toISOString();
  t.equal((await postJson(`${logd.url}/api/log`, { device_id: 's', log_level: 'INFO', message: 'two days old needle', timestamp: old })).status, 200);
  const day = new Date(Date.now() - 2 * DAY_MS).toISOString().slice(0, 10).replaceAll('-', '');
  await waitFor('both indexes of the two-day-old partition', async () =>
    Number((await server.query<{ n: string }>(`SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname ~ '^logs_${day}_00_(message_trgm|data_gin)$' AND i.indisvalid`))[0].n) === 2, 30_000);
  const out = (await promisify(execFile)(process.execPath, [LOGD_BIN, 'storage'], { env: { ...process.env, ...serviceEnv(redis, server) } })).stdout;
  t.match(out, new RegExp(`^logs_${day}_00 .* built `, 'm'), 'the closed partition: built');
  t.match(out, /\bsearch\b/, 'a search column');
  t.match(out, new RegExp(`^logs_${new Date().toISOString().slice(0, 10).replaceAll('-', '')}_00 .* open `, 'm'), 'the partition of now: open');
});

/** Partitions of `logs` `daysAgo` days before today, each with `rows` rows long enough that a trigram index takes seconds to build. */
async function bigPartitions(c: pg.Client, cfg: Config, daysAgo: number[], rows: number): Promise<string[]> {
  const days = daysAgo.map((d) => Date.now() - d * DAY_MS - (Date.now() % DAY_MS));
  await createPartitions(c, cfg, days);
  const names = days.map((day) => `logs_${new Date(day).toISOString().slice(0, 10).replaceAll('-', '')}_00`);
  for (const [i, name] of names.entries()) {
    await c.query(`INSERT INTO ${name} (device_id, log_level, message, log_data, created_at)
      SELECT 'dev', 'INFO', md5(i::text) || ' ' || md5((i + 1)::text), jsonb_build_object('i', i), to_timestamp(${days[i] / 1000} + i * 0.1)
      FROM generate_series(1, ${rows}) i`);
  }
  return names;
}

const building = async (c: pg.Client, table: string): Promise<boolean> =>
  (await c.query('SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid WHERE c.relname = $1', [table])).rows.length > 0;

t.test('a build under way gives way to a growing backlog, dies with a killed persister, and is made again each time', async (t) => {
  const redisServer = await startRedis();
  const server = await startPostgres();
  const logd = await startLogd({ redis: redisServer, pg: server, env: { LOGD_STORAGE_MAINTENANCE_INTERVAL_S: '1', LOGD_STORAGE_SEARCH_INDEX_MAX_BACKLOG: '100', LOGD_LOG_LEVEL: 'info' } });
  t.teardown(() => logd.stop());
  const c = new pg.Client(server.url);
  await c.connect();
  t.teardown(() => c.end());
  const [newer, older] = await bigPartitions(c, loadConfig(undefined, server.env), [2, 3], 300_000);
  const valid = async (table: string): Promise<number> => (await indexes(c)).filter((x) => x.name.startsWith(`${table}_`) && x.valid).length;

  await waitFor('a build on the newer partition', () => building(c, newer), 30_000, 20);
  const redis = new Redis(redisServer.port, redisServer.host);
  t.teardown(() => redis.disconnect());
  await redis.incrby('logs:stream:backlog', 1000);
  await waitFor('the build given up', async () => logd.output().includes('search index build given up') && !(await building(c, newer)), 10_000);
  t.equal(await valid(newer), 0, 'no valid index on it yet');
  await redis.decrby('logs:stream:backlog', 1000);
  await waitFor('both indexes of the newer partition, once the backlog went down', async () => (await valid(newer)) === 2, 120_000);
  t.notMatch(logd.output(), /search index build failed/, 'giving way is not logged as a failure');

  await waitFor('a build on the older partition', () => building(c, older), 60_000, 20);
  const [persister] = logd.children('persister');
  process.kill(persister, 'SIGKILL');
  const invalid = `${older}_message_trgm`;
  await waitFor('the build of the killed persister ended, its index left invalid', async () =>
    !(await building(c, older)) && (await indexes(c)).some((x) => x.name === invalid && !x.valid), 15_000, 20);
  const plan = (await c.query(`EXPLAIN (COSTS OFF) SELECT id FROM ${older} WHERE message ILIKE '%abcdef%'`)).rows.map((r) => r['QUERY PLAN']).join('\n');
  t.notMatch(plan, new RegExp(invalid), 'a query does not use the invalid index');
  await waitFor('the restarted persister drops it and builds both indexes of the older partition', async () => (await valid(older)) === 2, 120_000);
  t.not(logd.children('persister')[0], persister, 'a new persister');
});

t.test('a retention drop of a partition cancels its index build rather than wait for it', async (t) => {
  const server = await startPostgres();
  const { cfg, c } = await database(server, 'dropbuild', { LOGD_RETENTION_DAYS: '1' });
  const [table] = await bigPartitions(c, cfg, [3], 300_000);
  const builder = new pg.Client({ host: cfg.postgres.host, port: cfg.postgres.port, user: cfg.postgres.user, database: 'dropbuild' });
  await builder.connect();
  t.teardown(() => builder.end());
  const build = buildSearchIndex(builder, cfg, Date.now(), 0);
  await waitFor('the build', () => building(c, table), 30_000, 20);
  const t0 = Date.now();
  const pass = await maintain(cfg, Date.now(), undefined, c);
  t.ok(pass.dropped.some((d) => d.partition === table), 'the expired partition dropped in this pass');
  t.ok(Date.now() - t0 < 2000, `without waiting for the build (${Date.now() - t0} ms)`);
  t.equal((await build).skipped, 'cancelled', 'the build says it was cancelled');
  t.equal((await c.query('SELECT to_regclass($1) AS r', [table])).rows[0].r, null, 'the table is gone, and with it the invalid index');
  t.same(await indexes(c), []);
});
