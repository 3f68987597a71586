/**
 * The embedded default: with no Redis or PostgreSQL configured, logd starts
 * its own under the data directory, stops them on exit, and finds its data
 * again at the next start.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { waitFor } from './helpers/services';
import { postJson, startLogd } from './helpers/logd';

async function rows(dataDir: string): Promise<string[]> {
  const client = new pg.Client({ host: path.join(dataDir, 'pg'), port: 5432, user: 'logd', database: 'logd' });
  await client.connect();
  try {
    return (await client.query<{ message: string }>('SELECT message FROM logs ORDER BY id')).rows.map((r) => r.message);
  } finally {
    await client.end();
  }
}

/** The pid a service wrote (first line of its pid file); throws when there is none, so a check never passes untested. */
function pidIn(pidFile: string): number {
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${pidFile} holds no pid`);
  return pid;
}

const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The embedded services' pids, taken while logd runs. */
function servicePids(dataDir: string): { redis: number; postgres: number } {
  return { redis: pidIn(path.join(dataDir, 'redis', 'redis.pid')), postgres: pidIn(path.join(dataDir, 'pg', 'postmaster.pid')) };
}

/** Which of `pids` still run. */
const stillRunning = (pids: { redis: number; postgres: number }): string[] =>
  Object.entries(pids).filter(([, pid]) => running(pid)).map(([name, pid]) => `${name} (pid ${pid})`);

t.test('embedded Redis and PostgreSQL', async (t) => {
  // Parents of the data directory must be searchable by the postgres user (it refuses root).
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'logd-embedded-'));
  chmodSync(dataDir, 0o755);
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = { REDIS_HOST: '', POSTGRES_HOST: '' };

  await t.test('starts from an empty data directory', async (t) => {
    const logd = await startLogd({ env, workers: 1, args: ['--data-dir', dataDir] });
    t.teardown(() => logd.stop());
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'emb', log_level: 'INFO', message: 'first run' });
    t.equal(r.status, 200);
    await waitFor('the row', async () => (await rows(dataDir)).includes('first run'), 20_000);
    const pids = servicePids(dataDir);
    t.same(stillRunning(pids), [`redis (pid ${pids.redis})`, `postgres (pid ${pids.postgres})`], 'embedded redis-server and postgres run while logd does');
    t.equal(await logd.stop('SIGTERM'), 0, 'clean exit');
    t.same(stillRunning(pids), [], 'embedded redis-server and postgres stopped with it');
    t.notOk(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), 'postgres shut down by itself (it removed postmaster.pid)');
  });

  await t.test('starts again from the existing data directory, data kept', async (t) => {
    const logd = await startLogd({ env, workers: 1, args: ['--data-dir', dataDir] });
    t.teardown(() => logd.stop());
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'emb', log_level: 'INFO', message: 'second run' });
    t.equal(r.status, 200);
    await waitFor('both rows', async () => (await rows(dataDir)).length === 2, 20_000);
    t.same(await rows(dataDir), ['first run', 'second run']);
    const pids = servicePids(dataDir);
    t.equal(await logd.stop('SIGINT'), 0, 'clean exit on SIGINT too');
    t.same(stillRunning(pids), [], 'embedded redis-server and postgres stopped with it');
  });
});
