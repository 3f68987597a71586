/**
 * Cache-aside in Redis for device queries and statistics, fresh by version
 * (versions.ts), one rebuild per key at a time, and never a reason for a
 * read to fail: any cache error or slowness (cache.timeout_ms) sends the
 * read to PostgreSQL.
 *
 *   read:  MGET version, value --tag matches--> answer from the cache
 *            | miss
 *            v
 *          same key already rebuilding in this process? --> share its answer
 *            | no
 *            v
 *          SET lock NX PX --taken--> wait up to WAIT_MS for the other rebuild's value, else PostgreSQL
 *            | ours
 *            v
 *          PostgreSQL --> answer; then SET value "<tag>\n<answer>" EX ttl, DEL lock (not awaited)
 */
import type { Config } from '../config';
import { connectRedis, redisClient, type RedisClient } from '../connections';
import type { Logger } from '../log';
import { cacheLookups } from '../metrics';
import { cacheKeys } from './versions';

export type Source = 'cache' | 'database';

/**
 * Which cache, for logd_cache_lookups_total{cache, result}. Results: hit;
 * miss (this lookup rebuilt the value from PostgreSQL); shared (it joined a
 * rebuild of the same key in this process); waited (it got another
 * process' rebuild from the cache); late (another process' rebuild did not
 * come in time, or the version moved meanwhile: it asked PostgreSQL
 * itself); error (the cache failed, PostgreSQL answered).
 */
export type CacheName = 'logs' | 'stats';

export interface Answer {
  /** the answer as JSON text, an object */
  payload: string;
  source: Source;
}

/** A rebuild lock outlives any sane rebuild; if its holder dies, the next miss after it rebuilds. */
const LOCK_MS = 2000;
/** How long a miss waits for another process' rebuild before asking PostgreSQL itself. */
const WAIT_MS = 100;
const POLL_MS = 5;
/** How often the share of Redis memory in use is looked at (INFO memory). */
const MEMORY_CHECK_MS = 1000;
/** Answers larger than this are not cached: cheaper to rebuild than to hold in the stream's memory. */
const MAX_VALUE_CHARS = 1 << 20;
/** At most one warning per this interval while the cache fails (a Redis outage must not flood the log). */
const WARN_EVERY_MS = 10_000;

/** The answer a cached value holds for this tag, or undefined (absent, stale, or not a value logd wrote). */
function unwrap(value: string | null, tag: string): string | undefined {
  if (value === null || value.length < tag.length + 3 || !value.startsWith(tag) || value.charCodeAt(tag.length) !== 10) return undefined;
  const payload = value.slice(tag.length + 1);
  return payload.startsWith('{') && payload.endsWith('}') ? payload : undefined;
}

export class Cache {
  private readonly redis: RedisClient | undefined;
  /** rebuilds in flight in this process, by key and tag */
  private readonly flights = new Map<string, Promise<Answer>>();
  private writable = true;
  private memoryCheckedAt = 0;
  private warnedAt = 0;

  constructor(private readonly cfg: Config, private readonly log: Logger) {
    if (!cfg.cache.enabled) return;
    // Its own connection: cache commands must not queue behind XADDs, and
    // they give up sooner than ingest does.
    this.redis = redisClient(cfg, 'logd:cache', { commandTimeout: cfg.cache.timeout_ms });
    this.redis.on('error', (err) => this.failed(err));
  }

  /** Connects in the background: the worker serves (from PostgreSQL) until the cache is reachable. */
  start(): void {
    if (this.redis) connectRedis(this.redis).catch((err) => this.failed(err));
  }

  stop(): void {
    this.redis?.disconnect();
  }

