/**
 * One Redis, the queue in 4 shards, 2 persisters: logs of many devices spread
 * over the shards' streams, both persisters load them (each a consumer of
 * every shard), and kill -9 of either persister under load loses and
 * doubles nothing; the rollups stay exact and the ledger tells the shards
 * apart. Journal uploads keep their exactly-once marks per shard.
 */
import t from 'tap';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { startLogd } from './helpers/logd';
import { GROUP, health, shardNames, startTrackedLoad, stopLogd, tally, tallyLine, testRedis, waitDrained } from './helpers/faults';
import { assertRollupsExact } from './helpers/rollups';
import { exportBody, upload } from './helpers/journal';
import { shardOf } from '../src/queue/keys';

t.teardown(cleanupAll);

const SHARDS = 4;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('4 shards, 2 persisters: kill -9 of each persister under load, every acknowledged log once', async (t) => {
  const [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
  const r = testRedis(redis);
  const env = { LOGD_QUEUE_SHARDS: String(SHARDS), LOGD_PERSISTER_COUNT: '2', LOGD_PERSISTER_RETRY_MAX_BACKOFF_MS: '500', LOGD_QUEUE_CLAIM_IDLE_MS: '1000' };
  const logd = await startLogd({ redis, pg, env });
  t.teardown(async () => {
    await stopLogd(logd);
    r.disconnect();
  });
  const shards = shardNames(SHARDS);

  const h = await health(logd.url);
  t.equal(Object.keys(h.body.components.persisters).length, 2, `two persisters report (${Object.keys(h.body.components.persisters).join(', ')})`);

  const load = startTrackedLoad(logd.url, { prefix: 'sc', clients: 8, perRequest: 10, pauseMs: 5 });
  await load.waitMoreAcked(1000);
  const killed: number[] = [];
  for (let k = 0; k < 4; k++) {
    const pids = await waitFor(`two persisters (kill #${k + 1})`, () => {
      const p = logd.children('persister');
      return p.length === 2 && !p.some((x) => killed.includes(x)) ? p : undefined;
    }, 30_000);
    await load.waitMoreAcked(300);
    await sleep(Math.floor(Math.random() * 200));
    const pid = pids[k % 2];
    process.kill(pid, 'SIGKILL');
    killed.push(pid);
  }
  await load.waitMoreAcked(500);
  const report = await load.stop();
  t.comment(`requests: ${JSON.stringify(report.statuses)}`);

  const lengths = await Promise.all(shards.map((s) => r.xlen(s.stream)));
  const consumers = await Promise.all(shards.map((s) => r.call('XINFO', 'CONSUMERS', s.stream, GROUP) as Promise<unknown[]>));
  t.ok(consumers.every((c) => c.length >= 2), `every shard's group has both persisters as consumers (${consumers.map((c) => c.length).join(', ')})`);
  const s = await waitDrained(r, 30_000, shards);
  t.equal(s.backlog, 0, 'the backlog counters of all shards are back to 0');
  const tl = await tally(pg, 'sc', report.acked, report.attempted);
  t.comment(`kill -9 of a persister x4, 4 shards: ${tallyLine(tl)}; stream lengths ${lengths.join(', ')}`);
  t.equal(tl.lost, 0, `no acknowledged log lost (e.g. ${JSON.stringify(tl.lostSample)})`);
  t.equal(tl.duplicates, 0, `no log stored twice (e.g. ${JSON.stringify(tl.duplicateSample)})`);
  t.equal(tl.unknown, 0, 'no row that was never sent');
  const ledger = await pg.query<{ shard: number; n: string }>('SELECT shard, count(*) AS n FROM logd_ingested GROUP BY shard ORDER BY shard');
  t.ok(ledger.length >= 2, `the ledger holds entries of several shards (${ledger.map((l) => `${l.shard}:${l.n}`).join(' ')})`);
  await assertRollupsExact(t, pg, 'after the kills');

  // Two journals whose marks live in different shards, in one upload, then resent overlapping.
  const ids = ['0123456789abcdef0123456789abcde0', '0123456789abcdef0123456789abcde1', '0123456789abcdef0123456789abcde2'];
  const [a, b] = ids.filter((id, i) => ids.findIndex((x) => shardOf(x, SHARDS) === shardOf(id, SHARDS)) === i);
  t.not(shardOf(a, SHARDS), shardOf(b, SHARDS), 'the two journals are of different shards');
  const first = await upload(logd.port, [Buffer.concat([exportBody(a, 1, 50, 'vm-a'), exportBody(b, 1, 50, 'vm-b')])]);
  t.equal(first.text, 'OK: 100 entries stored, 0 already stored\n');
  const again = await upload(logd.port, [Buffer.concat([exportBody(a, 41, 60, 'vm-a'), exportBody(b, 1, 70, 'vm-b')])]);
  t.equal(again.text, 'OK: 30 entries stored, 60 already stored\n', 'the resent entries of both journals skipped, per shard');
  const rows = await waitFor('130 journal rows', async () => {
    const r = await pg.query<{ device_id: string; n: string }>("SELECT device_id, count(*) AS n, count(DISTINCT message) AS d FROM logs WHERE device_id IN ('vm-a', 'vm-b') GROUP BY device_id ORDER BY device_id");
    return r.reduce((x, y) => x + Number(y.n), 0) >= 130 && r;
  });
  t.same(rows.map((r) => [r.device_id, Number(r.n)]), [['vm-a', 60], ['vm-b', 70]], 'each journal entry stored once');
});
