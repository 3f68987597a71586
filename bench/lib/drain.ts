/**
 * The persister alone: with logd stopped, the stream is preloaded with
 * logd-shaped frames (as append.lua writes them: v, n, r, s and the backlog
 * counter); then logd starts and the persister loads them with nothing else
 * running. Rows / (first batch's transaction start -> backlog 0) compares
 * directly with the raw COPY ceiling.
 */
import type Redis from 'ioredis';
import { accountPreloaded, type PreloadAccounting } from './account';
import type { Pg } from './stack';
import { sleep } from './stack';
import { frames, summary } from './gen';

export interface DrainResult extends PreloadAccounting {
  frames: number;
  seconds: number;
  rowsPerS: number;
}

export async function preload(redis: Redis, root: string, run: string, logs: number, per = 100, stream = 'logs:stream'): Promise<number> {
  const count = Math.ceil(logs / per);
  const all = frames(root, run, count, per);
  const s = summary(run, 0, per);
  for (let i = 0; i < all.length; i += 200) {
    const p = redis.pipeline();
    for (const rows of all.slice(i, i + 200)) p.xadd(stream, '*', 'v', '1', 'n', String(per), 'r', rows, 's', s);
    p.incrby(`${stream}:backlog`, per * Math.min(200, all.length - i));
    const res = await p.exec();
    const err = res?.find(([e]) => e);
    if (err) throw err[0];
  }
  return count;
}

/**
 * Waits until logd's persister has emptied the backlog; rows/s from the first
 * batch's transaction start, and every preloaded log accounted for.
 */
export async function timeDrain(redis: Redis, pgs: Pg, run: string, frameCount: number, per = 100, timeoutMs = 600_000): Promise<DrainResult> {
  const deadline = Date.now() + timeoutMs;
  let drainedMs: number;
  for (;;) {
    const b = Number((await redis.get('logs:stream:backlog')) ?? 0);
    drainedMs = Date.now();
    if (b <= 0) break;
    if (Date.now() > deadline) throw new Error(`persister drain: backlog still ${b}`);
    await sleep(10);
  }
  await sleep(100);
  const { rows } = await pgs.pool.query<{ first: string }>(
    `SELECT (extract(epoch FROM min(indexed_at)) * 1000)::text AS first FROM logs WHERE message LIKE $1`, [`${run}:%`]);
  const acc = await accountPreloaded(pgs.pool, run, frameCount, per);
  if (process.env.BENCH_DEBUG) {
    const b = await pgs.pool.query(`SELECT (extract(epoch FROM indexed_at) * 1000)::bigint AS t, count(*)::int AS n FROM logs WHERE message LIKE $1 GROUP BY 1 ORDER BY 1`, [`${run}:%`]);
    process.stderr.write(`drain batches: ${JSON.stringify(b.rows)} drainedMs=${drainedMs}\n`);
  }
  const seconds = (drainedMs - Number(rows[0].first)) / 1000;
  return { ...acc, frames: frameCount, seconds, rowsPerS: acc.rows / seconds };
}
