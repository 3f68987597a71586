/**
 * One measured load run: clean start (backlog 0, empty `logs`, checkpoint),
 * wrk against logd or nginx, drain, accounting, /proc figures.
 */
import type Redis from 'ioredis';
import type { RedisServer } from '../../test/helpers/services';
import { account, type Accounting } from './account';
import { QuietGate, Sampler, type RoleStats } from './proc';
import { sleep, type Pg } from './stack';
import { histCount, histPercentile, monoUs, runWrk, type WrkResult } from './wrk';

export interface Scenario {
  key: string;
  title: string;
  path: '/api/log' | '/api/logs/batch';
  per: number;
  connections: number;
}

export const SCENARIOS: Scenario[] = [
  { key: 'single', title: '1 log/request (/api/log)', path: '/api/log', per: 1, connections: 50 },
  { key: 'stress', title: '5 logs/request, 200 clients (reference stress test)', path: '/api/logs/batch', per: 5, connections: 200 },
  { key: 'batch100', title: '100 logs/request', path: '/api/logs/batch', per: 100, connections: 50 },
];

export type Via = 'direct' | 'nginx';

export interface RunContext {
  redis: Redis;
  redisServer: RedisServer;
  pg: Pg;
  urls: Record<Via, string>;
  script: string;
  backlogKey: string;
  log: (s: string) => void;
  gate?: QuietGate;
  /** queue.max_backlog of the logd under test */
  maxBacklog: number;
  stream: string;
}

export interface RunResult {
  scenario: string;
  via: Via;
  run: string;
  per: number;
  connections: number;
  threads: number;
  /** offered requests/s (open loop), 0 = closed loop */
  rate: number;
  seconds: number;
  acceptedLogsPerS: number;
  /** accepted logs/s until the backlog reached queue.max_backlog (null: it never did) */
  doorLogsPerS: number | null;
  backlogFullAfterS: number | null;
  requestsPerS: number;
  /** ms, of 2xx answers only; closed loop: from the write; open loop: from the scheduled send time (no coordinated omission) */
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** wrk's own percentiles (from the actual write), ms */
  wrkP50: number;
  wrkP95: number;
  wrkP99: number;
  /** rows / (first log received -> backlog back to 0 after the load) */
  e2eLogsPerS: number;
  e2eSeconds: number;
  /** rows inserted per second while the load ran, and after it (drain, persister alone) */
  persistDuringLoadPerS: number;
  drainLogsPerS: number | null;
  drainSeconds: number;
  /** monotonic µs: load start, load end, backlog back to 0 */
  mono: { start: number; end: number; drained: number };
  maxBacklog: number;
  acc: Accounting;
  socketErrors: WrkResult['errors'];
  roles: Record<string, RoleStats>;
  peakRss: Record<string, { rss: number; count: number }>;
  /** CPU cores used on average during the load: ours, and by processes that are not ours */
  oursCores: number;
  othersCores: number;
  loadavg: number;
  /** the others' load measured just before the run, and how long the quiet gate waited for it */
  othersBefore?: number;
  gateWaitMs?: number;
  /** CPU µs per log, by role, over the load and the drain (robust to other processes' load): per log sent for wrk, nginx and the HTTP workers, per row stored for the rest */
  cpuPerLogUs: Record<string, number>;
  /** raw COPY ceiling measured right before this run (100-log runs), rows/s */
  copyCeiling?: number;
}

async function seqValue(pg: Pg): Promise<number> {
  const { rows } = await pg.pool.query<{ v: string }>('SELECT last_value::text AS v FROM logs_id_seq');
  return Number(rows[0].v);
}

async function backlog(ctx: RunContext): Promise<number> {
  return Number((await ctx.redis.get(ctx.backlogKey)) ?? 0);
}

/** Waits for an empty backlog, then empties the tables so every run starts alike. */
export async function cleanSlate(ctx: RunContext, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await backlog(ctx)) > 0) {
    if (Date.now() > deadline) throw new Error(`backlog still ${await backlog(ctx)} after ${timeoutMs} ms`);
    await sleep(100);
  }
  await ctx.pg.pool.query('TRUNCATE logs, logd_ingested');
  await ctx.pg.pool.query('CHECKPOINT');
}

let runCounter = 0;

