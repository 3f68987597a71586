/**
 * The live tail over a sharded queue (one Redis, queue.shards = 4): it follows
 * every shard's stream, its positions are composite (one entry ID per shard),
 * a resume with one is exact, a plain ID stands for every shard, and
 * `logd tail --since` prints the logs of several shards once each.
 */
import { spawn } from 'node:child_process';
import t from 'tap';
import { shardOf } from '../src/queue/keys';
import { shardNames, testRedis } from './helpers/faults';
import { LOGD_BIN, postJson, startStack, waitRows } from './helpers/logd';
import { waitFor } from './helpers/services';
import { openTail, refusal, type TailClient } from './helpers/tail';

const SHARDS = 4;
const COMPOSITE = new RegExp(`^\\d+-\\d+(,\\d+-\\d+){${SHARDS - 1}}$`);

/** Two devices per shard, shard by shard. */
const DEVICES = (() => {
  const byShard: string[][] = Array.from({ length: SHARDS }, () => []);
  for (let i = 0; byShard.some((d) => d.length < 2); i++) {
    const device = `sh-${i}`;
    const list = byShard[shardOf(device, SHARDS)];
    if (list.length < 2) list.push(device);
  }
  return byShard.flat();
})();

const compareIds = (a: string, b: string): number => {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as < bs ? -1 : as > bs ? 1 : 0;
};

