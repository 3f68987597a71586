/**
 * The Redis keys of the queue. One Redis server with one shard keeps the
 * names logd always had (`logs:stream`, `logs:stream:backlog`, `logs:dead`).
 * Sharded (queue.shards > 1, or on a Redis Cluster, where keys a script
 * touches must share a slot) every shard's keys carry the shard's number as
 * their hash tag, so a shard's stream, backlog counter, journal marks and
 * dead-letter stream live on one slot (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags):
 *
 *   logs:stream:{0}  logs:stream:{0}:backlog  logs:stream:{0}:marks  logs:dead:{0}
 *   logs:stream:{1}  ...
 */
import type { Config } from '../config';

export interface ShardKeys {
  stream: string;
  /** logs appended and not yet acknowledged */
  backlog: string;
  /** highest sequence number stored per numbered source (append-once.lua) */
  marks: string;
  dead: string;
}

/** Whether the queue's keys are per shard, with hash tags. */
export const sharded = (cfg: Config): boolean => cfg.queue.shards > 1 || cfg.redis.cluster.length > 0;

export function shardKeys(cfg: Config, shard: number): ShardKeys {
  const { stream } = cfg.redis;
  if (!sharded(cfg)) return { stream, backlog: `${stream}:backlog`, marks: `${stream}:marks`, dead: cfg.queue.dead_stream };
  const s = `${stream}:{${shard}}`;
  return { stream: s, backlog: `${s}:backlog`, marks: `${s}:marks`, dead: `${cfg.queue.dead_stream}:{${shard}}` };
}

/** The shard of a device (or of a journal source): FNV-1a of its UTF-16 code units, so one device's requests keep to one stream. */
export function shardOf(key: string, shards: number): number {
  if (shards === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % shards;
}
