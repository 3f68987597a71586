/**
 * Process model: graceful SIGTERM under load, a killed HTTP worker replaced
 * while the port keeps answering, a killed persister restarted.
 */
import t from 'tap';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { childPids, postJson, request, startLogd } from './helpers/logd';
import { startLoad } from './helpers/load';

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

  await t.test('SIGTERM under load: exit 0 and every log that got a 200 is in PostgreSQL', async (t) => {
    const logd = await startLogd({ redis, pg, workers: 2 });
    const load = startLoad(logd.url, { prefix: 'term', clients: 16, perRequest: 20 });
    await waitFor('some logs acknowledged', () => load.ackedCount() >= 2000, 30_000);
    const code = await logd.stop('SIGTERM');
    const { acked, refused } = await load.stop();
    t.equal(code, 0, 'clean exit');
    t.ok(acked.length >= 2000, `${acked.length} logs acknowledged`);
    const rows = await persisted('term');
    const lost = acked.filter((m) => !rows.has(m));
    const dup = [...rows.values()].filter((n) => n > 1).length;
    t.equal(lost.length, 0, `no acknowledged log lost (refused: ${JSON.stringify([...refused])})`);
    t.equal(dup, 0, 'no duplicates');
  });

  await t.test('a killed HTTP worker is replaced while the port keeps answering', async (t) => {
    const logd = await startLogd({ redis, pg, workers: 2 });
    t.teardown(() => logd.stop());
    const [victim, survivor] = logd.children('http');
    process.kill(victim, 'SIGKILL');
    await waitFor('the killed worker to be gone', () => !logd.children('http').includes(victim));
    let answered = 0;
    while (logd.children('http').filter((p) => p !== survivor).length === 0) {
      // New connections each time: the kernel hands them to a live listener.
      const r = await request(`${logd.url}/health`, { headers: { connection: 'close' } });
      t.equal(r.status, 200);
      answered++;
      if (answered > 2000) break;
    }
    await waitFor('a replacement worker', () => logd.children('http').length === 2, 20_000);
    t.ok(!logd.children('http').includes(victim), 'replaced by a new process');
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
