/**
 * Scaling benchmark: `npm run bench:scale`.
 *
 * What more persisters and a sharded queue on Redis Cluster buy on this
 * machine, in one run on one PostgreSQL (bench/lib/stack.ts: stock
 * settings, its data directory on /dev/shm when it exists). The matrix
 * {single Redis (conf/redis.conf's settings, the queue unsharded: the old
 * names), Redis Cluster (3 masters + 3 replicas on loopback, appendfsync
 * everysec and the rest of conf/redis.conf applied with CONFIG SET;
 * queue.shards 6)} x {1, 2 persisters}, alternated within each round (the
 * order rotates per round so that drifting noise spreads over all of them).
 * For each configuration and round, logd is started afresh with it, then:
 *
 *  a. persister drain: the raw COPY ceiling (bench/lib/ceilings.ts) right
 *     before; the persisters are stopped (SIGSTOP) once they are consumers
 *     of every stream, BENCH_DRAIN_LOGS logd-shaped frames are preloaded,
 *     spread evenly over the queue's streams and their backlog counters;
 *     then SIGCONT, and rows / (SIGCONT -> summed backlog 0), with CPU µs
 *     per row of the persisters, postgres and the configuration's
 *     redis-servers (replicas included) over that span.
 *  b. ingest with persisting: POST /api/logs/batch, 100 logs/request over
 *     1,000 devices, closed loop on 16 keep-alive connections from a child
 *     process (this file with --sender, process title bench-sender); after
 *     BENCH_WARMUP_S, BENCH_SECONDS measured: logs accepted
 *     (logd_logs_accepted_total) and rows persisted
 *     (logd_persisted_rows_total) per s, CPU µs per accepted log of the
 *     HTTP workers and redis-servers, per persisted row of the persisters
 *     and postgres.
 *
 * Every preloaded and every acknowledged log must be stored exactly once
 * (bench/lib/account.ts, per run tag): the bench fails otherwise.
 * PostgreSQL is emptied (logs, ledger, rollups) and checkpointed before
 * each measurement.
 *
 *   npm run bench:scale                                   # the full matrix, 3 rounds, ~12 min
 *   npm run bench:scale -- --redis cluster --persisters 2
 *   BENCH_ROUNDS=1 BENCH_SECONDS=4 npm run bench:scale    # quick look
 *
 * Flags (or env): --redis single|cluster|both (BENCH_REDIS), --persisters
 * N[,M] (BENCH_PERSISTERS, default 1,2). Env: BENCH_ROUNDS (3),
 * BENCH_SECONDS (8), BENCH_WARMUP_S (2), BENCH_DRAIN_LOGS (200000),
 * BENCH_CEILING_ROWS (100000), BENCH_ROOT (another built checkout of logd to
 * measure; default this one), BENCH_OUT (- = print only; FILE: the section
 * between <!-- bench:scale:begin --> and <!-- bench:scale:end -->).
 */
import { execFileSync, fork } from 'node:child_process';
import * as fs from 'node:fs';
import http from 'node:http';
import * as path from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { account, accountPreloaded } from './lib/account';
import { copyCeiling } from './lib/ceilings';
import { benchServices, int, versions, writeSection } from './lib/harness';
import { QUIET_CORES, QuietGate, Sampler } from './lib/proc';
import { median } from './lib/run';
import { applyConf, fsTypeOf, pidCpuS, preloadStreams, queueStreams, waitBacklogZero, type AnyRedis } from './lib/scale';
import { redisConfArgs, sleep, startLogd, stopAll, storage, type Logd } from './lib/stack';
import type { WrkResult, WrkThread } from './lib/wrk';
import { cleanupAll, waitFor } from '../test/helpers/services';
import { startRedisCluster, type RedisCluster } from '../test/helpers/cluster';

/** The logd tree measured (its dist/ must be built): this one, or BENCH_ROOT (another checkout). */
const ROOT = path.resolve(process.env.BENCH_ROOT ?? path.resolve(__dirname, '..'));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 2);
const DRAIN_LOGS = Number(process.env.BENCH_DRAIN_LOGS ?? 200_000);
const CEILING_ROWS = Number(process.env.BENCH_CEILING_ROWS ?? 100_000);
const OUT = process.env.BENCH_OUT ?? '-';
const CONNECTIONS = 16;
const PER = 100;
const DEVICES = 1000;
const SHARDS = 6;
const MASTERS = 3;
const REPLICAS_PER_MASTER = 1;
/** Budget of the quiet gate (waits while other processes use > QUIET_CORES cores) over the whole bench, and per measurement, in ms. */
const QUIET_BUDGET_MS = 60_000;
const QUIET_PER_MS = 5000;
/** Longest wait for the persisters to empty the queue, in ms. */
const DRAIN_TIMEOUT_MS = 240_000;
const FILLER = 'GET /api/v1/items?page=3 answered 200 in 12 ms for user alice';
const LEVELS: string[] = Array.from({ length: 100 }, (_, i) => (i < 70 ? 'INFO' : i < 85 ? 'DEBUG' : i < 95 ? 'WARNING' : i < 99 ? 'ERROR' : 'CRITICAL'));

