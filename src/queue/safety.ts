/**
 * Checks a Redis server's settings against what logd's promise needs:
 * the stream must never be evicted, and acknowledged logs should
 * survive a Redis crash.
 */
import type Redis from 'ioredis';

/** Policies that may evict keys without a TTL, such as the stream. */
const EVICTS_STREAM = new Set(['allkeys-lru', 'allkeys-lfu', 'allkeys-random']);

/** Returns warnings (plain sentences); empty when the server is safe. */
export async function redisWarnings(redis: Redis): Promise<string[]> {
  let policy: string, aof: string, fsync: string;
  try {
    const get = async (k: string): Promise<string> => ((await redis.config('GET', k)) as string[])[1] ?? '';
    [policy, aof, fsync] = await Promise.all([get('maxmemory-policy'), get('appendonly'), get('appendfsync')]);
  } catch (err) {
    return [`cannot read the Redis configuration (${(err as Error).message}): make sure maxmemory-policy is noeviction or volatile-* and appendonly is yes`];
  }
  const out: string[] = [];
  if (EVICTS_STREAM.has(policy)) {
    out.push(`Redis maxmemory-policy is ${policy}: under memory pressure Redis may evict the stream and lose accepted logs; use noeviction (conf/redis.conf)`);
  }
  if (aof !== 'yes') out.push('Redis appendonly is off: a Redis crash loses every accepted log not yet persisted; set appendonly yes (conf/redis.conf)');
  else if (fsync === 'no') out.push('Redis appendfsync is no: a machine crash may lose up to ~30 s of accepted logs; use everysec or always');
  return out;
}