t.test('live tail over 4 shards', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1, env: { LOGD_QUEUE_SHARDS: String(SHARDS) } });
  const r = testRedis(redis);
  t.teardown(() => r.disconnect());
  const tails: TailClient[] = [];
  t.teardown(() => { for (const c of tails) c.ws.terminate(); });
  const tail = async (query = ''): Promise<TailClient> => {
    const c = await openTail(logd.url, query);
    tails.push(c);
    return c;
  };
  /** One request per log, each to its device's shard; the messages. */
  const post = async (prefix: string, devices = DEVICES): Promise<string[]> => {
    const sent: string[] = [];
    for (const device of devices) {
      const message = `${prefix} ${device}`;
      const res = await postJson(`${logd.url}/api/log`, { device_id: device, log_level: 'INFO', message });
      if (res.status !== 200) throw new Error(`${message}: ${res.status} ${res.text}`);
      sent.push(message);
    }
    return sent;
  };
  const messages = (c: TailClient): string[] => c.logs().map((l) => l.message);
  const received = (c: TailClient, sent: string[], what: string) =>
    waitFor(what, () => sent.every((m) => messages(c).includes(m)), 10_000);

  await t.test('a tail of every device gets the logs of every shard; positions are composite and only grow', async (t) => {
    const all = await tail();
    t.match(all.messages[0], { type: 'ready', position: COMPOSITE }, `ready carries one ID per shard (${all.messages[0].position})`);
    const sent = await post('all');
    await received(all, sent, 'the logs of every device');
    t.same(messages(all).sort(), [...sent].sort(), 'each log once');
    const lengths = await Promise.all(shardNames(SHARDS).map((s) => r.xlen(s.stream)));
    t.ok(lengths.filter((n) => n > 0).length >= 2, `the logs went to several shards (stream lengths ${lengths.join(', ')})`);
    const positions = all.messages.map((m) => m.position.split(','));
    t.ok(all.messages.filter((m) => m.type === 'logs').every((m) => COMPOSITE.test(m.position)), 'logs messages carry composite positions');
    t.ok(positions.every((p, i) => i === 0 || p.every((id: string, s: number) => compareIds(id, positions[i - 1][s]) >= 0)), 'each shard\'s ID only grows');
  });

  await t.test('device filter', async (t) => {
    const one = await tail(`device_id=${DEVICES[3]}`);
    await post('filtered');
    await one.next('the followed device\'s log', (m) => m.type === 'logs' && m.logs.some((l: { message: string }) => l.message === `filtered ${DEVICES[3]}`));
    await post('filter-end', [DEVICES[0], DEVICES[3]]);
    await received(one, [`filter-end ${DEVICES[3]}`], 'the last log of the followed device');
    t.same(messages(one), [`filtered ${DEVICES[3]}`, `filter-end ${DEVICES[3]}`], 'only the followed device, in order');
  });

  await t.test('resume with a composite position: the missed logs once, then live', async (t) => {
    const first = await tail();
    const before = await post('before');
    await received(first, before, 'the logs before');
    const mid = first.messages.filter((m) => m.type === 'logs')[3];
    const last = first.messages.at(-1).position;
    first.ws.close();
    await first.closed;
    const missed = await post('missed');

    const again = await tail(`after=${encodeURIComponent(last)}`);
    t.equal(again.messages[0].position, last, 'ready names the position it resumes after');
    const live = await post('live', DEVICES.slice(0, 3));
    await received(again, [...missed, ...live], 'the missed logs and the live ones');
    t.same(messages(again).sort(), [...missed, ...live].sort(), 'exactly the missed and live logs, each once');
    t.ok(messages(again).indexOf(live[0]) > Math.max(...missed.map((m) => messages(again).indexOf(m))), 'missed before live');

    // From a position in the middle: everything the first tail got after it, once.
    const fromMid = await tail(`after=${encodeURIComponent(mid.position)}`);
    const later = first.messages.filter((m) => m.type === 'logs').slice(4).flatMap((m) => m.logs.map((l: { message: string }) => l.message));
    const expected = [...later, ...missed, ...live];
    await received(fromMid, expected, 'the logs after the middle position');
    t.same(messages(fromMid).sort(), expected.sort(), 'exactly the logs after the middle position, each once');
  });

  await t.test('after=<one entry ID> means that ID on every shard', async (t) => {
    const start = Date.now() + 1;
    await waitFor('the clock to pass the position', () => Date.now() > start, 1000, 1);
    const sent = await post('plain');
    const c = await tail(`after=${start}-0`);
    t.equal(c.messages[0].position, Array(SHARDS).fill(`${start}-0`).join(','), 'ready: the ID on every shard');
    await received(c, sent, 'the logs posted after the ID');
    t.same(messages(c).sort(), [...sent].sort(), 'exactly the logs after it, each once');
  });

  await t.test('a position of another number of shards: 422 naming after', async (t) => {
    for (const after of ['1-0,2-0', Array(SHARDS + 1).fill('1-0').join(','), '1-0,,2-0,3-0', 'yesterday']) {
      const refused = await refusal(openTail(logd.url, `after=${encodeURIComponent(after)}`));
      t.equal(refused.status, 422, after);
      t.equal(refused.body.code, 'LOGD_VALIDATION_FAILED', after);
      t.match(refused.body.detail, [{ loc: ['query', 'after'] }], `${after}: names after`);
    }
  });

  await t.test('logd tail --since: the stored logs of several shards, then live ones, each once', async (t) => {
    const stored = await post('stored');
    await waitRows(pg, 1, 'message = $1', [stored.at(-1)]);
    await waitFor('every stored log persisted', async () => (await pg.query('SELECT count(*)::int AS n FROM logs WHERE message LIKE $1', ['stored %']))[0].n === stored.length, 10_000);
    const proc = spawn(process.execPath, [LOGD_BIN, 'tail', '--url', logd.url, '--since', '1m'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
    await waitFor('the stored logs', () => stored.every((m) => out.includes(m)), 10_000);
    const live = await post('cli-live');
    await waitFor('the live logs', () => live.every((m) => out.includes(m)), 10_000);
    const lines = out.trim().split('\n');
    for (const m of [...stored, ...live]) t.equal(lines.filter((l) => l.endsWith(` ${m}`)).length, 1, `${m}: once`);
    const shards = new Set(stored.map((m) => shardOf(m.split(' ')[1], SHARDS)));
    t.ok(shards.size >= 2, `printed the logs of ${shards.size} shards`);
    proc.kill('SIGINT');
    t.equal(await exited, 0, 'SIGINT: exit 0');
  });
});