// ---------------------------------------------------------------------------
// the sender (child process)

type SenderMessage = { start: { port: number; run: string } } | { stop: true };
interface SenderResult { threads: WrkThread[]; delivered: number; errors: Record<string, number> }

/**
 * Request `seq` of connection `tid`: 100 logs of 100 distinct devices
 * (base, base+10, ... mod 1000, base = (seq * CONNECTIONS + tid) mod 1000),
 * so that the first device, which picks the shard, takes every value;
 * messages `<run>:<tid>:<seq>:<j> ...` are unique.
 */
function body(run: string, tid: number, seq: number): string {
  const base = (seq * CONNECTIONS + tid) % DEVICES;
  const logs = Array.from({ length: PER }, (_, j) => {
    const k = (base + j * 10) % DEVICES;
    return {
      device_id: `dev-${String(k).padStart(4, '0')}`, log_level: LEVELS[(base + j) % 100], message: `${run}:${tid}:${seq}:${j} ${FILLER}`,
      log_data: { seq: seq * PER + j, region: 'eu-west-1', latency_ms: (seq + j) % 997, path: '/api/v1/items' },
    };
  });
  return JSON.stringify({ logs });
}

function sender(): void {
  process.title = 'bench-sender';
  process.on('disconnect', () => process.exit(0));
  let running = false;
  let threads: WrkThread[] = [];
  let errors: Record<string, number> = {};
  const post = (agent: http.Agent, port: number, b: string): Promise<string> => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/api/logs/batch', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) } }, (res) => {
      const status = String(res.statusCode ?? 0);
      let text = '';
      // a refusal is named by its status and logd's error code
      if (!/^2\d\d$/.test(status)) res.on('data', (d: Buffer) => { text += d.toString(); });
      else res.resume();
      res.on('end', () => resolve(text ? `${status} ${/"code"\s*:\s*"([A-Z_]+)"/.exec(text)?.[1] ?? text.slice(0, 80)}` : status));
      res.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    req.end(b);
  });
  const loop = async (port: number, run: string, t: WrkThread): Promise<void> => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let seq = 0; running; seq++) {
      const b = body(run, t.tid, seq);
      t.sent = seq + 1;
      const status = await post(agent, port, b);
      t.statuses[status] = (t.statuses[status] ?? 0) + 1;
      if (/^2\d\d$/.test(status)) t.ok++;
      else {
        t.bad.push(seq);
        errors[status] = (errors[status] ?? 0) + 1;
      }
    }
    agent.destroy();
  };
  let loops: Promise<void>[] = [];
  process.on('message', (m: SenderMessage) => {
    if ('start' in m) {
      running = true;
      errors = {};
      threads = Array.from({ length: CONNECTIONS }, (_, tid) => ({ tid, sent: 0, ok: 0, unknown_bad: 0, bad: [], pending: [], statuses: {} }));
      loops = threads.map((t) => loop(m.start.port, m.start.run, t));
    } else {
      running = false;
      void Promise.all(loops).then(() => process.send!({ result: { threads, delivered: threads.reduce((a, t) => a + t.ok * PER, 0), errors } satisfies SenderResult }));
    }
  });
}

// ---------------------------------------------------------------------------
// the bench

type RedisKind = 'single' | 'cluster';
interface Config { redis: RedisKind; persisters: number; key: string }

interface Drain {
  cfg: string;
  round: number;
  rows: number;
  seconds: number;
  rowsPerS: number;
  ceilingRowsPerS: number;
  ceilingPgUsPerRow: number;
  /** µs per row over the drain */
  persisterUs: number;
  postgresUs: number;
  redisUs: number;
  others: number;
  perShard: number[];
  rowsPerBatch: number;
}

interface Ingest {
  cfg: string;
  round: number;
  accepted: number;
  persisted: number;
  seconds: number;
  acceptedPerS: number;
  persistedPerS: number;
  httpUs: number;
  persisterUs: number;
  redisUs: number;
  postgresUs: number;
  /** cores over the window, by role (redis-server: this configuration's servers) */
  cores: Map<string, number>;
  others: number;
  delivered: number;
  errors: Record<string, number>;
  catchUpS: number;
  /** mean rows per COPY batch over the window (logd_persister_batch_rows) */
  rowsPerBatch: number;
}

interface Check { what: string; logs: number; rows: number; lost: number; duplicated: number; unknown: number; refusedButStored: number }

const T0 = Date.now();
const log = (s: string): void => { process.stderr.write(`[bench:scale ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`); };