export async function measure(ctx: RunContext, s: Scenario, via: Via, opts: { seconds: number; threads: number; rate?: number; connections?: number }): Promise<RunResult> {
  await cleanSlate(ctx);
  const gate = ctx.gate ? await ctx.gate.wait([process.pid]) : undefined;
  const run = `b${Date.now().toString(36)}${++runCounter}`;
  const connections = opts.connections ?? s.connections;
  const loadavg = Number((await import('node:os')).loadavg()[0].toFixed(2));
  const roots = (): number[] => [process.pid];
  const cpu = new Sampler(roots, 250).start();
  const mem = new Sampler(roots, 250).start();
  let maxBacklog = 0;
  let polling = true;
  // backlog and frames appended (XINFO STREAM entries-added: every frame of a run holds `per` logs)
  const series: { t: number; backlog: number; added: number }[] = [];
  const poller = (async () => {
    while (polling) {
      const [b, info] = await Promise.all([backlog(ctx).catch(() => 0), ctx.redis.call('XINFO', 'STREAM', ctx.stream).catch(() => undefined) as Promise<unknown[] | undefined>]);
      const i = info ? info.indexOf('entries-added') : -1;
      maxBacklog = Math.max(maxBacklog, b);
      if (i >= 0) series.push({ t: Date.now(), backlog: b, added: Number(info![i + 1]) });
      await sleep(100);
    }
  })();
  const seqStart = await seqValue(ctx.pg);
  const w = await runWrk({ url: ctx.urls[via], path: s.path, per: s.per, run, connections, threads: opts.threads, seconds: opts.seconds, rate: opts.rate, script: ctx.script });
  const load = cpu.stop();
  const seqAtExit = await seqValue(ctx.pg);
  const backlogAtExit = await backlog(ctx);
  // drain: the moment the backlog is back to 0 = every accepted log committed (ack follows COMMIT)
  let drainedMs = Date.now();
  let drainedMonoUs = monoUs();
  const drainDeadline = Date.now() + 600_000;
  for (;;) {
    const b = await backlog(ctx);
    drainedMs = Date.now();
    drainedMonoUs = monoUs();
    if (b <= 0) break;
    if (Date.now() > drainDeadline) throw new Error(`backlog still ${b} 600 s after the load`);
    await sleep(10);
  }
  const seqDrained = await seqValue(ctx.pg);
  await sleep(200);
  polling = false;
  await poller;
  const whole = mem.stop();
  const acc = await account(ctx.pg.pool, run, s.per, w);
  const seconds = w.duration_us / 1e6;
  const e2eSeconds = (drainedMs - acc.firstCreatedMs) / 1000;
  const drainSeconds = (drainedMs - w.exitedMs) / 1000;
  const rate = opts.rate ?? 0;
  const fromHist = histCount(w.hist) > 0;
  // door rate: logs accepted per second from the start until the backlog reached queue.max_backlog
  // (then logd answers 503 by design and the accepted rate falls to the persisted rate)
  let doorLogsPerS: number | null = null;
  const inLoad = series.filter((p) => p.t >= w.startedMs && p.t <= w.exitedMs);
  const full = inLoad.find((p) => p.backlog >= ctx.maxBacklog - s.per);
  if (full && inLoad.length && full.t - inLoad[0].t >= 1000) doorLogsPerS = (s.per * (full.added - inLoad[0].added)) / ((full.t - inLoad[0].t) / 1000);
  const roles: Record<string, RoleStats> = {};
  for (const [k, v] of load.roles) roles[k] = v;
  const peakRss: Record<string, { rss: number; count: number }> = {};
  const cpuPerLogUs: Record<string, number> = {};
  // front-end roles work for every log sent (refused ones too); the back end for every row stored
  const handled = (acc.okRequests + acc.refusedRequests + acc.unansweredRequests) * s.per;
  const FRONT = new Set(['wrk', 'nginx: worker', 'logd: http']);
  for (const [k, v] of whole.roles) {
    peakRss[k] = { rss: v.peakRss, count: v.count };
    const n = FRONT.has(k) ? handled : acc.rows;
    if (n) cpuPerLogUs[k] = (v.cpuS * 1e6) / n;
  }
  return {
    scenario: s.key, via, run, per: s.per, connections, threads: opts.threads, rate, seconds,
    acceptedLogsPerS: acc.ackedLogs / seconds,
    doorLogsPerS,
    backlogFullAfterS: full ? (full.t - w.startedMs) / 1000 : null,
    requestsPerS: acc.okRequests / seconds,
    p50: fromHist ? histPercentile(w.hist, 50) : w.latency_us.p50 / 1000,
    p95: fromHist ? histPercentile(w.hist, 95) : w.latency_us.p95 / 1000,
    p99: fromHist ? histPercentile(w.hist, 99) : w.latency_us.p99 / 1000,
    max: fromHist ? histPercentile(w.hist, 100) : w.latency_us.max / 1000,
    wrkP50: w.latency_us.p50 / 1000, wrkP95: w.latency_us.p95 / 1000, wrkP99: w.latency_us.p99 / 1000,
    e2eLogsPerS: acc.rows / e2eSeconds,
    e2eSeconds,
    persistDuringLoadPerS: (seqAtExit - seqStart) / ((w.exitedMs - w.startedMs) / 1000),
    drainLogsPerS: backlogAtExit > 20_000 && drainSeconds > 0.5 ? (seqDrained - seqAtExit) / drainSeconds : null,
    drainSeconds,
    mono: { start: w.startedMonoUs, end: w.exitedMonoUs, drained: drainedMonoUs },
    maxBacklog,
    acc,
    socketErrors: w.errors,
    roles, peakRss, cpuPerLogUs,
    oursCores: load.oursCores, othersCores: load.othersCores, loadavg,
    othersBefore: gate?.others, gateWaitMs: gate?.waitedMs,
  };
}

/** An unrecorded load so that the measured runs find logd's code compiled and its pools warm. */
export async function warmUp(ctx: RunContext, seconds: number): Promise<void> {
  for (const s of SCENARIOS) {
    await runWrk({ url: ctx.urls.direct, path: s.path, per: s.per, run: `warm${++runCounter}`, connections: Math.min(s.connections, 50), threads: 1, seconds, script: ctx.script });
  }
  await cleanSlate(ctx);
}

export const median = (xs: number[]): number => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
