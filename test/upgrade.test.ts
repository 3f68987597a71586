/**
 * Upgrade of a database made before partitioning (test/fixtures/
 * schema-unpartitioned.sql: one plain `logs`) by `logd migrate` and by
 * `logd serve`: with 1,000,000 rows over 40 days (a few without created_at,
 * a few in the future), no row is lost or duplicated, the rollups equal
 * COUNT(*), the legacy indexes are attached (not rebuilt), a second migrate
 * changes nothing, ingest works after, and retention drops logs_legacy
 * whole without taking the id sequence with it.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config';
import { maintain } from '../src/storage/maintenance';
import { LOGD_BIN, ROOT, postJson, request, serviceEnv, startLogd, waitRows } from './helpers/logd';
import { assertRollupsExact } from './helpers/rollups';
import { cleanupAll, startPostgres, startRedis, type PostgresServer } from './helpers/services';

const OLD_SCHEMA = readFileSync(path.join(ROOT, 'test', 'fixtures', 'schema-unpartitioned.sql'), 'utf8');
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The default accepted future (startLogd's year would have the first maintenance pass make a year of partitions). */
const SERVE_ENV = { LOGD_INGEST_MAX_FUTURE_S: '3600' };

t.teardown(cleanupAll);

/**
 * An old-schema database holding `rows` logs spread over 40 days up to now
 * (100 devices, the 5 levels), 5 of them without created_at, plus 8 logs
 * hours to days ahead; the old schema's rollups backfilled over them. The
 * rows are loaded in two halves at once, before the two secondary indexes,
 * which the schema's own statements then build, both at once.
 */
async function oldDatabase(db: PostgresServer, rows: number): Promise<void> {
  const clients = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
  await Promise.all(clients.map((c) => c.connect()));
  const [c] = clients;
  try {
    await c.query(OLD_SCHEMA);
    const indexes = OLD_SCHEMA.match(/^CREATE INDEX IF NOT EXISTS logs_\w+ ON logs .*;$/gm)!;
    if (indexes.length !== 2) throw new Error(`the old schema should index logs twice: ${indexes.join(' ')}`);
    await c.query('DROP INDEX logs_device_created_idx, logs_created_idx');
    const step = (40 * DAY_MS) / rows / 1000;
    await Promise.all(clients.map((client, half) => client.query(`
      INSERT INTO logs (device_id, log_level, message, log_data, created_at, indexed_at)
      SELECT 'device-' || (g * 37 % 100), (ARRAY['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'])[g % 5 + 1],
             'message ' || g, jsonb_build_object('seq', g, 'zone', g % 13),
             CASE WHEN g % ($1::int / 5) = 0 THEN NULL ELSE at END, at + interval '1 second'
      FROM generate_series($2::int, $3::int) g, LATERAL (SELECT now() - interval '40 days' + g * $4::float8 * interval '1 second' AS at) a`,
    [rows, 1 + (half * rows) / 2, ((half + 1) * rows) / 2, step])));
    await Promise.all(clients.map((client, i) => client.query(indexes[i])));
    await c.query(`
      INSERT INTO logs (device_id, log_level, message, log_data, created_at)
      SELECT 'device-' || h % 100, 'WARNING', 'from a clock ahead', '{}', now() + h * interval '1 hour'
      FROM unnest(ARRAY[2, 5, 9, 26, 50, 75, 100, 170]) h`);
    await c.query("DELETE FROM logd_migrations WHERE name = 'rollups-backfill'");
    await c.query(OLD_SCHEMA);
  } finally {
    await Promise.all(clients.map((client) => client.end()));
  }
}

interface Snapshot {
  all: { count: string; sum: string; max: string };
  groups: unknown[];
}

/** count(*), sum(id) and max(id), over all rows and per level and per device, in one scan. */
async function snapshot(db: PostgresServer): Promise<Snapshot> {
  const groups = await db.query<Snapshot['all']>(`SELECT log_level, device_id, count(*), sum(id)::text AS sum, max(id)::text AS max FROM logs
    GROUP BY GROUPING SETS ((), (log_level), (device_id)) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST`);
  return { all: groups[0], groups };
}

function logdMigrate(db: PostgresServer): { ms: number; status: number | null; out: string } {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [LOGD_BIN, 'migrate'], { env: { ...process.env, ...serviceEnv(undefined, db) }, encoding: 'utf8', timeout: 120_000 });
  return { ms: Date.now() - t0, status: r.status, out: `${r.stdout}${r.stderr}` };
}

const relkind = async (db: PostgresServer): Promise<string> => (await db.query<{ relkind: string }>("SELECT relkind FROM pg_class WHERE oid = 'logs'::regclass"))[0].relkind;
const partitions = async (db: PostgresServer): Promise<string[]> =>
  (await db.query<{ p: string }>("SELECT relid::text AS p FROM pg_partition_tree('logs') WHERE level = 1 ORDER BY 1")).map((r) => r.p);
