// Self-test of the private-server helpers: real redis-server and postgres, no mocks.
import t from 'tap';
import * as fs from 'node:fs';
import { Redis } from 'ioredis';
import { cleanupAll, freePort, startPostgres, startRedis, waitFor } from './helpers/services';

t.teardown(cleanupAll);

/** Runs fn with a connected ioredis client and always disconnects, so it never reconnects into a stopped server. */
async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('freePort returns a usable port', async (t) => {
  const port = await freePort();
  t.ok(port > 0 && port < 65536, `port ${port}`);
});

t.test('redis: data survives stop/start (AOF)', async (t) => {
  const began = Date.now();
  const redis = await startRedis({ appendfsync: 'always' });
  t.comment(`redis started in ${Date.now() - began} ms`);
  t.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
  t.ok(fs.existsSync(`${redis.dir}/redis.log`), 'log file in its dir');

  await withRedis(redis.url, async (r) => t.equal(await r.set('greeting', 'hello'), 'OK'));
  const firstPid = redis.pid();
  await redis.stop();
  t.equal(redis.pid(), undefined, 'no pid once stopped');
  t.notOk(firstPid !== undefined && alive(firstPid), 'process gone after stop()');

  await redis.start();
  t.not(redis.pid(), firstPid, 'a new process');
  t.equal(await withRedis(redis.url, (r) => r.get('greeting')), 'hello', 'key survived the restart');

  // kill() + start(): appendfsync always means even a SIGKILL loses nothing acknowledged.
  await withRedis(redis.url, (r) => r.set('after-kill', '1'));
  redis.kill();
  await redis.start();
  t.equal(await withRedis(redis.url, (r) => r.get('after-kill')), '1', 'key survived SIGKILL');
  await redis.stop();
});

t.test('postgres: rows survive stop/start', async (t) => {
  const began = Date.now();
  const pg = await startPostgres();
  t.comment(`postgres started in ${Date.now() - began} ms`);
  t.equal(pg.database, 'logd');
  t.equal(pg.url, `postgres://logd@127.0.0.1:${pg.port}/logd`);
  t.same(pg.env, { POSTGRES_HOST: '127.0.0.1', POSTGRES_PORT: String(pg.port), POSTGRES_USER: 'logd', POSTGRES_DB: 'logd' });

  await pg.query('CREATE TABLE t (id int PRIMARY KEY, msg text NOT NULL)');
  await pg.query('INSERT INTO t VALUES ($1, $2)', [1, 'hello ünïcode']);
  await pg.stop();
  await pg.start();
  t.same(await pg.query<{ id: number; msg: string }>('SELECT id, msg FROM t'), [{ id: 1, msg: 'hello ünïcode' }]);

  const url = await pg.createDatabase('other db');
  t.equal(url, `postgres://logd@127.0.0.1:${pg.port}/other%20db`);
  const [row] = await pg.query<{ n: string }>("SELECT count(*) AS n FROM pg_database WHERE datname = 'other db'");
  t.equal(row?.n, '1', 'database created');

  // After a crash (SIGKILL) start() runs recovery and committed rows are still there.
  pg.kill();
  await pg.start();
  t.same(await pg.query('SELECT id FROM t'), [{ id: 1 }], 'row survived SIGKILL + recovery');
});

t.test('waitFor', async (t) => {
  let calls = 0;
  t.equal(await waitFor('third call', () => (++calls >= 3 ? 'done' : false), 1000, 5), 'done');

  await t.rejects(waitFor('never', () => false, 100, 10), { message: 'timed out after 100 ms waiting for never' });
  await t.rejects(
    waitFor('a throwing check', () => {
      throw new Error('boom');
    }, 100, 10),
    { message: /^timed out after 100 ms waiting for a throwing check.*boom/ },
  );
  // A check that never settles must not outlive the deadline.
  await t.rejects(waitFor('a hung check', () => new Promise<boolean>(() => undefined), 100), {
    message: 'timed out after 100 ms waiting for a hung check',
  });
});

t.test('cleanupAll stops servers and removes their dirs', async (t) => {
  const redis = await startRedis();
  const pid = redis.pid();
  await cleanupAll();
  t.notOk(pid !== undefined && alive(pid), 'redis process gone');
  t.notOk(fs.existsSync(redis.dir), 'dir removed');
});
