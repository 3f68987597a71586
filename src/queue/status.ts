/**
 * Persister heartbeats, kept in Redis so that every HTTP worker (of any
 * instance) can tell in /health whether the stream is being persisted.
 * Hash `<stream>:persisters`: consumer name -> JSON PersisterStatus.
 */
import type { RedisClient } from '../connections';

export interface PersisterStatus {
  /** epoch ms of the heartbeat */
  at: number;
  batches: number;
  rows: number;
  dead: number;
  /** the step that is failing and being retried, if any */
  lastError?: string;
  /** set while the disk budget (retention.max_bytes) drops logs still inside their retention */
  budgetDropping?: string;
}

/** How often a persister publishes, and after how long without a heartbeat it counts as gone. */
export const HEARTBEAT_MS = 1000;
export const HEARTBEAT_STALE_MS = 5000;

const key = (stream: string): string => `${stream}:persisters`;

export async function publishStatus(redis: RedisClient, stream: string, consumer: string, status: PersisterStatus): Promise<void> {
  await redis.hset(key(stream), consumer, JSON.stringify(status));
}

/** Live persisters (heartbeat younger than HEARTBEAT_STALE_MS); forgets stale ones. */
export async function liveStatuses(redis: RedisClient, stream: string, now = Date.now()): Promise<Map<string, PersisterStatus>> {
  const all = await redis.hgetall(key(stream));
  const live = new Map<string, PersisterStatus>();
  const stale: string[] = [];
  for (const [consumer, json] of Object.entries(all)) {
    const s = JSON.parse(json) as PersisterStatus;
    if (now - s.at <= HEARTBEAT_STALE_MS) live.set(consumer, s);
    else if (now - s.at > 10 * HEARTBEAT_STALE_MS) stale.push(consumer);
  }
  if (stale.length) await redis.hdel(key(stream), ...stale);
  return live;
}