  /** The cached answer under `key` if it is current, else `build()`'s (cached for ttlS seconds). */
  async through(name: CacheName, key: string, versionKey: string, ttlS: number, build: () => Promise<string>): Promise<Answer> {
    const redis = this.redis;
    if (!redis) return { payload: await build(), source: 'database' };
    let tag: string;
    try {
      const [version, value] = await redis.mget(versionKey, key);
      tag = version ?? '';
      const hit = unwrap(value, tag);
      if (hit !== undefined) {
        cacheLookups.inc({ cache: name, result: 'hit' });
        return { payload: hit, source: 'cache' };
      }
    } catch (err) {
      this.failed(err);
      cacheLookups.inc({ cache: name, result: 'error' });
      return { payload: await build(), source: 'database' };
    }
    const flight = `${tag}\n${key}`;
    let answer = this.flights.get(flight);
    if (answer) {
      cacheLookups.inc({ cache: name, result: 'shared' });
    } else {
      answer = this.rebuild(name, redis, key, versionKey, tag, ttlS, build).finally(() => this.flights.delete(flight));
      this.flights.set(flight, answer);
    }
    return answer;
  }

  private async rebuild(name: CacheName, redis: RedisClient, key: string, versionKey: string, tag: string, ttlS: number, build: () => Promise<string>): Promise<Answer> {
    const lock = cacheKeys.lock(key);
    let mine: boolean;
    try {
      mine = (await redis.set(lock, tag, 'PX', LOCK_MS, 'NX')) === 'OK';
    } catch (err) {
      this.failed(err);
      cacheLookups.inc({ cache: name, result: 'error' });
      return { payload: await build(), source: 'database' };
    }
    if (!mine) {
      const theirs = await this.awaitRebuild(redis, key, versionKey, tag);
      cacheLookups.inc({ cache: name, result: theirs === undefined ? 'late' : 'waited' });
      return theirs === undefined ? { payload: await build(), source: 'database' } : { payload: theirs, source: 'cache' };
    }
    cacheLookups.inc({ cache: name, result: 'miss' });
    let payload: string;
    try {
      payload = await build();
    } catch (err) {
      redis.del(lock).catch((e) => this.failed(e));
      throw err;
    }
    this.store(redis, key, lock, tag, ttlS, payload);
    return { payload, source: 'database' };
  }

  /** Polls for the value another process is rebuilding; undefined when it is late or the version moved on. */
  private async awaitRebuild(redis: RedisClient, key: string, versionKey: string, tag: string): Promise<string | undefined> {
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      try {
        const [version, value] = await redis.mget(versionKey, key);
        if ((version ?? '') !== tag) return undefined;
        const hit = unwrap(value, tag);
        if (hit !== undefined) return hit;
      } catch (err) {
        this.failed(err);
        return undefined;
      }
    }
    return undefined;
  }

  /**
   * Caches the answer under the tag read before PostgreSQL was asked: if a
   * batch was committed meanwhile, its bump changed the version and this
   * value is stale from the start, as it must be. Not awaited.
   */
  private store(redis: RedisClient, key: string, lock: string, tag: string, ttlS: number, payload: string): void {
    this.checkMemory(redis);
    const tx = redis.pipeline();
    if (this.writable && payload.length <= MAX_VALUE_CHARS) tx.set(key, `${tag}\n${payload}`, 'EX', ttlS);
    tx.del(lock);
    tx.exec().then((results) => {
      const failed = results?.find(([err]) => err);
      if (failed) this.failed(failed[0]);
    }, (err) => this.failed(err));
  }

  /**
   * Redis runs with noeviction: cache values and the stream share maxmemory,
   * and a full Redis refuses ingest. Cache writes stop while Redis uses more
   * than cache.max_memory_pct of maxmemory (TTLs free it again).
   */
  private checkMemory(redis: RedisClient): void {
    if (Date.now() - this.memoryCheckedAt < MEMORY_CHECK_MS) return;
    this.memoryCheckedAt = Date.now();
    redis.info('memory').then((info) => {
      const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
      const max = Number(/^maxmemory:(\d+)/m.exec(info)?.[1]);
      const writable = !(max > 0) || used < (max * this.cfg.cache.max_memory_pct) / 100;
      if (writable !== this.writable) this.log.warn({ used, max, pct: this.cfg.cache.max_memory_pct }, writable ? 'cache writes resumed' : 'Redis memory is filling up: cache writes paused');
      this.writable = writable;
    }, (err) => this.failed(err));
  }

  private failed(err: unknown): void {
    if (Date.now() - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = Date.now();
    this.log.warn({ err: (err as Error)?.message ?? String(err) }, 'cache unavailable; reads go to PostgreSQL');
  }
}
