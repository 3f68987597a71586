/**
 * logd past one machine, on real engines: a Redis Cluster of 3 masters and 3
 * replicas (test/helpers/cluster.ts), one PostgreSQL, three logd nodes (own
 * ports; the first with 2 persisters) behind the shipped nginx
 * configuration, the queue in 6 shards, every append acknowledged by a
 * replica (queue.replica_acks = 1). Under continuous load through nginx:
 * the fault scenarios of test/faults.test.ts that apply to a cluster (kill -9
 * of persisters, PostgreSQL stopped, a poison entry), a slot moved between
 * masters (MOVED/ASK), a master killed (failover), a replica down (503, not a
 * hang, and /health says which master), a logd node killed (its pending
 * entries claimed by the others) and a rolling restart (no failed request).
 * Every acknowledged log is stored exactly once. With replica_acks = 0 the
 * loss of a master's kill is measured and printed, not asserted.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Cluster } from 'ioredis';
import t, { type Test } from 'tap';
import { shardOf } from '../src/queue/keys';
import { cleanupAll, startPostgres, waitFor, type PostgresServer } from './helpers/services';
import { LOGD_BIN, startLogd, type Logd } from './helpers/logd';
import { startRedisCluster, type RedisCluster } from './helpers/cluster';
import { startNginx, type Nginx } from './helpers/nginx';
import { addr, checkPersisted, departure, gone, startLoad, type Attempt, type Load } from './helpers/frontdoor';
import { GROUP, health, shardNames, streamState } from './helpers/faults';

t.teardown(cleanupAll);
// one cluster and three nodes through eleven scenarios, each under load
t.setTimeout(300_000);

const SHARDS = 6;
/** Linux 5.14+: a closing listener's queued connections move to another socket of its SO_REUSEPORT group. */
const MIGRATE_REQ = '/proc/sys/net/ipv4/tcp_migrate_req';
const shards = shardNames(SHARDS, true);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Rig {
  cluster: RedisCluster;
  pg: PostgresServer;
  r: Cluster;
  nodes: Logd[];
  nginx: Nginx;
  env: Record<string, string>;
}

/** A device whose logs go to `shard`. */
function deviceOf(shard: number, prefix: string): string {
  for (let i = 0; ; i++) if (shardOf(`${prefix}-${i}`, SHARDS) === shard) return `${prefix}-${i}`;
}

/** Waits until `n` more requests of `load` are answered 200. */
async function more(load: Load, n: number, timeoutMs = 30_000): Promise<void> {
  const target = load.attempts.filter((a) => a.status === 200).length + n;
  await waitFor(`${n} more requests answered 200`, () => load.attempts.filter((a) => a.status === 200).length >= target, timeoutMs);
}