function option(name: string, envName: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3) ?? process.env[envName] ?? dflt;
}

function configs(): Config[] {
  const r = option('redis', 'BENCH_REDIS', 'both');
  const kinds: RedisKind[] = r === 'both' ? ['single', 'cluster'] : r.split(',').map((k) => {
    if (k !== 'single' && k !== 'cluster') throw new Error(`--redis: single, cluster or both, not ${k}`);
    return k;
  });
  const counts = option('persisters', 'BENCH_PERSISTERS', '1,2').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) throw new Error('--persisters: N[,M], integers 1..64');
  return kinds.flatMap((redis) => counts.map((persisters) => ({ redis, persisters, key: `${redis}, ${persisters} persister${persisters > 1 ? 's' : ''}` })));
}

/** The command as it was typed, as far as this process can tell. */
function commandLine(): string {
  const envs = Object.keys(process.env).filter((k) => /^BENCH_/.test(k)).sort().map((k) => `${k}=${process.env[k]}`);
  const args = process.argv.slice(2);
  const viaNpm = process.env.npm_lifecycle_event === 'bench:scale';
  return [...envs, viaNpm ? 'npm run bench:scale' : 'node --import @tapjs/typescript/import bench/scale.ts', ...(args.length ? [viaNpm ? '--' : '', ...args].filter(Boolean) : [])].join(' ');
}

