/**
 * What bench/listeners.ts and bench/protocols.ts share: their load generator
 * (bench/lib/senders.ts) as a child process driven one load at a time,
 * logd's count of accepted logs, the wait for its backlog between loads,
 * CPU per log by role, and the report's header, formats and placement in
 * BENCHMARKS.md.
 */
import { execFileSync, fork, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Redis from 'ioredis';
import type pg from 'pg';
import { QUIET_CORES, Sampler, type RoleStats } from './proc';
import type { Load, Result } from './senders';
import { median } from './run';
import type { RedisServer } from '../../test/helpers/services';
import { benchPostgres, benchRedis, installReaper, redisClient, sleep, type Logd, type Pg, type storage } from './stack';

/** What a load measured (each bench adds its path and its own checks). */
export interface LoadMeasure {
  round: number;
  /** logs accepted (logd_logs_accepted_total) over the measured window, and its length in s */
  accepted: number;
  seconds: number;
  /** CPU µs per accepted log over the window, by role */
  windowUs: Map<string, number>;
  /** cores used over the window, by role */
  cores: Map<string, number>;
  /** CPU µs per stored log from the load's start to the persister caught up, by role */
  wholeUs: Map<string, number>;
  othersCores: number;
  result: Result;
  rows: number;
  /** from the load's end to the backlog back at 0, s */
  drainS: number;
}

export const int = (n: number): string => Math.round(n).toLocaleString('en-US');
export const us = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '—' : n < 10 ? n.toFixed(2) : n.toFixed(1));

/** Roles of the stack and the sender (not the bench's own process). */
const STACK = ['logd: primary', 'logd: http', 'logd: persister', 'redis-server', 'postgres', 'bench-sender'];
/** The CPU µs per log of the whole stack and the sender, from each role's. */
export const stackUs = (perRole: Map<string, number>): number => STACK.reduce((sum, role) => sum + (perRole.get(role) ?? 0), 0);

/** Each role's CPU in µs per log. */
export const perLog = (roles: Map<string, RoleStats>, logs: number): Map<string, number> =>
  new Map([...roles].map(([role, r]) => [role, (r.cpuS * 1e6) / Math.max(logs, 1)]));

/**
 * What a bench of a running logd starts from: everything it starts is
 * stopped when it ends or is interrupted; the commit measured; a built
 * logd; Redis with conf/redis.conf's settings but 4 GB of memory (the loads
 * outrun the persister: the backlog they leave must fit, conf/redis.conf
 * has 512mb) and PostgreSQL.
 */
export async function benchServices(root: string, log: (s: string) => void): Promise<{ head: string; redisServer: RedisServer; redis: Redis; pgs: Pg }> {
  installReaper();
  const head = commit(root);
  if (!fs.existsSync(path.join(root, 'dist', 'bin', 'logd.js'))) throw new Error('dist/bin/logd.js is missing: npm run build');
  log('starting redis-server, postgres');
  const redisServer = await benchRedis(root);
  const redis = redisClient(redisServer);
  await redis.config('SET', 'maxmemory', '4gb');
  return { head, redisServer, redis, pgs: await benchPostgres() };
}

