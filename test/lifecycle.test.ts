/**
 * Process model: graceful SIGTERM under load, a killed HTTP worker replaced
 * while the port keeps answering, a killed persister restarted.
 */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import t from 'tap';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { childPids, postJson, startLogd } from './helpers/logd';
import { startLoad } from './helpers/load';
import { streamState, testRedis } from './helpers/faults';

/** Sockets in state LISTEN on `port`, IPv4 and IPv6, from the kernel's tables. */
function listeningSockets(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[1].endsWith(`:${hexPort}`) && f[3] === '0A') n++;
    }
  }
  return n;
}

t.test('lifecycle', async (t) => {
  const redis = await startRedis();
  const pg = await startPostgres();
  t.teardown(cleanupAll);
  const persisted = async (prefix: string): Promise<Map<string, number>> => {
    const rows = await pg.query<{ message: string; n: string }>('SELECT message, count(*) AS n FROM logs WHERE message LIKE $1 GROUP BY message', [`${prefix}-%`]);
    return new Map(rows.map((r) => [r.message, Number(r.n)]));
  };

  await t.test('children have their process titles', async (t) => {
    const logd = await startLogd({ redis, pg, workers: 2 });
    t.teardown(() => logd.stop());
    t.equal(logd.children('http').length, 2, 'two `logd: http`');
    t.equal(logd.children('persister').length, 1, 'one `logd: persister`');
    t.same(childPids(process.pid, 'logd: primary'), [logd.proc.pid], 'the process we started is `logd: primary`');
  });

  await t.test('SIGTERM under load: exit 0, every log that got a 200 is in PostgreSQL, the stream left acknowledged', async (t) => {
    const logd = await startLogd({ redis, pg, workers: 2 });
    const load = startLoad(logd.url, { prefix: 'term', clients: 16, perRequest: 20 });
    // A failed wait must not leave them running until tap's timeout (both are idempotent).
    t.teardown(async () => {
      await load.stop();
      await logd.stop();
    });
    await waitFor('some logs acknowledged', () => load.ackedCount() >= 2000, 30_000);
    const code = await logd.stop('SIGTERM');
    const { acked, refused } = await load.stop();
    t.equal(code, 0, 'clean exit');
    // The persister's last batch is acknowledged before it exits: nothing pending, the backlog counter back to 0.
    const r = testRedis(redis);
    const atExit = await streamState(r).finally(() => r.disconnect());
    t.same({ pending: atExit.pending, undelivered: atExit.undelivered, backlog: atExit.backlog }, { pending: 0, undelivered: false, backlog: 0 },
      'at exit the stream holds nothing unacknowledged');
    const rows = await persisted('term');
    const lost = acked.filter((m) => !rows.has(m));
    const dup = [...rows.values()].filter((n) => n > 1).length;
    t.equal(lost.length, 0, `no acknowledged log lost of ${acked.length} (refused: ${JSON.stringify([...refused])})`);
    t.equal(dup, 0, 'no duplicates');
  });

  await t.test('a killed HTTP worker is replaced while the port keeps answering', async (t) => {
    const logd = await startLogd({ redis, pg, workers: 2 });
    const primary = logd.proc.pid!;
    let paused = false;
    t.teardown(async () => {
      if (paused) process.kill(primary, 'SIGCONT');
      await logd.stop();
    });
    const [victim, survivor] = logd.children('http');
    // The primary is paused so that it cannot fork the replacement yet: the port is served by the
    // survivor alone for as long as the checks below take, on every run.
    // a worker counts as started once forked; it listens a moment later
    const listening = await waitFor('both workers listening', () => listeningSockets(logd.port) === 2 && 2, 10_000)
      .catch(() => listeningSockets(logd.port));
    t.equal(listening, 2, 'each worker listens on the port (SO_REUSEPORT)');
    process.kill(primary, 'SIGSTOP');
    paused = true;
    process.kill(victim, 'SIGKILL');
    // Gone from the list of workers is not enough, nor is its main thread a zombie: the kernel closes a
    // process's files when its last thread exits, and a connection queued meanwhile on its listening
    // socket (SO_REUSEPORT: one per worker) is reset. Wait until the survivor's is the port's only one.
    await waitFor('the killed worker\'s listening socket to be closed', () => listeningSockets(logd.port) === 1);
    // New connections each time (agent: false), which the kernel hands to a live listener. fetch would
    // first reuse a keep-alive connection from its pool, perhaps one to the killed worker: a reset.
    const health = (): Promise<number | string> => new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: logd.port, path: '/health', agent: false, timeout: 5000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
      req.on('error', (err) => resolve(err.message));
    });
    const statuses: (number | string)[] = [];
    for (let i = 0; i < 20; i++) statuses.push(await health());
    t.same(logd.children('http'), [survivor], 'only the survivor ran meanwhile');
    t.same(statuses.filter((s) => s !== 200), [], '20 requests on new connections with one worker down: all answered 200');
    process.kill(primary, 'SIGCONT');
    paused = false;
    await waitFor('a replacement worker', () => logd.children('http').length === 2, 20_000);
    const after = logd.children('http');
    t.ok(after.includes(survivor) && !after.includes(victim), `the survivor kept running, the victim was replaced by a new process (${after.join(' ')})`);
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'after-kill', log_level: 'INFO', message: 'still here' });
    t.equal(r.status, 200);
  });

  await t.test('a killed persister is restarted and its logs still arrive', async (t) => {
    const logd = await startLogd({ redis, pg, workers: 1 });
    t.teardown(() => logd.stop());
    const [persister] = logd.children('persister');
    process.kill(persister, 'SIGKILL');
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'p-kill', log_level: 'INFO', message: 'p-kill-1' });
    t.equal(r.status, 200, 'ingest goes on without a persister');
    await waitFor('a new persister', () => logd.children('persister').some((p) => p !== persister), 20_000);
    await waitFor('the log persisted', async () => (await persisted('p-kill')).get('p-kill-1') === 1, 20_000);
  });
});