/** Pids of the `logd serve` primaries this process started and that still run (the title changes to `logd: primary` once it runs). */
function logdPrimaries(): number[] {
  const ps = execFileSync('ps', ['-o', 'pid=,ppid=,stat=,args=', '-e']).toString();
  return ps.split('\n').map((l) => l.trim().match(/^(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/))
    .filter((m): m is RegExpMatchArray => !!m && Number(m[2]) === process.pid && !m[3].startsWith('Z') && /logd\.js serve|^logd: primary/.test(m[4]))
    .map((m) => Number(m[1]));
}

/** Whether a child still runs (a zombie does not). */
function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Both counters from logd's aggregated /metrics. */
async function counters(logd: Logd): Promise<{ accepted: number; persisted: number; batches: number; batchRows: number; t: number }> {
  const text = await (await fetch(`${logd.url}/metrics`)).text();
  // a counter nothing has counted yet may be absent from the aggregated answer: 0
  const get = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return {
    accepted: get('logd_logs_accepted_total'), persisted: get('logd_persisted_rows_total'),
    batches: get('logd_persister_batch_rows_count'), batchRows: get('logd_persister_batch_rows_sum'), t: Date.now(),
  };
}

const ROLLUPS = ['logd_counts_by_level', 'logd_counts_by_device', 'logd_hourly_by_level', 'logd_hourly_by_device', 'logd_daily_by_level', 'logd_daily_by_device'];

async function main(): Promise<void> {
  const startedAt = new Date();
  const matrix = configs();
  const needCluster = matrix.some((c) => c.redis === 'cluster');
  const needSingle = matrix.some((c) => c.redis === 'single');
  log(`configurations: ${matrix.map((c) => c.key).join('; ')}; ${ROUNDS} rounds`);
  const { head, redisServer, redis, pgs } = await benchServices(ROOT, log);
  const where = await storage(redis, pgs.pool);
  let cluster: RedisCluster | undefined;
  let clusterClient: Cluster | undefined;
  let clusterRefused: string[] = [];
  let clusterFs = '';
  let clusterFsync = '';
  if (needCluster) {
    log(`starting a Redis Cluster: ${MASTERS} masters + ${MASTERS * REPLICAS_PER_MASTER} replicas`);
    cluster = await startRedisCluster({ masters: MASTERS, replicasPerMaster: REPLICAS_PER_MASTER, appendfsync: 'everysec' });
    const nodeDirs = cluster.nodes.map((n) => n.dir);
    // services.ts SIGKILLs its servers at exit; their directories (AOF on /dev/shm) go too
    process.on('exit', () => { for (const d of nodeDirs) fs.rmSync(d, { recursive: true, force: true }); });
    // conf/redis.conf's settings on every node, as the single Redis has them (but maxmemory 4gb, as benchServices sets)
    const confArgs = redisConfArgs(path.join(ROOT, 'conf', 'redis.conf'));
    for (const n of cluster.nodes) {
      const c = new Redis({ host: '127.0.0.1', port: n.port, maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      clusterRefused = await applyConf(c, confArgs, { maxmemory: '4gb' });
      clusterFsync = ((await c.config('GET', 'appendfsync')) as string[])[1];
      c.disconnect();
    }
    clusterFs = fsTypeOf(cluster.nodes[0].dir);
    clusterClient = new Cluster(cluster.seeds.map((s) => ({ host: s.split(':')[0], port: Number(s.split(':')[1]) })), { redisOptions: { maxRetriesPerRequest: 1 } });
    clusterClient.on('error', () => undefined);
    await clusterClient.ping();
    log(`cluster up on ${cluster.seeds.join(' ')} (dirs on ${clusterFs}); CONFIG SET refused (start-only settings): ${clusterRefused.join(', ') || 'none'}`);
  }
  if (!needSingle) log('(the single Redis is started anyway, idle: benchServices)');

  const target = (c: Config): { client: AnyRedis; streams: string[]; redisPids: () => number[]; env: Record<string, string> } => c.redis === 'single'
    ? { client: redis, streams: queueStreams(1, false), redisPids: () => [redisServer.pid()].filter((p): p is number => !!p), env: {} }
    : { client: clusterClient!, streams: queueStreams(SHARDS, true), redisPids: () => cluster!.nodes.map((n) => n.pid).filter((p): p is number => !!p),
      env: { LOGD_REDIS_CLUSTER: cluster!.seeds.join(','), LOGD_QUEUE_SHARDS: String(SHARDS) } };

  const child = fork(__filename, ['--sender'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const load = (port: number, run: string): { stop(): Promise<SenderResult> } => {
    child.send({ start: { port, run } } satisfies SenderMessage);
    return {
      stop: () => new Promise((resolve) => {
        child.once('message', (m: { result: SenderResult }) => resolve(m.result));
        child.send({ stop: true } satisfies SenderMessage);
      }),
    };
  };
  const roots = (): number[] => [process.pid];
  const gate = new QuietGate(QUIET_BUDGET_MS, QUIET_CORES, QUIET_PER_MS);
  const cleanPg = async (): Promise<void> => {
    await pgs.pool.query(`TRUNCATE logs, logd_ingested, ${ROLLUPS.join(', ')}`);
    await pgs.pool.query('CHECKPOINT');
  };
  const drains: Drain[] = [];
  const ingests: Ingest[] = [];
  const checks: Check[] = [];
  const events = new Map<string, number>();
  const startFailures = new Map<string, number>();
  let starts = 0;
  let workers = 0;
  const startRetrying = async (env: Record<string, string>, key: string): Promise<Logd> => {
    for (let attempt = 1; ; attempt++) {
      const before = new Set(logdPrimaries());
      const starting = startLogd(ROOT, redisServer, pgs, { env });
      starting.catch(() => undefined);
      try {
        // startLogd waits up to 60 s for /health; a logd that exits at start is known sooner
        let seen: number | undefined;
        let timer: NodeJS.Timeout | undefined;
        const exited = new Promise<never>((_, reject) => {
          timer = setInterval(() => {
            if (seen === undefined) seen = logdPrimaries().find((p) => !before.has(p));
            else if (!alive(seen)) reject(new Error('logd serve: exited at start'));
          }, 200);
        });
        try {
          return await Promise.race([starting, exited]);
        } finally {
          clearInterval(timer);
        }
      } catch (err) {
        // reported: `logd serve` exiting at start is a finding, not a reason to lose the run (3 tries)
        const msg = (err as Error).message;
        const why = `logd serve failed to start (${key}): ${/logd serve: [^\n]*/.exec(msg)?.[0] ?? msg.slice(0, 200)}`;
        startFailures.set(why, (startFailures.get(why) ?? 0) + 1);
        log(`${why}; attempt ${attempt}`);
        if (attempt >= 3) throw err;
      }
    }
  };
  const fail = (c: Check): void => {
    checks.push(c);
    if (c.lost || c.duplicated || c.unknown || c.refusedButStored || c.rows !== c.logs) {
      throw new Error(`EXACTLY-ONCE CHECK FAILED for ${c.what}: ${JSON.stringify(c)}`);
    }
  };

  for (let round = 1; round <= ROUNDS; round++) {
    // rotate the order per round
    const order = matrix.map((_, i) => matrix[(i + round - 1) % matrix.length]);
    for (const cfg of order) {
      const t = target(cfg);
      const ci = matrix.indexOf(cfg);
      const instance = `bench-scale-${++starts}`;
      const startAt = Date.now();
      const env = {
        LOGD_QUEUE_MAX_BACKLOG: '50000000', LOGD_RETENTION_DAYS: '36500', LOGD_INGEST_MAX_FUTURE_S: '31536000',
        LOGD_PERSISTER_COUNT: String(cfg.persisters), INSTANCE_NAME: instance, ...t.env,
      };
      const logd = await startRetrying(env, cfg.key);
      workers = logd.config.workers;
      // every persister running: its heartbeat (src/queue/status.ts) published since this start
      const names = Array.from({ length: cfg.persisters }, (_, i) => (i ? `${instance}/${i}` : instance));
      await waitFor(`${cfg.persisters} persister heartbeat(s)`, async () => {
        const beats = await t.client.hgetall('logs:stream:persisters');
        return names.every((n) => beats[n] && (JSON.parse(beats[n]) as { at: number }).at >= startAt) || undefined;
      }, 60_000, 100);
      const persisters = (): number[] => logd.children().filter((c) => c.role === 'logd: persister').map((c) => c.pid);
      if (persisters().length !== cfg.persisters) throw new Error(`expected ${cfg.persisters} persister processes, found ${persisters().length}`);
      await sleep(1500); // the persisters' first reads, the first one's storage maintenance pass at start

      // (a) drain
      await cleanPg();
      await gate.wait(roots());
      const ceiling = await copyCeiling(pgs.pool, pgs.pid, ROOT, CEILING_ROWS, logd.config.batchRows, `before drain ${cfg.key} #${round}`);
      // (the metrics answer waits for every child: read before the persisters stop)
      const b0 = await counters(logd);
      const pids = persisters();
      for (const p of pids) process.kill(p, 'SIGSTOP');
      const drun = `sd${round}c${ci}`;
      let frameCount: number;
      try {
        frameCount = await preloadStreams(t.client, ROOT, drun, DRAIN_LOGS, PER, t.streams);
      } catch (err) {
        for (const p of pids) process.kill(p, 'SIGCONT');
        throw err;
      }
      const perShard = await Promise.all(t.streams.map((s) => t.client.xlen(s)));
      const quiet = await gate.wait(roots());
      const sampler = new Sampler(roots, 250).start();
      const r0 = pidCpuS(t.redisPids());
      const t0 = Date.now();
      for (const p of pids) process.kill(p, 'SIGCONT');
      const t1 = await waitBacklogZero(t.client, t.streams, DRAIN_TIMEOUT_MS);
      const r1 = pidCpuS(t.redisPids());
      const w = sampler.stop();
      await sleep(100);
      const b1 = await counters(logd);
      const acc = await accountPreloaded(pgs.pool, drun, frameCount, PER);
      fail({ what: `drain ${cfg.key} #${round}`, logs: acc.logs, rows: acc.rows, lost: acc.lost, duplicated: acc.duplicated, unknown: acc.unknownRows, refusedButStored: 0 });
      const seconds = (t1 - t0) / 1000;
      const us = (role: string): number => ((w.roles.get(role)?.cpuS ?? NaN) * 1e6) / acc.rows;
      const d: Drain = {
        cfg: cfg.key, round, rows: acc.rows, seconds, rowsPerS: acc.rows / seconds,
        ceilingRowsPerS: ceiling.rowsPerS, ceilingPgUsPerRow: ceiling.postgresCpuUsPerRow,
        persisterUs: us('logd: persister'), postgresUs: us('postgres'), redisUs: ((r1 - r0) * 1e6) / acc.rows, others: w.othersCores, perShard,
        rowsPerBatch: (b1.batchRows - b0.batchRows) / Math.max(1, b1.batches - b0.batches),
      };
      drains.push(d);
      log(`drain ${cfg.key} #${round}: ${int(d.rows)} rows in ${d.seconds.toFixed(2)} s = ${int(d.rowsPerS)} rows/s (ceiling ${int(d.ceilingRowsPerS)}, ratio ${(d.rowsPerS / d.ceilingRowsPerS).toFixed(2)}); `
        + `µs/row persister ${d.persisterUs.toFixed(1)}, postgres ${d.postgresUs.toFixed(1)}, redis ${d.redisUs.toFixed(1)}; ${int(d.rowsPerBatch)} rows/batch; others ${d.others.toFixed(2)} cores (${quiet.others.toFixed(2)} before); stream lengths after the preload ${perShard.join('/')} (XLEN: entries persisted in the last tail.resume_window_s included); lost 0, dup 0`);

      // (b) ingest with persisting
      await cleanPg();
      await gate.wait(roots());
      const irun = `si${round}c${ci}`;
      const running = load(logd.port, irun);
      await sleep(WARMUP_S * 1000);
      const c0 = await counters(logd);
      const win = new Sampler(roots, 500).start();
      const ir0 = pidCpuS(t.redisPids());
      await sleep(SECONDS * 1000);
      const c1 = await counters(logd);
      const ir1 = pidCpuS(t.redisPids());
      const iw = win.stop();
      const result = await running.stop();
      const tStop = Date.now();
      await waitBacklogZero(t.client, t.streams, DRAIN_TIMEOUT_MS, 50);
      const catchUpS = (Date.now() - tStop) / 1000;
      await sleep(100);
      const wr = { threads: result.threads } as WrkResult;
      const ia = await account(pgs.pool, irun, PER, wr);
      fail({ what: `ingest ${cfg.key} #${round}`, logs: ia.ackedLogs, rows: ia.rows, lost: ia.lost, duplicated: ia.duplicated, unknown: ia.unknownRows + ia.unmatchedAnswers, refusedButStored: ia.refusedButStored });
      const accepted = c1.accepted - c0.accepted;
      const persisted = c1.persisted - c0.persisted;
      const wsec = (c1.t - c0.t) / 1000;
      const cpu = (role: string): number => iw.roles.get(role)?.cpuS ?? NaN;
      const cores = new Map<string, number>([
        ['logd: http', cpu('logd: http') / iw.seconds], ['logd: persister', cpu('logd: persister') / iw.seconds],
        ['redis-server', (ir1 - ir0) / iw.seconds], ['postgres', cpu('postgres') / iw.seconds],
        ['logd: primary', cpu('logd: primary') / iw.seconds], ['bench-sender', cpu('bench-sender') / iw.seconds],
      ]);
      const ing: Ingest = {
        cfg: cfg.key, round, accepted, persisted, seconds: wsec, acceptedPerS: accepted / wsec, persistedPerS: persisted / wsec,
        httpUs: (cpu('logd: http') * 1e6) / accepted, persisterUs: (cpu('logd: persister') * 1e6) / persisted,
        redisUs: ((ir1 - ir0) * 1e6) / accepted, postgresUs: (cpu('postgres') * 1e6) / persisted,
        cores, others: iw.othersCores, delivered: result.delivered, errors: result.errors, catchUpS,
        rowsPerBatch: (c1.batchRows - c0.batchRows) / Math.max(1, c1.batches - c0.batches),
      };
      ingests.push(ing);
      log(`ingest ${cfg.key} #${round}: accepted ${int(ing.acceptedPerS)} logs/s, persisted ${int(ing.persistedPerS)} rows/s; µs/log http ${ing.httpUs.toFixed(1)}, redis ${ing.redisUs.toFixed(1)}; µs/row persister ${ing.persisterUs.toFixed(1)}, postgres ${ing.postgresUs.toFixed(1)}; ${int(ing.rowsPerBatch)} rows/batch; `
        + `cores ${[...cores].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}; others ${ing.others.toFixed(2)}; delivered ${int(ia.ackedLogs)} (rows ${int(ia.rows)}, lost ${ia.lost}, dup ${ia.duplicated}); caught up ${catchUpS.toFixed(1)} s after the load`
        + `${Object.keys(result.errors).length ? `; errors ${JSON.stringify(result.errors)}` : ''}`);
      await cleanPg();
      await logd.stop();
      // the first warning or error of each kind, in full, to the bench's log
      const seenKinds = new Set<string>();
      for (const line of logd.output().split('\n')) {
        const m = /"level":(?:40|50|60).*"msg":"([^"]*)"/.exec(line);
        if (!m || seenKinds.has(m[1]) || /running as root|authentication is OFF/.test(m[1])) continue;
        seenKinds.add(m[1]);
        log(`logd (${cfg.key} #${round}) said: ${line.slice(0, 600)}`);
      }
      // by message (ports made alike), with the configuration it came from
      for (const [k, n] of logd.events()) {
        const key = `${k.replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<port>')} [${cfg.key}]`;
        events.set(key, (events.get(key) ?? 0) + n);
      }
      const st = logd.stopped();
      if (st.code !== 0) events.set(`logd exited with ${st.code}`, (events.get(`logd exited with ${st.code}`) ?? 0) + 1);
    }
  }
  child.kill();
  const minutes = (Date.now() - T0) / 60_000;
  const section = report(matrix, drains, ingests, checks, {
    startedAt, minutes, head, workers, events, startFailures,
    pgWhere: `PostgreSQL 15 data directory \`${where.postgres.dataDirectory}\` on **${where.postgres.fs}** (stock settings: fsync ${where.postgres.fsync}, synchronous_commit ${where.postgres.synchronousCommit})`,
    singleWhere: `single Redis: conf/redis.conf's settings as arguments (maxmemory set to 4gb), AOF \`${where.redis.aofDirectory}\` on ${where.redis.fs}, appendfsync ${where.redis.appendfsync}`,
    clusterWhere: cluster ? `Redis Cluster: ${MASTERS} masters + ${MASTERS * REPLICAS_PER_MASTER} replicas on 127.0.0.1 (test/helpers/cluster.ts: cluster-node-timeout 1000 ms, the AOF on ${clusterFs}, appendfsync ${clusterFsync}), conf/redis.conf's other settings applied to every node with CONFIG SET (maxmemory 4gb; refused, as they are set at start only: ${clusterRefused.join(', ') || 'none'}), queue.shards ${SHARDS}` : '',
  });
  clusterClient?.disconnect();
  process.stdout.write(`${section}\n`);
  if (OUT !== '-') {
    if (!fs.existsSync(OUT)) fs.writeFileSync(OUT, '');
    writeSection(OUT, { begin: '<!-- bench:scale:begin -->', end: '<!-- bench:scale:end -->', after: '<!-- bench:tail:end -->' }, section);
    log(`wrote the section to ${OUT}`);
  }
}

/** Non-2xx answers over the ingest loads, by configuration. */
function refusals(ingests: Ingest[]): string {
  const by = new Map<string, Record<string, number>>();
  for (const i of ingests) {
    const m = by.get(i.cfg) ?? {};
    for (const [k, n] of Object.entries(i.errors)) m[k] = (m[k] ?? 0) + n;
    by.set(i.cfg, m);
  }
  const parts = [...by].filter(([, m]) => Object.keys(m).length).map(([cfg, m]) => `${cfg}: ${Object.entries(m).map(([k, n]) => `${n} × ${k}`).join(', ')}`);
  return parts.length ? parts.join('; ') : 'none';
}

const f0 = (n: number): string => int(n);
const f1 = (n: number): string => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');

function report(matrix: Config[], drains: Drain[], ingests: Ingest[], checks: Check[], h: {
  startedAt: Date; minutes: number; head: string; workers: number; events: Map<string, number>; startFailures: Map<string, number>; pgWhere: string; singleWhere: string; clusterWhere: string;
}): string {
  const med = <T>(xs: T[], f: (x: T) => number): number => median(xs.map(f));
  const of = <T extends { cfg: string }>(xs: T[], c: Config): T[] => xs.filter((x) => x.cfg === c.key);
  /** per round ratio of configuration a to b on f, then the median */
  const ratio = <T extends { cfg: string; round: number }>(xs: T[], a: Config, b: Config, f: (x: T) => number): { per: number[]; med: number } => {
    const per = of(xs, a).map((x) => f(x) / f(of(xs, b).find((y) => y.round === x.round)!));
    return { per, med: median(per) };
  };
  const find = (redis: RedisKind, persisters: number): Config | undefined => matrix.find((c) => c.redis === redis && c.persisters === persisters);
  const allOthers = [...drains.map((d) => d.others), ...ingests.map((i) => i.others)];
  const busiest = Math.max(...allOthers);
  const lines: string[] = [
    '## Scaling: persisters, shards and Redis Cluster',
    '',
    `Measured on ${h.startedAt.toISOString().replace(/\.\d+Z$/, 'Z')} in ${h.minutes.toFixed(1)} min; logd at \`${h.head}\`; command: \`${commandLine()}\`.`,
    `Machine: ${versions()}. ${h.pgWhere}. ${h.singleWhere}.${h.clusterWhere ? ` ${h.clusterWhere}.` : ''}`,
    `logd: \`logd serve\` with its default worker count (${h.workers} HTTP workers), auth open, queue.max_backlog 50,000,000 (nothing refused), started afresh for each configuration and round; everything on loopback and sharing the machine's cores with the sender and the bench. How it works: bench/README.md (bench:scale).`,
    '',
    `Other load on the machine (processes the bench did not start) during the measurements: median ${median(allOthers).toFixed(2)}, max ${busiest.toFixed(2)} cores${busiest >= QUIET_CORES ? ' (the machine was shared: rates are noisier than the µs per log)' : ' (otherwise quiet)'}.`,
    '',
    `### (a) Persister drain: ${int(DRAIN_LOGS)} preloaded logs, nothing else running`,
    '',
    'Frames spread evenly over the queue\'s streams; rows/s from the persisters\' SIGCONT to the summed backlog at 0; the COPY ceiling (one connection, raw COPY of the same rows into a copy of `logs`) measured right before each drain; CPU µs per row over the drain; rows per COPY batch from logd_persister_batch_rows. Medians over the rounds.',
    '',
    '| configuration | rows/s per round | rows/s | COPY ceiling rows/s | drain / ceiling | persisters µs/row | postgres µs/row | redis-server µs/row | rows per COPY batch | others, cores |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...matrix.map((c) => {
      const d = of(drains, c);
      return `| ${c.key} | ${d.map((x) => f0(x.rowsPerS)).join(', ')} | **${f0(med(d, (x) => x.rowsPerS))}** | ${f0(med(d, (x) => x.ceilingRowsPerS))} | ${med(d, (x) => x.rowsPerS / x.ceilingRowsPerS).toFixed(2)} | ${f1(med(d, (x) => x.persisterUs))} | ${f1(med(d, (x) => x.postgresUs))} | ${f1(med(d, (x) => x.redisUs))} | ${f0(med(d, (x) => x.rowsPerBatch))} | ${med(d, (x) => x.others).toFixed(2)} |`;
    }),
    '',
    `PostgreSQL's CPU per row in the raw COPY ceiling: ${f1(median(drains.map((d) => d.ceilingPgUsPerRow)))} µs (median of all).`,
    '',
    `### (b) Ingest with persisting: POST /api/logs/batch, ${PER} logs/request over ${int(DEVICES)} devices, ${CONNECTIONS} connections, closed loop`,
    '',
    `${SECONDS} s measured after ${WARMUP_S} s of warm-up. Accepted = logd_logs_accepted_total, persisted = logd_persisted_rows_total over the window. CPU µs per accepted log (HTTP workers, redis-server) or per persisted row (persisters, postgres) over the window. Medians over the rounds.`,
    '',
    '| configuration | accepted logs/s per round | accepted logs/s | persisted rows/s | HTTP workers µs/log | redis-server µs/log | persisters µs/row | postgres µs/row | rows per COPY batch | caught up after the load, s |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...matrix.map((c) => {
      const x = of(ingests, c);
      return `| ${c.key} | ${x.map((i) => f0(i.acceptedPerS)).join(', ')} | **${f0(med(x, (i) => i.acceptedPerS))}** | **${f0(med(x, (i) => i.persistedPerS))}** | ${f1(med(x, (i) => i.httpUs))} | ${f1(med(x, (i) => i.redisUs))} | ${f1(med(x, (i) => i.persisterUs))} | ${f1(med(x, (i) => i.postgresUs))} | ${f0(med(x, (i) => i.rowsPerBatch))} | ${med(x, (i) => i.catchUpS).toFixed(1)} |`;
    }),
    '',
    '| configuration | cores over the window (median): HTTP workers, persisters, redis-server, postgres, logd primary, sender | others, cores |',
    '|---|---|---|',
    ...matrix.map((c) => {
      const x = of(ingests, c);
      const roles = ['logd: http', 'logd: persister', 'redis-server', 'postgres', 'logd: primary', 'bench-sender'];
      return `| ${c.key} | ${roles.map((r) => med(x, (i) => i.cores.get(r) ?? 0).toFixed(2)).join(', ')} | ${med(x, (i) => i.others).toFixed(2)} |`;
    }),
    '',
    '### Ratios (median of the per-round ratios)',
    '',
  ];
  for (const kind of ['single', 'cluster'] as const) {
    const one = find(kind, 1);
    const two = find(kind, 2);
    if (!one || !two) continue;
    const d = ratio(drains, two, one, (x) => x.rowsPerS);
    const p = ratio(ingests, two, one, (x) => x.persistedPerS);
    const a = ratio(ingests, two, one, (x) => x.acceptedPerS);
    lines.push(`- ${kind} Redis, 2 vs 1 persisters: drain **${d.med.toFixed(2)}** (${d.per.map((r) => r.toFixed(2)).join(', ')}); ingest persisted ${p.med.toFixed(2)} (${p.per.map((r) => r.toFixed(2)).join(', ')}), accepted ${a.med.toFixed(2)}.`);
  }
  for (const n of [...new Set(matrix.map((c) => c.persisters))]) {
    const s = find('single', n);
    const c = find('cluster', n);
    if (!s || !c) continue;
    const d = ratio(drains, c, s, (x) => x.rowsPerS);
    const p = ratio(ingests, c, s, (x) => x.persistedPerS);
    const a = ratio(ingests, c, s, (x) => x.acceptedPerS);
    const r = ratio(ingests, c, s, (x) => x.redisUs);
    lines.push(`- cluster vs single Redis, ${n} persister${n > 1 ? 's' : ''}: drain **${d.med.toFixed(2)}** (${d.per.map((v) => v.toFixed(2)).join(', ')}); ingest accepted ${a.med.toFixed(2)} (${a.per.map((v) => v.toFixed(2)).join(', ')}), persisted ${p.med.toFixed(2)}; redis-server µs/log ${r.med.toFixed(2)}x.`);
  }
  const tot = checks.reduce((a, c) => ({ logs: a.logs + c.logs, lost: a.lost + c.lost, dup: a.dup + c.duplicated }), { logs: 0, lost: 0, dup: 0 });
  lines.push('',
    `Exactly once: ${checks.length} measurements (every drain and every ingest load), ${int(tot.logs)} preloaded or acknowledged logs, each found in PostgreSQL once by its run tag: ${tot.lost} lost, ${tot.dup} duplicated (the bench stops on any).`,
    `Refused requests in the ingest loads (closed loop: refused logs are not acknowledged and not counted as accepted): ${refusals(ingests)}.`,
    `\`logd serve\` starts that failed and were retried: ${h.startFailures.size ? [...h.startFailures].map(([k, n]) => `${k} ×${n}`).join('; ') : 'none'}.`,
    `logd's warnings and errors: ${h.events.size ? [...h.events].map(([k, n]) => `${k} ×${n}`).join('; ') : 'none'}.`);
  return lines.join('\n');
}

if (process.argv[2] === '--sender') sender();
else {
  main().then(() => stopAll()).then(() => cleanupAll()).then(() => process.exit(0), (err) => {
    process.stderr.write(`bench:scale failed: ${(err as Error).stack ?? err}\n`);
    void stopAll().then(() => cleanupAll()).catch(() => undefined).finally(() => process.exit(1));
  });
}
