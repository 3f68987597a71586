/**
 * What bench/scale.ts adds to the bench library: the queue's streams and
 * backlog counters on one Redis or a Redis Cluster (one client type for
 * both), preloading logd-shaped frames spread over the shards' streams, the
 * summed backlog, the CPU of a fixed set of pids read straight from /proc,
 * conf/redis.conf's settings applied to running servers (CONFIG SET), and
 * the filesystem a directory is on.
 */
import * as fs from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { frames, summary } from './gen';
import { CLK_TCK } from './proc';
import { sleep } from './stack';

/** A Redis client of either kind; the bench only sends commands whose keys share a slot per pipeline. */
export type AnyRedis = Redis | Cluster;

/** The queue's streams as logd names them (src/queue/keys.ts): one unsharded stream, or `logs:stream:{i}` per shard. */
export function queueStreams(shards: number, tagged: boolean, stream = 'logs:stream'): string[] {
  if (!tagged) return [stream];
  return Array.from({ length: shards }, (_, i) => `${stream}:{${i}}`);
}

/**
 * Preloads `logs` logs as frames of `per` (gen.ts frames(): thread 1, seqs
 * 0..n-1, the rows logd's encoder makes, the summary append.lua stores),
 * frame i into stream i mod streams.length, each stream's backlog counter
 * raised by what it got, as append.lua does. One pipeline per stream and
 * chunk, so on a cluster every pipeline stays on one slot (the stream and
 * its counter share the shard's hash tag). Returns the frame count.
 */
export async function preloadStreams(redis: AnyRedis, root: string, run: string, logs: number, per: number, streams: string[]): Promise<number> {
  const count = Math.ceil(logs / per);
  const all = frames(root, run, count, per);
  const s = summary(run, 0, per);
  const CHUNK = 200;
  for (let base = 0; base < all.length; base += CHUNK * streams.length) {
    await Promise.all(streams.map(async (stream, k) => {
      const p = redis.pipeline();
      let n = 0;
      for (let i = base + k; i < Math.min(all.length, base + CHUNK * streams.length); i += streams.length) {
        p.xadd(stream, '*', 'v', '1', 'n', String(per), 'r', all[i], 's', s);
        n++;
      }
      if (!n) return;
      p.incrby(`${stream}:backlog`, per * n);
      const res = await p.exec();
      const err = res?.find(([e]) => e);
      if (err) throw err[0];
    }));
  }
  return count;
}

/** Logs accepted and not yet acknowledged, over every stream. */
export async function backlogSum(redis: AnyRedis, streams: string[]): Promise<number> {
  const got = await Promise.all(streams.map((s) => redis.get(`${s}:backlog`)));
  return got.reduce((a, v) => a + Number(v ?? 0), 0);
}

/** Polls the summed backlog every `everyMs` until it is 0; resolves with the time (epoch ms) it was first seen at 0. */
export async function waitBacklogZero(redis: AnyRedis, streams: string[], timeoutMs: number, everyMs = 10): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await backlogSum(redis, streams);
    const at = Date.now();
    if (b <= 0) return at;
    if (at > deadline) throw new Error(`backlog still ${b} after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** utime + stime of these pids, in seconds (a pid gone counts 0). */
export function pidCpuS(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
      ticks += Number(rest[11]) + Number(rest[12]);
    } catch {
      // exited
    }
  }
  return ticks / CLK_TCK;
}

/** The Redis settings of conf/redis.conf (as redisConfArgs gives them) applied with CONFIG SET; returns the keys a running server refused. */
export async function applyConf(redis: Redis, args: string[], overrides: Record<string, string> = {}): Promise<string[]> {
  const settings = new Map<string, string>();
  let key: string | undefined;
  for (const a of args) {
    if (a.startsWith('--')) {
      key = a.slice(2).toLowerCase();
      settings.set(key, '');
    } else if (key !== undefined) settings.set(key, settings.get(key) ? `${settings.get(key)} ${a}` : a);
  }
  for (const [k, v] of Object.entries(overrides)) settings.set(k, v);
  const refused: string[] = [];
  for (const [k, v] of settings) {
    try {
      await redis.config('SET', k, v);
    } catch {
      refused.push(k);
    }
  }
  return refused;
}

/** statfs(2) f_type values, from linux/magic.h. */
const FS_TYPES = new Map<number, string>([
  [0x01021994, 'tmpfs'], [0xef53, 'ext2/3/4'], [0x58465342, 'xfs'], [0x9123683e, 'btrfs'], [0x794c7630, 'overlayfs'], [0x6969, 'nfs'],
]);

/** The filesystem `dir` is on. */
export function fsTypeOf(dir: string): string {
  const t = fs.statfsSync(dir).type;
  return FS_TYPES.get(t) ?? `a filesystem of type 0x${t.toString(16)}`;
}
