/**
 * The embedded mode is private: no other local user can read the data
 * directory (the AOF holds logs and token records), logd's own PostgreSQL
 * role is no superuser (also in a data directory an older logd made, whose
 * application role was the bootstrap superuser), and `logd serve` refuses to
 * run as root outside the embedded development setup.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { postJson, request, ROOT, startLogd } from './helpers/logd';

const asRoot = process.getuid?.() === 0;
/** Both services embedded, and no server.allow_root: what `npm start` runs. */
const EMBEDDED = { REDIS_HOST: '', POSTGRES_HOST: '', LOGD_SERVER_ALLOW_ROOT: 'false' };
const PG_BIN = '/usr/lib/postgresql/15/bin';

const mode = (file: string): number => lstatSync(file).mode & 0o777;

/** A new data directory whose parents the postgres user can search (as root, PostgreSQL runs as it). */
function dataDirFor(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logd-private-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every entry under `dir` (itself as '.') with its mode, and the mode it should have: directories 0700, the rest 0600. */
function redisModes(dir: string): { actual: Record<string, string>; expected: Record<string, string> } {
  const actual: Record<string, string> = {};
  const expected: Record<string, string> = {};
  const walk = (rel: string): void => {
    const file = path.join(dir, rel);
    actual[rel] = mode(file).toString(8);
    expected[rel] = lstatSync(file).isDirectory() ? '700' : '600';
    if (lstatSync(file).isDirectory()) for (const name of readdirSync(file)) walk(path.join(rel, name));
  };
  walk('.');
  return { actual, expected };
}

/** A query as logd's application role, over the embedded socket. */
async function asLogd<T extends pg.QueryResultRow>(dataDir: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ host: path.join(dataDir, 'pg'), port: 5432, user: 'logd', database: 'logd', application_name: 'test' });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const messages = async (dataDir: string): Promise<string[]> =>
  (await asLogd<{ message: string }>(dataDir, 'SELECT message FROM logs ORDER BY id')).map((r) => r.message);

/**
 * What an older logd left: `initdb -U logd` (logd the bootstrap superuser),
 * the database and schema.sql applied by that superuser, one stored log, a
 * 0755 data directory with a world-readable redis.log and postgres.log.
 */
function olderDataDir(dataDir: string): void {
  const owner = asRoot
    ? { uid: Number(execFileSync('id', ['-u', 'postgres'])), gid: Number(execFileSync('id', ['-g', 'postgres'])) }
    : undefined;
  const as = { ...owner, stdio: 'pipe' } as const;
  const cluster = path.join(dataDir, 'pg');
  const logFile = path.join(dataDir, 'postgres.log');
  mkdirSync(cluster, { mode: 0o700 });
  mkdirSync(path.join(dataDir, 'redis'), { mode: 0o755 });
  writeFileSync(path.join(dataDir, 'redis', 'redis.log'), 'older\n', { mode: 0o644 });
  writeFileSync(logFile, '', { mode: 0o644 });
  if (owner) for (const f of [cluster, logFile]) chownSync(f, owner.uid, owner.gid);
  execFileSync(path.join(PG_BIN, 'initdb'), ['-D', cluster, '-U', 'logd', '-A', 'trust', '-E', 'UTF8', '--locale=C'], as);
  // pg_ctl -w waits until the server accepts connections (or fails).
  execFileSync(path.join(PG_BIN, 'pg_ctl'), ['start', '-w', '-D', cluster, '-l', logFile, '-o', `-k ${cluster} -c listen_addresses=`], as);
  try {
    const sql = (database: string, text: string): void => {
      execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cluster, '-U', 'logd', '-d', database], { input: text, stdio: ['pipe', 'pipe', 'pipe'] });
    };
    sql('postgres', 'CREATE DATABASE logd');
    // the schema of the release before partitioning: logd upgrades it at start
    sql('logd', `${readFileSync(path.join(ROOT, 'test', 'fixtures', 'schema-unpartitioned.sql'), 'utf8')}
INSERT INTO logs (device_id, log_level, message) VALUES ('sec', 'INFO', 'stored by an older logd');`);
  } finally {
    execFileSync(path.join(PG_BIN, 'pg_ctl'), ['stop', '-w', '-m', 'fast', '-D', cluster], as);
  }
}

