/** The dead-letter stream and `logd dlq list|replay`. */
import { spawnSync } from 'node:child_process';
import Redis from 'ioredis';
import t from 'tap';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { LOGD_BIN, postJson, serviceEnv, startLogd, waitRows } from './helpers/logd';

t.test('dead letters', async (t) => {
  const redis = await startRedis();
  const pg = await startPostgres();
  const logd = await startLogd({ redis, pg, workers: 1 });
  const client = new Redis(redis.port, redis.host);
  t.teardown(async () => {
    client.disconnect();
    await logd.stop();
    await cleanupAll();
  });
  const cli = (...args: string[]) => spawnSync(process.execPath, [LOGD_BIN, 'dlq', ...args], { env: { ...process.env, ...serviceEnv(redis, pg) }, encoding: 'utf8', timeout: 20_000 });

  // A frame whose row PostgreSQL refuses (log_data is not JSON), written straight into the stream.
  const poisonId = await client.xadd('logs:stream', '*', 'v', '1', 'n', '1', 'r', 'dev\tINFO\tpoison\tnot-json\t2024-01-01T00:00:00Z\n');
  const r = await postJson(`${logd.url}/api/log`, { device_id: 'behind', log_level: 'INFO', message: 'behind the poison' });
  t.equal(r.status, 200);
  await waitRows(pg, 1, 'device_id = $1', ['behind']);
  const [dead] = await waitFor('the poison in logs:dead', async () => {
    const entries = await client.xrange('logs:dead', '-', '+');
    return entries.length ? entries : undefined;
  });
  const fields = dead[1];
  t.equal(fields[fields.indexOf('entry') + 1], poisonId, 'names the entry it was');
  t.match(fields[fields.indexOf('error') + 1], /PostgreSQL refused the rows: invalid input syntax for type json/);
  const health = await (await fetch(`${logd.url}/health`)).json();
  t.equal(health.components.stream.dead_letters, 1, '/health counts dead letters');

  const list = cli('list');
  t.equal(list.status, 0, list.stderr);
  t.match(list.stdout, new RegExp(`^${dead[0]}\\tentry=${poisonId}\\tlogs=1\\tfailed_at=\\S+\\terror=PostgreSQL refused`, 'm'));
  t.match(list.stdout, /first row: dev\tINFO\tpoison\tnot-json/);
  t.match(list.stdout, /1 of 1 dead-letter entries shown/);

  // The operator fixes the cause (here: the entry itself) and replays it.
  await client.xdel('logs:dead', dead[0]);
  const fixedId = await client.xadd('logs:dead', '*', 'entry', poisonId, 'error', 'x', 'failed_at', '0', 'v', '1', 'n', '1', 'r', 'dev\tINFO\tfixed\t{}\t2024-01-01T00:00:00Z\n');
  const notFrame = await client.xadd('logs:dead', '*', 'entry', '1-1', 'error', 'malformed frame', 'failed_at', '0', 'foo', 'bar');
  const replay = cli('replay', fixedId, notFrame, '0-1');
  t.equal(replay.status, 1, 'some were not re-queued');
  t.match(replay.stdout, new RegExp(`^${fixedId}\\tre-queued as \\d+-\\d+$`, 'm'));
  t.match(replay.stdout, new RegExp(`^${notFrame}\\tnot re-queued: it holds no logs`, 'm'));
  t.match(replay.stdout, /^0-1\tnot re-queued: no such dead-letter entry$/m);
  const [row] = await waitRows(pg, 1, 'message = $1', ['fixed']);
  t.equal(row.device_id, 'dev');
  t.equal(await client.xlen('logs:dead'), 1, 'only the non-frame stays dead');

  const usage = cli('replay');
  t.equal(usage.status, 2, 'replay needs IDs or --all');
  t.match(usage.stderr, /usage: logd dlq/);
});