/** The end of logs_legacy's range (its bound is FROM (MINVALUE) TO (B)). */
const legacyEnd = async (db: PostgresServer): Promise<number> => {
  const [r] = await db.query<{ b: string }>("SELECT pg_get_expr(relpartbound, oid) AS b FROM pg_class WHERE relname = 'logs_legacy'");
  return Date.parse(/TO \('([^']+)'\)/.exec(r.b)![1]);
};

/** Posts these logs and waits until all are stored, none dead-lettered. */
async function ingest(t: Test, db: PostgresServer, url: string, device: string, timestamps: (number | undefined)[]): Promise<any[]> {
  const logs = timestamps.map((ts, i) => ({ device_id: device, log_level: 'INFO', message: `after the upgrade ${i}`, ...(ts === undefined ? {} : { timestamp: new Date(ts).toISOString() }) }));
  t.equal((await postJson(`${url}/api/logs/batch`, { logs })).status, 200, 'the door takes the logs');
  const stored = await waitRows(db, logs.length, 'device_id = $1', [device]);
  const health = await request(`${url}/health`);
  t.equal(health.body.components.stream.dead_letters, 0, 'nothing dead-lettered');
  return stored;
}

t.test('logd migrate upgrades 1,000,000 rows in place', async (t) => {
  const db = await startPostgres();
  let t0 = Date.now();
  await oldDatabase(db, 1_000_000);
  t.comment(`loaded 1,000,008 rows into the old schema and backfilled its rollups in ${Date.now() - t0} ms`);

  const before = await snapshot(db);
  t.equal(before.all.count, '1000008', 'the old database holds 1,000,008 rows');
  const nullIds = (await db.query<{ id: string }>('SELECT id FROM logs WHERE created_at IS NULL ORDER BY id')).map((r) => r.id);
  const futureIds = (await db.query<{ id: string }>("SELECT id FROM logs WHERE created_at > now() + interval '90 minutes' ORDER BY id")).map((r) => r.id);
  t.equal(nullIds.length, 5, 'rows without created_at');
  t.equal(futureIds.length, 8, 'rows from a clock ahead');
  const files = async (names: string[]) => db.query('SELECT relfilenode FROM pg_class WHERE relname = ANY($1) ORDER BY array_position($1, relname)', [names]);
  const oldFiles = await files(['logs', 'logs_device_created_idx', 'logs_created_idx', 'logs_pkey']);

  const first = logdMigrate(db);
  t.equal(first.status, 0, `logd migrate exits 0\n${first.out}`);
  t.comment(`logd migrate upgraded 1,000,008 rows: the upgrade took ${/"ms":(\d+)/.exec(first.out)?.[1]} ms, the process ${first.ms} ms`);
  t.match(first.out, /it is now the partition logs_legacy/, 'it says what it did');

  t.equal(await relkind(db), 'p', 'logs is partitioned');
  const parts = await partitions(db);
  t.ok(parts.includes('logs_legacy'), 'logs_legacy is a partition of logs');
  const after = await snapshot(db);
  t.same(after, before, 'count, sum(id), max(id), per level and per device: nothing lost or duplicated');
  const [fixed] = await db.query<{ n: string }>('SELECT count(*) AS n FROM logs WHERE id = ANY($1) AND created_at = indexed_at', [nullIds]);
  t.equal(Number(fixed.n), nullIds.length, 'the rows without created_at got their indexed_at');
  const moved = await db.query<{ p: string; n: string }>('SELECT tableoid::regclass::text AS p, count(*) AS n FROM logs WHERE id = ANY($1) GROUP BY 1 ORDER BY 1', [futureIds]);
  t.ok(moved.every((r) => r.p !== 'logs_legacy') && moved.reduce((s, r) => s + Number(r.n), 0) === futureIds.length,
    `the rows from the future moved to new partitions (${moved.map((r) => r.p).join(', ')})`);
  const [legacyMax] = await db.query<{ t: Date }>('SELECT max(created_at) AS t FROM logs_legacy');
  t.ok(legacyMax.t.getTime() < await legacyEnd(db), 'logs_legacy holds only its range');
  await assertRollupsExact(t, db, 'after logd migrate');

  t.same(await files(['logs_legacy']), oldFiles.slice(0, 1), 'logs_legacy is the old table, not a copy');
  const attached = await db.query(`SELECT c.relname, c.relfilenode, p.relname AS parent FROM pg_class c
      LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
    WHERE c.relname = ANY($1) ORDER BY array_position($1, c.relname)`, [['logs_legacy_device_created_idx', 'logs_legacy_created_idx', 'logs_legacy_pkey']]);
  t.same(attached, [
    { relname: 'logs_legacy_device_created_idx', relfilenode: oldFiles[1].relfilenode, parent: 'logs_device_created_idx' },
    { relname: 'logs_legacy_created_idx', relfilenode: oldFiles[2].relfilenode, parent: 'logs_created_idx' },
    { relname: 'logs_legacy_pkey', relfilenode: oldFiles[3].relfilenode, parent: null },
  ], 'the old indexes, not rebuilt, are partitions of the partitioned indexes');
  const tree = await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_partition_tree('logs_device_created_idx') WHERE isleaf");
  t.equal(Number(tree[0].n), parts.length, 'every partition has its index under logs_device_created_idx');

  const second = logdMigrate(db);
  t.equal(second.status, 0, `a second logd migrate exits 0\n${second.out}`);
  t.notMatch(second.out, /logs_legacy/, 'a second logd migrate upgrades nothing');
  t.same(await partitions(db), parts, 'the same partitions');
  t.same(await snapshot(db), before, 'the same rows');

  // as a logd of the previous version would, until its restart
  const [row] = await db.query<{ id: string; p: string }>(
    "INSERT INTO logs (device_id, log_level, created_at) VALUES ('after-migrate', 'INFO', now() + interval '23 hours') RETURNING id, tableoid::regclass::text AS p");
  t.ok(BigInt(row.id) > BigInt(before.all.max), 'a new row gets an id above the old ones');
  t.not(row.p, 'logs_legacy', `the partitions of the coming day are there (${row.p})`);
  await db.query('DELETE FROM logs WHERE id = $1', [row.id]);

  await t.test('logd serve ingests into the upgraded database', async (t) => {
    const redis = await startRedis();
    const logd = await startLogd({ redis, pg: db, workers: 1, env: SERVE_ENV });
    t.teardown(() => logd.stop());
    const now = Date.now();
    const stored = await ingest(t, db, logd.url, 'after-serve', [undefined, now - 10 * DAY_MS, now + 30 * 60_000]);
    t.ok(stored.every((r) => BigInt(r.id) > BigInt(row.id)), 'ids continue the sequence');
    const [old] = await db.query<{ p: string }>("SELECT tableoid::regclass::text AS p FROM logs WHERE device_id = 'after-serve' AND created_at < now() - interval '9 days'");
    t.equal(old.p, 'logs_legacy', 'a late log of 10 days ago goes into logs_legacy, whose range holds it');
  });

  await t.test('retention drops logs_legacy whole; the id sequence stays', async (t) => {
    const cfg = loadConfig(undefined, db.env);
    const at = (await legacyEnd(db)) + cfg.retention.days * DAY_MS + HOUR_MS;
    t0 = Date.now();
    const pass = await maintain(cfg, at, undefined);
    t.comment(`the pass dropped ${pass.dropped.map((d) => `${d.partition} (${d.rows} rows)`).join(', ')} in ${Date.now() - t0} ms`);
    const legacy = pass.dropped.find((d) => d.partition === 'logs_legacy');
    t.ok(legacy, 'logs_legacy is dropped');
    t.notOk((await partitions(db)).includes('logs_legacy'), 'logs_legacy is gone');
    t.equal((await db.query('SELECT 1 FROM pg_class WHERE relname = $1', ['logs_legacy'])).length, 0, 'the table is gone');
    const [left] = await db.query<{ n: string }>('SELECT count(*) AS n FROM logs');
    t.equal(BigInt(left.n) + pass.dropped.reduce((s, d) => s + BigInt(d.rows), 0n), BigInt(before.all.count) + 3n, 'the dropped rows and the rows left make up every row');
    t.same(await db.query("SELECT pg_get_serial_sequence('logs', 'id') AS s"), [{ s: 'public.logs_id_seq' }], 'logs_id_seq belongs to logs.id');
    await assertRollupsExact(t, db, 'after the drop');
    const [fresh] = await db.query<{ id: string }>("INSERT INTO logs (device_id, log_level, created_at) VALUES ('after-drop', 'INFO', $1) RETURNING id", [new Date(at)]);
    t.ok(BigInt(fresh.id) > BigInt(row.id) + 3n, 'a new row still gets a new id');
  });
});

t.test('logd serve upgrades an old database at start', async (t) => {
  const db = await startPostgres();
  const redis = await startRedis();
  await oldDatabase(db, 5000);
  const before = await snapshot(db);
  const logd = await startLogd({ redis, pg: db, workers: 1, env: SERVE_ENV });
  t.teardown(() => logd.stop());
  t.equal(await relkind(db), 'p', 'logs is partitioned');
  t.ok((await partitions(db)).includes('logs_legacy'), 'logs_legacy is a partition of logs');
  t.same(await snapshot(db), before, 'nothing lost or duplicated');
  await assertRollupsExact(t, db, 'after the upgrade at start');
  const stored = await ingest(t, db, logd.url, 'after-serve', [undefined, Date.now() - 3 * DAY_MS]);
  t.ok(stored.every((r) => BigInt(r.id) > BigInt(before.all.max)), 'ids continue the sequence');
  await assertRollupsExact(t, db, 'after ingest');
});