t.test('a fresh embedded data directory is private and logd connects as no superuser', async (t) => {
  const dataDir = dataDirFor(t);
  const logd = await startLogd({ env: EMBEDDED, workers: 1, args: ['--data-dir', dataDir] });
  t.teardown(() => logd.stop());

  const posted = await postJson(`${logd.url}/api/log`, { device_id: 'sec', log_level: 'INFO', message: 'private' });
  t.equal(posted.status, 200, 'a log is accepted');
  await waitFor('the row', async () => (await messages(dataDir)).includes('private'), 20_000);
  const read = await request(`${logd.url}/api/logs/sec`);
  t.same([read.status, read.body?.data?.map((l: { message: string }) => l.message)], [200, ['private']], 'and read back through the HTTP workers');
  const roles = await waitFor('logd\'s own connections', async () => {
    const rows = await asLogd(dataDir, `SELECT DISTINCT usename, rolsuper, rolcreatedb, rolcreaterole FROM pg_stat_activity JOIN pg_roles ON rolname = usename
      WHERE application_name LIKE 'logd:%'`);
    return rows.length ? rows : undefined;
  });
  t.same(roles, [{ usename: 'logd', rolsuper: false, rolcreatedb: false, rolcreaterole: false }], 'logd\'s processes connect as logd, which is no superuser and cannot create databases or roles');

  t.equal(mode(dataDir).toString(8), '750', 'the data directory is 0750');
  const redisDir = path.join(dataDir, 'redis');
  const names = readdirSync(redisDir).sort();
  const aof = readdirSync(path.join(redisDir, 'appendonlydir'));
  t.same([names, aof.some((f) => f.endsWith('.incr.aof'))], [['appendonlydir', 'redis.log', 'redis.pid', 'redis.sock'], true], 'Redis keeps its AOF, log, pid file and socket there');
  const { actual, expected } = redisModes(redisDir);
  t.same(actual, expected, 'Redis\' directories are 0700, its files and socket 0600');
  t.equal(mode(path.join(dataDir, 'postgres.log')).toString(8), '640', 'postgres.log is 0640');
  t.equal(/running as root/.test(logd.output()), asRoot, 'logd warns when it runs as root');
});

t.test('a data directory made by an older logd: its superuser is renamed, logd connects unprivileged, logs kept', async (t) => {
  const dataDir = dataDirFor(t);
  olderDataDir(dataDir);
  const logd = await startLogd({ env: EMBEDDED, workers: 1, args: ['--data-dir', dataDir] });
  t.teardown(() => logd.stop());

  const posted = await postJson(`${logd.url}/api/log`, { device_id: 'sec', log_level: 'INFO', message: 'stored as logd' });
  t.equal(posted.status, 200, 'a log is accepted');
  await waitFor('both rows', async () => (await messages(dataDir)).length === 2, 20_000);
  t.same(await messages(dataDir), ['stored by an older logd', 'stored as logd'], 'the older log is kept, the new one stored');
  t.same(
    await asLogd(dataDir, 'SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user'),
    [{ rolsuper: false, rolcreatedb: false, rolcreaterole: false }],
    'logd is no superuser any more',
  );
  t.same(
    await asLogd(dataDir, "SELECT (SELECT rolname FROM pg_roles WHERE oid = 10) AS bootstrap, array_agg(DISTINCT relowner::regrole::text) AS owners FROM pg_class WHERE relnamespace = 'public'::regnamespace"),
    [{ bootstrap: 'postgres', owners: ['logd'] }],
    'the bootstrap superuser is postgres now; logd owns every table, index and sequence',
  );
  t.same(
    [mode(dataDir), mode(path.join(dataDir, 'redis')), mode(path.join(dataDir, 'redis', 'redis.log')), mode(path.join(dataDir, 'postgres.log'))].map((m) => m.toString(8)),
    ['750', '700', '600', '640'],
    'the older, looser modes are tightened',
  );
});

t.test('as root with an external Redis or PostgreSQL, logd serve refuses to start and says how to run it', { skip: !asRoot && 'needs root' }, async (t) => {
  const redis = await startRedis();
  const pgServer = await startPostgres();
  const logd = await startLogd({ redis, pg: pgServer, env: { LOGD_SERVER_ALLOW_ROOT: 'false' }, waitHealthy: false });
  t.teardown(async () => {
    await logd.stop();
    await cleanupAll();
  });
  await waitFor('logd to exit or to answer /health', async () =>
    logd.proc.exitCode !== null || (await fetch(`${logd.url}/health`).then((r) => r.ok, () => false)), 30_000);
  t.equal(logd.proc.exitCode, 2, 'exit code 2, a configuration error (systemd does not restart it)');
  t.match(logd.output(), /server\.allow_root.*User=logd.*useradd --system logd.*runuser -u logd -- logd serve/s, 'the message names the setting and how to run logd instead');
});