const statuses = (attempts: Attempt[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const a of attempts) {
    const k = a.status === undefined ? String(a.error) : `${a.status}${a.body?.code ? ` ${a.body.code}` : ''}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
};

/**
 * Waits until the cluster serves every shard again through every node (after
 * a failover or a slot move, a node's slot map may be up to a second old):
 * three rounds of one log per shard through nginx, each answered 200.
 */
async function settled(url: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    for (let shard = 0; shard < SHARDS; shard++) {
      const device = deviceOf(shard, 'settle');
      await waitFor(`a 200 for shard ${shard}`, async () => (await fetch(`${url}/api/log`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ device_id: device, log_level: 'INFO', message: 'settle' }),
      })).status === 200, 20_000, 100);
    }
  }
}

/** Stream entries a consumer (and its other persisters, "<name>/<i>") still holds, over every shard. */
async function pendingOf(r: Cluster, consumer: string): Promise<number> {
  const lists = await Promise.all(shards.map((s) => r.xpending(s.stream, GROUP, '-', '+', 1000) as Promise<[string, string][]>));
  return lists.flat().filter(([, owner]) => owner === consumer || owner.startsWith(`${consumer}/`)).length;
}

/** Backlog counters over every shard back to 0, nothing pending. */
async function drained(t: Test, r: Cluster): Promise<void> {
  let last = { backlog: -1, pending: -1 };
  await waitFor('every shard drained', async () => {
    const { backlog, pending } = await streamState(r, shards);
    last = { backlog, pending };
    return backlog === 0 && pending === 0;
  }, 30_000, 100).catch(() => undefined);
  t.same(last, { backlog: 0, pending: 0 }, 'every shard drained: backlogs 0, nothing pending');
}

t.test('three logd nodes on a Redis Cluster behind nginx', async (t) => {
  const [cluster, pg] = await Promise.all([startRedisCluster(), startPostgres()]);
  const r = new Cluster(cluster.seeds.map((s) => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })), { scaleReads: 'master' });
  r.on('error', () => undefined);
  const env = {
    LOGD_REDIS_CLUSTER: cluster.seeds.join(','),
    LOGD_QUEUE_SHARDS: String(SHARDS),
    LOGD_QUEUE_REPLICA_ACKS: '1',
    LOGD_QUEUE_CLAIM_IDLE_MS: '1000',
    LOGD_PERSISTER_RETRY_MAX_BACKOFF_MS: '500',
    // the shipped drain (above nginx's 5 s upstream keepalive), which a graceful stop behind nginx relies on
    LOGD_SERVER_DRAIN_MS: '6000',
    WORKER_NAME: '',
    INSTANCE_NAME: '',
  };
  const node = (i: number, port?: number): Promise<Logd> =>
    startLogd({ pg, workers: 1, port, env: { ...env, LOGD_PERSISTER_COUNT: i === 0 ? '2' : '1' } });
  const nodes = await Promise.all([0, 1, 2].map((i) => node(i)));
  const nginx = await startNginx({ upstreams: nodes.map(addr) });
  const rig: Rig = { cluster, pg, r, nodes, nginx, env };
  t.teardown(async () => {
    await nginx.stop();
    await Promise.all(rig.nodes.map((l) => l.stop('SIGKILL')));
    r.disconnect();
  });

  await t.test('healthy nodes; the queue spreads over the shards; cache and tokens work on the cluster', async (t) => {
    for (const l of nodes) {
      const h = await health(l.url);
      t.equal(h.status, 200, `${addr(l)} /health: ${JSON.stringify(h.body.reasons)}`);
    }
    t.equal(Object.keys((await health(nodes[0].url)).body.components.persisters).length, 4, 'four persisters report (2 + 1 + 1)');
    const load = startLoad(nginx.url, 'spread', 6, 8);
    await more(load, 300);
    const attempts = await load.stop();
    t.same(statuses(attempts), { 200: attempts.length }, 'every request answered 200');
    await checkPersisted(t, pg, 'spread', attempts);
    const lengths = await Promise.all(shards.map((s) => r.xlen(s.stream)));
    t.ok(lengths.filter((n) => n > 0).length >= 4, `the shards' streams got entries: ${lengths.join(', ')}`);
    // A cached answer and its version are read with one MGET: on a cluster only when they share a slot.
    const device = 'spread-0-0';
    const first = await fetch(`${nginx.url}/api/logs/${device}`).then((x) => x.json() as Promise<{ source: string }>);
    t.equal(first.source, 'database', 'first read from PostgreSQL');
    await waitFor('the read answered from the cache', async () =>
      (await fetch(`${nginx.url}/api/logs/${device}`).then((x) => x.json() as Promise<{ source: string }>)).source === 'cache', 10_000, 50);
    t.pass('the second read comes from the cache');
    // logd token create: the token and its version change in one MULTI (one slot)
    const out = execFileSync(process.execPath, [LOGD_BIN, 'token', 'create', '--name', 'cluster', '--scope', 'read'],
      { env: { ...process.env, ...env }, encoding: 'utf8' });
    t.match(out, /logd_[0-9a-f]+_/, 'logd token create works on the cluster');
  });

  await t.test('kill -9 of the persisters of node 0 (twice) under load: every acknowledged log once', async (t) => {
    const load = startLoad(nginx.url, 'pkill', 6, 8);
    for (let k = 0; k < 2; k++) {
      await more(load, 100);
      const pids = nodes[0].children('persister');
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await waitFor('node 0 persisters back', () => {
        const now = nodes[0].children('persister');
        return now.length === 2 && !now.some((p) => pids.includes(p));
      }, 30_000);
    }
    await more(load, 100);
    const attempts = await load.stop();
    t.same(statuses(attempts), { 200: attempts.length }, 'every request answered 200');
    await checkPersisted(t, pg, 'pkill', attempts);
  });

  await t.test('PostgreSQL stopped for 3 s under load: ingest goes on, every acknowledged log once', async (t) => {
    const load = startLoad(nginx.url, 'pgstop', 6, 8);
    await more(load, 100);
    await pg.stop();
    const stoppedAt = load.attempts.length;
    await sleep(3000);
    await pg.start();
    await more(load, 100);
    const attempts = await load.stop();
    t.ok(attempts.slice(stoppedAt).some((a) => a.status === 200), 'requests were acknowledged while PostgreSQL was down');
    t.same(statuses(attempts), { 200: attempts.length }, 'every request answered 200');
    await checkPersisted(t, pg, 'pgstop', attempts);
    await drained(t, r);
  });

  await t.test('a poison entry in shard 2 goes to its dead-letter stream; the logs behind it are stored', async (t) => {
    const bad = await r.xadd(shards[2].stream, '*', 'v', '9', 'junk', 'x');
    const load = startLoad(nginx.url, 'poison', 6, 8);
    await more(load, 100);
    const attempts = await load.stop();
    await checkPersisted(t, pg, 'poison', attempts);
    await waitFor('the poison entry in logs:dead:{2}', async () =>
      (await r.xrange(shards[2].dead, '-', '+')).some(([, f]) => f.includes(bad!)), 15_000, 100);
    t.pass(`entry ${bad} is in ${shards[2].dead}`);
  });

  await t.test('a shard\'s slot moved to another master under load (MOVED, ASK): every acknowledged log once', async (t) => {
    const key = shards[3].stream;
    const from = await cluster.masterOf(key);
    const to = (await cluster.masters()).find((m) => m.port !== from.port)!;
    const load = startLoad(nginx.url, 'move', 6, 8);
    await more(load, 100);
    await cluster.moveSlot(key, to, () => more(load, 50));
    await more(load, 200);
    const attempts = await load.stop();
    t.equal((await cluster.masterOf(key)).port, to.port, `${key} moved from :${from.port} to :${to.port}`);
    await settled(nginx.url);
    t.comment(`answers: ${JSON.stringify(statuses(attempts))}`);
    t.same(attempts.filter((a) => a.status !== 200 && a.status !== 503), [], 'every answer is 200 or 503');
    await checkPersisted(t, pg, 'move', attempts);
  });

  await t.test('kill -9 of a master under load, replica_acks = 1: failover, 0 acknowledged logs lost', async (t) => {
    const key = shards[1].stream;
    const master = await cluster.masterOf(key);
    const load = startLoad(nginx.url, 'failover', 6, 8);
    await more(load, 200);
    cluster.kill(master);
    const promoted = await cluster.waitFailover(key, master, 30_000);
    // the promoted master has no replica (its shards answer 503) until the old one is back, as a replica
    await cluster.restart(master);
    await more(load, 300);
    const attempts = await load.stop();
    t.comment(`master :${master.port} killed, :${promoted.port} promoted; answers: ${JSON.stringify(statuses(attempts))}`);
    t.same(attempts.filter((a) => a.status !== 200 && a.status !== 503).map((a) => a.error ?? a.body), [], 'every answer is 200 or 503');
    await checkPersisted(t, pg, 'failover', attempts);
    await settled(nginx.url);
  });

  await t.test('replica_acks = 1 with a replica down: its master\'s shards answer 503 at once, /health names it; the others 200', async (t) => {
    const shard = 4;
    const master = await cluster.masterOf(shards[shard].stream);
    const [replica] = await cluster.replicasOf(master);
    cluster.kill(replica);
    await waitFor('the replica gone', () => !replica.alive, 10_000);
    const device = deviceOf(shard, 'norepl');
    let last: { status: number; ms: number; code?: string; retry?: string | null } = { status: 0, ms: 0 };
    await waitFor('a 503 for a device of the shard', async () => {
      const t0 = performance.now();
      const res = await fetch(`${nginx.url}/api/log`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ device_id: device, log_level: 'INFO', message: 'no replica' }), signal: AbortSignal.timeout(10_000),
      });
      const body = await res.json() as { code?: string };
      last = { status: res.status, ms: performance.now() - t0, code: body.code, retry: res.headers.get('retry-after') };
      return res.status === 503;
    }, 15_000, 100);
    t.equal(last.code, 'LOGD_QUEUE_UNAVAILABLE', `503 LOGD_QUEUE_UNAVAILABLE after ${Math.round(last.ms)} ms`);
    t.ok(last.ms < 3000, 'answered within the replica timeout, not a hang');
    t.ok(last.retry, 'with Retry-After');
    const h = await waitFor('/health to name the master', async () => {
      const x = await health(nodes[1].url);
      return x.body.reasons?.some((why: string) => why.includes(`:${master.port}`)) ? x : undefined;
    }, 15_000, 200);
    t.equal(h.body.status, 'degraded', `/health degraded: ${h.body.reasons.join('; ')}`);
    let otherShard = -1;
    for (let s = 0; s < SHARDS; s++) if ((await cluster.masterOf(shards[s].stream)).port !== master.port) { otherShard = s; break; }
    const ok = await fetch(`${nginx.url}/api/log`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device_id: deviceOf(otherShard, 'norepl'), log_level: 'INFO', message: 'replicated' }),
    });
    t.equal(ok.status, 200, `a device of shard ${otherShard} (another master) gets 200`);
    await cluster.restart(replica);
    await waitFor('200 again for the shard', async () => (await fetch(`${nginx.url}/api/log`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device_id: device, log_level: 'INFO', message: 'replica back' }),
    })).status === 200, 15_000, 100);
    t.pass('the replica back: 200');
    await settled(nginx.url);
  });

  await t.test('replica_acks = 0: a master killed under load; the acknowledged logs it took along are counted', async (t) => {
    const direct = await startLogd({ pg, workers: 1, env: { ...env, LOGD_QUEUE_REPLICA_ACKS: '0', LOGD_SERVER_DRAIN_MS: '0' } });
    t.teardown(() => direct.stop('SIGKILL'));
    const key = shards[0].stream;
    const master = await cluster.masterOf(key);
    const load = startLoad(direct.url, 'async', 6, 8);
    await more(load, 300);
    cluster.kill(master);
    await cluster.waitFailover(key, master, 30_000);
    await more(load, 300);
    const attempts = await load.stop();
    const acked = attempts.filter((a) => a.status === 200).flatMap((a) => a.messages);
    await drained(t, r);
    const stored = new Set((await pg.query<{ message: string }>("SELECT message FROM logs WHERE device_id LIKE 'async-%'")).map((x) => x.message));
    const lost = acked.filter((m) => !stored.has(m)).length;
    t.comment(`replica_acks = 0, master :${master.port} killed: ${acked.length} acknowledged, ${lost} lost`);
    t.ok(acked.length > 0, 'logs were acknowledged');
    await cluster.restart(master);
    await settled(nginx.url);
  });

  await t.test('kill -9 of node 0 under load: its pending entries are claimed by the others, 0 lost, 0 duplicated', async (t) => {
    const failed = await departure(t, nginx, pg, 'nodekill', nodes[0], [nodes[1], nodes[2]], async () => {
      const pids = [nodes[0].proc.pid!, ...nodes[0].children('http'), ...nodes[0].children('persister')];
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await waitFor('the killed processes to be gone', () => pids.every(gone), 10_000);
    }, (consumer) => pendingOf(r, consumer));
    t.comment(`${failed} requests failed with 502 while node 0 died`);
    t.equal(await pendingOf(r, `${hostname()}:${nodes[0].port}`), 0, 'nothing left pending with node 0\'s persisters');
  });

  // Each node's new process starts on the same port before the old one stops (both listen with SO_REUSEPORT):
  // no moment refuses a connection, which nginx would count against the node (max_fails=3 fail_timeout=30s).
  // With net.ipv4.tcp_migrate_req = 1, as docs/deployment.md advises for this, the connections queued on the
  // old process's socket when it closes go to the new one's instead of being reset (seen without it: the
  // resets marked two nodes down at once, and nginx answered 502 for want of a live one).
  await t.test('a rolling restart behind nginx fails no request', async (t) => {
    const before = readFileSync(MIGRATE_REQ, 'utf8').trim();
    writeFileSync(MIGRATE_REQ, '1');
    t.teardown(() => writeFileSync(MIGRATE_REQ, before));
    nodes[0] = await node(0, nodes[0].port);
    const load = startLoad(nginx.url, 'rolling', 6, 8);
    await more(load, 100);
    for (const i of [1, 2, 0]) {
      const old = nodes[i];
      const t0 = Date.now();
      nodes[i] = await node(i, old.port);
      const t1 = Date.now();
      t.comment(`node ${i}: the old process stops at ${Math.round(performance.now())} ms`);
      t.equal(await old.stop('SIGTERM'), 0, `node ${i}'s old process stopped with exit 0`);
      t.comment(`node ${i}: new process healthy in ${t1 - t0} ms, the old one stopped in ${Date.now() - t1} ms`);
      await more(load, 50);
    }
    const attempts = await load.stop();
    const failed = attempts.filter((a) => a.status !== 200);
    t.same(statuses(attempts), { 200: attempts.length }, `every one of ${attempts.length} requests answered 200`);
    if (failed.length) t.comment(failed.slice(0, 10).map((a) => `${a.ua}: ${a.status ?? a.error} ${JSON.stringify(a.body)} at ${Math.round(a.start)} ms`).join('\n'));
    await checkPersisted(t, pg, 'rolling', attempts);
    await drained(t, r);
  });
});
