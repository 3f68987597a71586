/**
 * Checks a Redis server's settings against what logd's promise needs:
 * the stream must never be evicted, and acknowledged logs should
 * survive a Redis crash.
 */
import { Cluster, type default as Redis } from 'ioredis';
import type { RedisClient } from '../connections';

/** Policies that may evict keys without a TTL, such as the stream. */
const EVICTS_STREAM = new Set(['allkeys-lru', 'allkeys-lfu', 'allkeys-random']);

/** Returns warnings (plain sentences); empty when the server (on a cluster: every master) is safe. */
export async function redisWarnings(redis: RedisClient): Promise<string[]> {
  const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
  return [...new Set((await Promise.all(servers.map(serverWarnings))).flat())];
}

async function serverWarnings(redis: Redis): Promise<string[]> {
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

/**
 * Masters that have fewer than `want` online replicas (INFO replication),
 * as sentences: with queue.replica_acks, ingest to their shards answers 503.
 * On a cluster every master is asked; a master that does not answer is named too.
 */
export async function replicaShortfalls(redis: RedisClient, want: number): Promise<string[]> {
  const masters = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const out = await Promise.all(masters.map(async (m) => {
    const name = `${m.options.host ?? m.options.path}:${m.options.port}`;
    try {
      const online = (await m.info('replication')).match(/^slave\d+:.*state=online/gm)?.length ?? 0;
      return online >= want ? [] : [`Redis master ${name} has ${online} online replicas, queue.replica_acks needs ${want}: ingest to its shards answers 503`];
    } catch (err) {
      return [`Redis master ${name} does not answer (${(err as Error).message}): ingest to its shards answers 503`];
    }
  }));
  return out.flat();
}