/** The commit the bench ran, and the files of logd changed since it. */
export function commit(root: string): string {
  const head = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim();
  const touched = execFileSync('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'bin', 'schema.sql', 'conf', 'package.json']).toString()
    .split('\n').filter(Boolean).map((l) => l.slice(3));
  return touched.length ? `${head} + uncommitted changes in ${touched.join(', ')}` : head;
}

/** The machine and the versions of Node, Redis and PostgreSQL. */
export function versions(): string {
  const out = (cmd: string, args: string[]): string => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`;
  };
  const cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?').replace(/\s+/g, ' ');
  const redis = /v=(\S+)/.exec(out('redis-server', ['--version']))?.[1] ?? '?';
  const pg = /(\d+\.\d+)/.exec(out('/usr/lib/postgresql/15/bin/postgres', ['--version']))?.[1] ?? '?';
  return `${os.availableParallelism()} cores (${cpu}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, Linux ${os.release()}; Node ${process.version}, redis-server ${redis}, PostgreSQL ${pg}`;
}

/** The load generator child; one load at a time. */
export class Sender {
  private readonly child: ChildProcess;
  private waiting: { resolve(r: Result): void; reject(e: Error): void } | undefined;

  constructor() {
    // the child inherits this process's --import of the TypeScript loader
    this.child = fork(path.join(__dirname, 'senders.ts'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: { result?: Result }) => {
      if (!m.result) return;
      const w = this.waiting;
      this.waiting = undefined;
      w?.resolve(m.result);
    });
    this.child.on('exit', (code, signal) => this.waiting?.reject(new Error(`the sender exited (${code ?? signal})`)));
  }

  /** Starts a load; resolves with its result once it is stopped or ends by itself. */
  start(load: Load): Promise<Result> {
    const done = new Promise<Result>((resolve, reject) => { this.waiting = { resolve, reject }; });
    this.child.send({ start: load });
    return done;
  }

  stop(): void {
    this.child.send({ stop: true });
  }

  close(): void {
    if (this.child.exitCode === null) this.child.kill();
  }
}

/** logd_logs_accepted_total from logd's /metrics, and when it was read. */
export async function acceptedTotal(logd: Logd): Promise<{ n: number; t: number }> {
  const text = await (await fetch(`${logd.url}/metrics`)).text();
  const m = /^logd_logs_accepted_total (\S+)$/m.exec(text);
  if (!m) throw new Error('logd_logs_accepted_total is missing from /metrics');
  return { n: Number(m[1]), t: Date.now() };
}

/**
 * After `warmupS` of a running load, `seconds` of it measured: the logs logd
 * accepted in that window, its length in s, and the processes' CPU in it.
 */
export async function measuredWindow(logd: Logd, roots: () => number[], warmupS: number, seconds: number): Promise<{ accepted: number; seconds: number; cpu: ReturnType<Sampler['stop']> }> {
  await sleep(warmupS * 1000);
  const a0 = await acceptedTotal(logd);
  const window = new Sampler(roots, 500).start();
  await sleep(seconds * 1000);
  const a1 = await acceptedTotal(logd);
  const cpu = window.stop();
  return { accepted: a1.n - a0.n, seconds: (a1.t - a0.t) / 1000, cpu };
}

/** Puts `body` between the markers `begin` and `end` of `file`, or when they are absent adds it after the marker `after` (else at the end). */
export function writeSection(file: string, markers: { begin: string; end: string; after: string }, body: string): void {
  const { begin, end, after } = markers;
  const block = `${begin}\n${body.trimEnd()}\n${end}`;
  let text = fs.readFileSync(file, 'utf8');
  const b = text.indexOf(begin);
  const e = text.indexOf(end);
  if (b >= 0 && e > b) text = text.slice(0, b) + block + text.slice(e + end.length);
  else {
    const a = text.indexOf(after);
    text = a >= 0 ? `${text.slice(0, a + after.length)}\n\n${block}${text.slice(a + after.length)}` : `${text.trimEnd()}\n\n${block}\n`;
  }
  fs.writeFileSync(file, text);
}

/** logd's backlog counter (queue.stream's default), and the longest wait for the persister to bring it to 0, in ms. */
const BACKLOG_KEY = 'logs:stream:backlog';
const DRAIN_TIMEOUT_MS = 180_000;
/** The longest a load waits for the machine to go quiet (QuietGate), in ms. */
export const QUIET_PER_LOAD_MS = 5000;

/**
 * drained(): waits until logd's backlog counter is 0, at most
 * DRAIN_TIMEOUT_MS, and says how long it took in s; clean(): that, then the
 * logs table emptied and checkpointed, for the next load.
 */
export function backlogWaits(redis: Redis, pool: pg.Pool): { drained(): Promise<number>; clean(): Promise<void> } {
  const backlog = async (): Promise<number> => Number((await redis.get(BACKLOG_KEY)) ?? 0);
  const drained = async (): Promise<number> => {
    const t = Date.now();
    while ((await backlog()) > 0) {
      if (Date.now() - t > DRAIN_TIMEOUT_MS) throw new Error(`backlog still ${await backlog()} after ${DRAIN_TIMEOUT_MS} ms`);
      await sleep(50);
    }
    return (Date.now() - t) / 1000;
  };
  const clean = async (): Promise<void> => {
    await drained();
    await pool.query('TRUNCATE logs, logd_ingested');
    await pool.query('CHECKPOINT');
  };
  return { drained, clean };
}

/** What a report says of its run before its tables. */
export interface RunHeader {
  startedAt: Date;
  minutes: number;
  head: string;
  workers: number;
  machine: string;
  where: Awaited<ReturnType<typeof storage>>;
}

/** The paragraphs on when and where a report's run was measured, and the other load on the machine (`others`: cores per load). */
export function headerLines(h: RunHeader, others: number[]): string[] {
  const pg = h.where.postgres;
  const redis = h.where.redis;
  const busiest = Math.max(...others);
  return [
    `Measured on ${h.startedAt.toISOString().replace(/\.\d+Z$/, 'Z')} in ${h.minutes.toFixed(1)} min; logd at \`${h.head}\` with its default worker count (${h.workers} HTTP workers + persister), auth open, queue.max_backlog 50,000,000 and Redis maxmemory 4gb so that no load is refused (the persister runs throughout and catches up after each load). Machine: ${h.machine}. How it works: bench/README.md.`,
    '',
    `Storage: PostgreSQL's data directory (\`${pg.dataDirectory}\`; stock settings, fsync ${pg.fsync}, synchronous_commit ${pg.synchronousCommit}) on ${pg.fs}; Redis' AOF (\`${redis.aofDirectory}\`; appendonly ${redis.appendonly}, appendfsync ${redis.appendfsync}) on ${redis.fs}.`,
    '',
    `Everything shares the ${os.availableParallelism()} cores: the sender (one Node process, bench/lib/senders.ts), logd, Redis, PostgreSQL. Other load on the machine during the measured windows (processes the bench did not start, /proc): median ${median(others).toFixed(2)}, max ${busiest.toFixed(2)} cores${busiest >= QUIET_CORES ? ' (the machine was shared: rates are noisier than the µs per log)' : ' (the machine was otherwise quiet)'}.`,
  ];
}
