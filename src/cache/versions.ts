/**
 * Cache keys, and the versions that keep cached answers fresh. Every cached
 * value is tagged with the version its key had when the value was read from
 * PostgreSQL; after each COMMIT the persister sets the versions of the
 * batch's devices (and of the statistics) to a new token, so a value cached
 * before the commit no longer matches and misses. A new log is visible in
 * the first read after its batch is committed.
 *
 *   persister:  COPY + rollups; COMMIT --bump.lua--> cache:ver:logs:{c<n>}:<device> = token
 *                                                     cache:ver:{stats}              = token
 *   HTTP worker: MGET cache:ver:logs:{c<n>}:<device> cache:logs:{c<n>}:<device>:<limit>
 *                -> "<tag>\n<answer>": served only while <tag> is the current version
 *
 * Tokens are never reused (a random per-process nonce and a counter): with
 * a counter that restarted after its key expired, an old value could match
 * again. Every key here has a TTL; Redis' stream is the only key without.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, type Result } from 'ioredis';
import type { Config } from '../config';
import type { RedisClient } from '../connections';
import { shardOf } from '../queue/keys';
import { rootPath } from '../paths';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    logdBump(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>;
  }
}

/**
 * Devices' cache keys are spread over this many hash tags: after a batch,
 * the versions of its devices are set with one script per tag on a Redis
 * Cluster (a script may touch one slot), not one command per device.
 */
const DEVICE_TAGS = 64;

/** The hash tag of a device's cache keys. */
const deviceTag = (device: string): string => `{c${shardOf(device, DEVICE_TAGS)}}`;

/**
 * A value and its version are read together (MGET), so on a Redis Cluster
 * they must share a slot: both carry the same hash tag, the device's
 * (deviceTag) or `{stats}`.
 */
export const cacheKeys = {
  deviceLogs: (device: string, limit: number): string => `cache:logs:${deviceTag(device)}:${device}:${limit}`,
  deviceVersion: (device: string): string => `cache:ver:logs:${deviceTag(device)}:${device}`,
  stats: (since: string | undefined): string => (since === undefined ? 'cache:{stats}' : `cache:{stats}:since:${since}`),
  statsVersion: 'cache:ver:{stats}',
  /** held by the one process rebuilding `key` (single flight) */
  lock: (key: string): string => `cache:lock:${key}`,
};

/** A version key must outlive every value tagged while it was absent (the tag ""): twice the values' TTL. */
export const versionTtl = (ttlS: number): number => 2 * ttlS;

/**
 * Some versions were set and others were not: on a cluster, the masters of
 * the others did not answer (their cached answers cannot be read either
 * while they are down).
 */
export class PartialBump extends Error {}

/** The persister's side: new versions after each committed batch. */
export class Versions {
  private readonly nonce = randomBytes(6).toString('base64url');
  private seq = 0;

  constructor(private readonly redis: RedisClient, private readonly cfg: Config) {
    redis.defineCommand('logdBump', { lua: readFileSync(rootPath('src', 'cache', 'lua', 'bump.lua'), 'utf8') });
  }

  /**
   * Invalidates the statistics and these devices' cached queries. Done even
   * with cache.enabled = false here: another instance sharing this Redis may
   * have it on.
   */
  async bump(devices: Iterable<string>): Promise<void> {
    const { stats_ttl_s: statsTtl, device_ttl_s: deviceTtl } = this.cfg.cache;
    const stats = versionTtl(statsTtl);
    const device = versionTtl(deviceTtl);
    const token = `${this.nonce}.${++this.seq}`;
    if (!(this.redis instanceof Cluster)) {
      const keys = [cacheKeys.statsVersion];
      for (const d of devices) keys.push(cacheKeys.deviceVersion(d));
      await this.redis.logdBump(keys.length, ...keys, token, stats, device);
      return;
    }
    // on a cluster: one script per slot, the statistics' and each device tag's
    const byTag = new Map<string, string[]>();
    for (const d of devices) {
      const tag = deviceTag(d);
      const list = byTag.get(tag);
      if (list) list.push(cacheKeys.deviceVersion(d));
      else byTag.set(tag, [cacheKeys.deviceVersion(d)]);
    }
    const cluster = this.redis;
    const got = await Promise.allSettled([
      cluster.logdBump(1, cacheKeys.statsVersion, token, stats, device),
      ...[...byTag.values()].map((keys) => cluster.logdBump(keys.length, ...keys, token, device, device)),
    ]);
    const failed = got.filter((g): g is PromiseRejectedResult => g.status === 'rejected');
    if (failed.length === got.length) throw failed[0].reason;
    if (failed.length) throw new PartialBump(`${failed.length} of ${got.length} slots' cache versions not set: ${(failed[0].reason as Error).message}`);
  }
}
