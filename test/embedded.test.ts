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

const alive = (pidFile: string): boolean => {
  try {
    process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 0);
    return true;
  } catch {
    return false;
  }
};

t.test('embedded Redis and PostgreSQL', async (t) => {
  // Parents of the data directory must be searchable by the postgres user (it refuses root).
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'logd-embedded-'));
  chmodSync(dataDir, 0o755);
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = { REDIS_HOST: '', POSTGRES_HOST: '' };

  await t.test('starts from an empty data directory', async (t) => {
    const logd = await startLogd({ env, workers: 1, args: ['--data-dir', dataDir] });
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'emb', log_level: 'INFO', message: 'first run' });
    t.equal(r.status, 200);
    await waitFor('the row', async () => (await rows(dataDir)).includes('first run'), 20_000);
    t.equal(await logd.stop('SIGTERM'), 0, 'clean exit');
    t.notOk(alive(path.join(dataDir, 'redis', 'redis.pid')), 'embedded redis-server stopped');
    t.notOk(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), 'embedded postgres stopped');
  });

  await t.test('starts again from the existing data directory, data kept', async (t) => {
    const logd = await startLogd({ env, workers: 1, args: ['--data-dir', dataDir] });
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'emb', log_level: 'INFO', message: 'second run' });
    t.equal(r.status, 200);
    await waitFor('both rows', async () => (await rows(dataDir)).length === 2, 20_000);
    t.same(await rows(dataDir), ['first run', 'second run']);
    t.equal(await logd.stop('SIGINT'), 0, 'clean exit on SIGINT too');
  });
});
