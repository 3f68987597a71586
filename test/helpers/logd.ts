/**
 * Runs the built logd (`node dist/bin/logd.js serve`) as a real process
 * against the test's private Redis and PostgreSQL, and small HTTP helpers.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import type { Test } from 'tap';
import { cleanupAll, freePort, startPostgres, startRedis, waitFor, type PostgresServer, type RedisServer } from './services';

export const ROOT = path.resolve(__dirname, '..', '..');
export const LOGD_BIN = path.join(ROOT, 'dist', 'bin', 'logd.js');

export interface Logd {
  port: number;
  url: string;
  proc: ChildProcess;
  output(): string;
  /** pids of the children with this process title ('http' or 'persister') */
  children(role: 'http' | 'persister'): number[];
  /** sends a signal and resolves with the exit code */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface LogdOptions {
  redis?: RedisServer;
  pg?: PostgresServer;
  workers?: number;
  /** the port to listen on (default: a free one) */
  port?: number;
  env?: Record<string, string>;
  args?: string[];
  /** wait for GET /health to answer 200 (default true) */
  waitHealthy?: boolean;
}

const running = new Set<ChildProcess>();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

/** The environment that points logd at the test's services (the reference's names, as a user would). */
export function serviceEnv(redis?: RedisServer, pg?: PostgresServer): Record<string, string> {
  return {
    ...(redis ? { REDIS_HOST: redis.host, REDIS_PORT: String(redis.port) } : {}),
    ...(pg ? pg.env : {}),
  };
}

export async function startLogd(opts: LogdOptions = {}): Promise<Logd> {
  const port = opts.port ?? await freePort();
  const env = {
    ...process.env,
    LOGD_LOG_LEVEL: 'warn',
    // Tests of other features run without tokens, explicitly (test/auth.test.ts and test/security.test.ts use tokens),
    // and as root against their private services (the suite runs as root in CI).
    LOGD_AUTH_MODE: 'open',
    LOGD_SERVER_ALLOW_ROOT: 'true',
    // No proxy pools connections to a test's logd: stop as soon as requests are answered.
    LOGD_SERVER_DRAIN_MS: '0',
    // Tests of other features send fixed timestamps (2026-03-01, 1970): the accepted window and retention
    // (test/storage.test.ts) are set per test there.
    LOGD_RETENTION_DAYS: '36500',
    LOGD_INGEST_MAX_FUTURE_S: '31536000',
    ...serviceEnv(opts.redis, opts.pg),
    ...opts.env,
  };
  const proc = spawn(process.execPath, [LOGD_BIN, 'serve', '--port', String(port), '--workers', String(opts.workers ?? 2), ...(opts.args ?? [])], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let out = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => { running.delete(proc); resolve(code); }));
  const url = `http://127.0.0.1:${port}`;
  const logd: Logd = {
    port,
    url,
    proc,
    output: () => out,
    children: (role) => childPids(proc.pid!, `logd: ${role}`),
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  if (opts.waitHealthy ?? true) {
    await waitFor('logd to answer /health with 200', async () => {
      if (proc.exitCode !== null) throw new Error(`logd exited with ${proc.exitCode}:\n${out}`);
      const res = await fetch(`${url}/health`).catch(() => undefined);
      return res?.status === 200 && logd.children('http').length === (opts.workers ?? 2)
        && logd.children('persister').length === Number(opts.env?.LOGD_PERSISTER_COUNT ?? 1);
    }, 60_000);
  }
  return logd;
}

/** Children of `parent` whose command line (process title) is `title`. */
export function childPids(parent: number, title: string): number[] {
  const ps = execFileSync('ps', ['-o', 'pid=,ppid=,args=', '-e']).toString();
  return ps.split('\n').map((l) => l.trim().match(/^(\d+)\s+(\d+)\s+(.*)$/)).filter((m): m is RegExpMatchArray => !!m)
    .filter((m) => Number(m[2]) === parent && m[3].trim() === title).map((m) => Number(m[1]));
}

export interface Reply {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

export async function request(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, body, text };
}

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> =>
  request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });

/**
 * POSTs a JSON body on a connection of its own (as independent senders do);
 * resolves with the status, the catalogue code and Retry-After, or status 0
 * and the network error as `code`.
 */
export function postAlone(port: number, path: string, body: Buffer): Promise<{ status: number; code?: string; retry?: string }> {
  return new Promise((resolve) => {
    const headers = { 'content-type': 'application/json', 'content-length': body.length };
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const code = /"code":"(\w+)"/.exec(Buffer.concat(chunks).toString())?.[1];
        resolve({ status: res.statusCode ?? 0, code, retry: res.headers['retry-after'] });
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, code: err.code ?? err.message }));
    req.end(body);
  });
}

/** The value of one sample of logd's /metrics (`name{labels}`, labels as logd writes them), or undefined. */
export async function metric(logd: Logd, series: string): Promise<number | undefined> {
  const text = (await request(`${logd.url}/metrics`)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Rows of `logs` (waits until `count` are there when given). */
export async function waitRows(pg: PostgresServer, count: number, where = 'TRUE', params: unknown[] = []): Promise<any[]> {
  return waitFor(`${count} rows in logs where ${where}`, async () => {
    const rows = await pg.query(`SELECT * FROM logs WHERE ${where} ORDER BY id`, params);
    return rows.length >= count ? rows : undefined;
  }, 20_000);
}

/** Private Redis and PostgreSQL and a logd on them, all stopped when `t` ends. */
export async function startStack(t: Test, opts: Omit<LogdOptions, 'redis' | 'pg'> = {}): Promise<{ redis: RedisServer; pg: PostgresServer; logd: Logd }> {
  const redis = await startRedis();
  const pg = await startPostgres();
  const logd = await startLogd({ ...opts, redis, pg });
  t.teardown(async () => {
    await logd.stop();
    await cleanupAll();
  });
  return { redis, pg, logd };
}
