/**
 * Runs wrk (Debian's, 4.1 with LuaJIT) with bench/lib/ingest.lua and reads
 * the JSON its done() writes. Installs wrk with apt-get when it is missing.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { runOwned } from './stack';

/** CLOCK_MONOTONIC in µs (process.hrtime), the clock of V8's CPU profile timestamps. */
export const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

export interface WrkThread {
  tid: number;
  sent: number;
  ok: number;
  unknown_bad: number;
  bad: number[];
  pending: number[];
  statuses: Record<string, number>;
}

export interface WrkResult {
  duration_us: number;
  requests: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  /** wrk's own latency (from the write of each request), µs */
  latency_us: { p50: number; p90: number; p95: number; p99: number; max: number; mean: number };
  threads: WrkThread[];
  /** rate mode: latency from the scheduled slot, bucket index -> count (see ingest.lua) */
  hist: Record<string, number>;
  /** wall-clock ms when wrk was started / exited */
  startedMs: number;
  exitedMs: number;
  /** the same on the monotonic clock (µs; V8's CPU profiles use it too) */
  startedMonoUs: number;
  exitedMonoUs: number;
  pid: number;
}

export function ensureWrk(): string {
  const has = (): boolean => {
    try {
      execFileSync('wrk', ['--version'], { stdio: 'ignore' });
      return true;
    } catch (err) {
      // wrk --version exits 1 after printing its version
      return (err as { status?: number }).status === 1;
    }
  };
  if (!has()) {
    process.stderr.write('bench: wrk not found; installing Debian\'s wrk (apt-get install -y wrk)\n');
    execFileSync('apt-get', ['install', '-y', 'wrk'], { stdio: 'inherit' });
    if (!has()) throw new Error('wrk is still missing after apt-get install -y wrk');
  }
  const out = (() => {
    try {
      return execFileSync('wrk', ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    } catch (err) {
      return String((err as { stdout?: Buffer }).stdout ?? '');
    }
  })();
  return out.split('\n')[0].trim();
}

export interface WrkOptions {
  url: string;
  path: '/api/log' | '/api/logs/batch';
  per: number;
  run: string;
  connections: number;
  threads: number;
  seconds: number;
  /** requests/s over all threads (open loop); 0 or absent = closed loop */
  rate?: number;
  warmupMs?: number;
  script: string;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'logd-bench-wrk-'));
  const out = path.join(dir, 'out.json');
  try {
    const startedMs = Date.now();
    const startedMonoUs = monoUs();
    const r = await runOwned('wrk', ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.seconds}s`, '--timeout', '30s', '-s', o.script, `${o.url}${o.path}`], {
      ...process.env,
      BENCH_PATH: o.path,
      BENCH_PER: String(o.per),
      BENCH_RUN: o.run,
      BENCH_RATE: String(o.rate ?? 0),
      BENCH_THREADS: String(o.threads),
      BENCH_WARMUP_MS: String(o.warmupMs ?? 1000),
      BENCH_OUT: out,
    });
    const exitedMs = Date.now();
    const exitedMonoUs = monoUs();
    if (r.code !== 0 || !fs.existsSync(out)) throw new Error(`wrk failed (exit ${r.code}): ${r.stderr}\n${r.stdout}`);
    return { ...(JSON.parse(await fsp.readFile(out, 'utf8')) as WrkResult), startedMs, exitedMs, startedMonoUs, exitedMonoUs, pid: r.pid };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** Percentile (0..100) of the rate-mode histogram, in ms. */
export function histPercentile(hist: Record<string, number>, p: number): number {
  const entries = Object.entries(hist).map(([k, v]) => [Number(k), v] as const).sort((a, b) => a[0] - b[0]);
  const total = entries.reduce((s, [, v]) => s + v, 0);
  if (!total) return NaN;
  const want = Math.ceil((p / 100) * total);
  let seen = 0;
  for (const [idx, v] of entries) {
    seen += v;
    if (seen >= want) {
      // upper edge of the bucket
      const us = idx < 1000 ? (idx + 1) * 50 : 50_000 + (idx - 1000 + 1) * 1000;
      return us / 1000;
    }
  }
  return NaN;
}

export const histCount = (hist: Record<string, number>): number => Object.values(hist).reduce((a, b) => a + b, 0);
