/**
 * What the machine can do without logd, measured in the same run on the same
 * servers: raw COPY of logd's rows into a table with logd's index set, and
 * raw XADD (plus logd's append.lua) of logd's frames.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Redis from 'ioredis';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { frames, summary } from './gen';
import { Sampler } from './proc';
import { runOwned } from './stack';

export interface CopyCeiling {
  /** when it was measured (which run it precedes) */
  at: string;
  rows: number;
  batchRows: number;
  seconds: number;
  rowsPerS: number;
  /** CPU of all PostgreSQL processes over the COPYs (/proc, sampled every 250 ms), µs per row */
  postgresCpuUsPerRow: number;
  indexes: string[];
}

const COPY_COLUMNS = 'device_id, log_level, message, log_data, created_at';

/**
 * COPY of `total` rows (100-log frames, logd's encoding) into a scratch copy
 * of `logs` (LIKE logs INCLUDING ALL: same columns, defaults, indexes), one
 * COPY statement per `batchRows` rows like the persister's batches, each in
 * its own transaction, streamed frame by frame as the persister does. The CPU
 * of the processes under the postmaster `pgPid` is counted over the COPYs.
 */
export async function copyCeiling(pool: pg.Pool, pgPid: number, root: string, total: number, batchRows: number, at: string): Promise<CopyCeiling> {
  const perFrame = 100;
  const all = frames(root, 'ceiling', Math.ceil(total / perFrame), perFrame);
  const client = await pool.connect();
  try {
    await client.query('DROP TABLE IF EXISTS bench_copy_ceiling');
    await client.query('CREATE TABLE bench_copy_ceiling (LIKE logs INCLUDING ALL)');
    await client.query('CHECKPOINT');
    const indexes = (await client.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE tablename = 'bench_copy_ceiling' ORDER BY indexname`)).rows
      .map((r) => r.indexdef.replace(/^CREATE (UNIQUE )?INDEX \S+ ON public\.bench_copy_ceiling /, '$1'));
    const framesPerBatch = Math.max(1, Math.floor(batchRows / perFrame));
    const cpu = new Sampler(() => [pgPid], 250).start();
    const t0 = performance.now();
    for (let i = 0; i < all.length; i += framesPerBatch) {
      await pipeline(Readable.from(all.slice(i, i + framesPerBatch)), client.query(copyFrom(`COPY bench_copy_ceiling (${COPY_COLUMNS}) FROM STDIN`)));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpuS = [...cpu.stop().roles.values()].reduce((a, r) => a + r.cpuS, 0);
    const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM bench_copy_ceiling');
    const n = Number(rows[0].n);
    await client.query('DROP TABLE bench_copy_ceiling');
    return { at, rows: n, batchRows: framesPerBatch * perFrame, seconds, rowsPerS: n / seconds, postgresCpuUsPerRow: (cpuS * 1e6) / n, indexes };
  } finally {
    client.release();
  }
}

export interface XaddCeiling {
  per: number;
  frameBytes: number;
  /** raw XADD (MAXLEN ~ trimmed so memory stays bounded) */
  xaddFramesPerS: number;
  /** logd's append.lua via EVALSHA (backlog check + XADD + INCRBY); both medians of 3, alternated */
  appendFramesPerS: number;
}

/** Parses redis-benchmark --csv output: the rps of its one test (the test name may span lines). */
function csvRps(out: string): number {
  const m = /","([\d.]+)"(?:,"[\d.]+"){6}\s*$/.exec(out);
  const rps = Number(m?.[1]);
  if (!Number.isFinite(rps) || rps <= 0) throw new Error(`cannot read redis-benchmark output: ${out.slice(-500)}`);
  return rps;
}

/**
 * redis-benchmark (C, 8 connections, pipeline 16) sending logd-shaped frames of
 * `per` logs: raw XADD, then logd's own append.lua.
 */
export async function xaddCeiling(redis: Redis, port: number, root: string, per: number, seconds: number): Promise<XaddCeiling> {
  const [rows] = frames(root, 'xadd', 1, per);
  const s = summary('xadd', 0, per);
  const frameBytes = Buffer.byteLength(rows) + Buffer.byteLength(s);
  // requests for about `seconds` at a guessed rate; memory stays bounded (see below)
  const guess = per >= 100 ? 8_000 : per >= 5 ? 80_000 : 150_000;
  const n = Math.max(2_000, Math.round(guess * seconds));
  const base = ['-h', '127.0.0.1', '-p', String(port), '-c', '8', '-P', '16'];
  const lua = fs.readFileSync(path.join(root, 'src', 'queue', 'lua', 'append.lua'), 'utf8');
  const sha = (await redis.script('LOAD', lua)) as string;
  // append.lua never trims (logd trims after persisting): bound the stream by the request count.
  const maxBytes = 200 * 1024 * 1024;
  const nLua = Math.max(1_000, Math.min(n, Math.floor(maxBytes / frameBytes)));
  const raw: number[] = [];
  const viaLua: number[] = [];
  // alternated three times, medians: the machine's other load drifts
  for (let i = 0; i < 3; i++) {
    const xadd = await runOwned('redis-benchmark', [...base, '-n', String(Math.round(n / 3)), '--csv', 'XADD', 'bench:xadd', 'MAXLEN', '~', '1000', '*', 'v', '1', 'n', String(per), 'r', rows, 's', s]);
    if (xadd.code !== 0) throw new Error(`redis-benchmark failed: ${xadd.stderr}`);
    raw.push(csvRps(xadd.stdout));
    await redis.del('bench:xadd');
    const append = await runOwned('redis-benchmark', [...base, '-n', String(Math.round(nLua / 3)), '--csv',
      'EVALSHA', sha, '2', 'bench:append', 'bench:append:backlog', '1000000000000', String(per), rows, s]);
    if (append.code !== 0) throw new Error(`redis-benchmark failed: ${append.stderr}`);
    const len = await redis.xlen('bench:append');
    if (len < Math.round(nLua / 3)) throw new Error(`append.lua appended ${len} of ${Math.round(nLua / 3)} frames: ${append.stdout.slice(0, 300)}`);
    viaLua.push(csvRps(append.stdout));
    await redis.del('bench:append', 'bench:append:backlog');
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[1];
  return { per, frameBytes, xaddFramesPerS: med(raw), appendFramesPerS: med(viaLua) };
}
