/**
 * GET /health: 200 "healthy" when Redis and PostgreSQL answer and the stream
 * is being persisted; otherwise 503 with the reasons, as "degraded" (ingest
 * still accepts: PostgreSQL down, no live or a failing persister, backlog
 * over its limit, the disk budget dropping logs inside their retention) or "unhealthy" (Redis down: ingest refuses). Authentication
 * switched off is a reason too, whatever the status.
 */
import type pg from 'pg';
import { openWarning, type Config } from '../config';
import { replicaShortfalls } from '../queue/safety';
import { liveStatuses, type PersisterStatus } from '../queue/status';
import type { Queue } from '../queue/stream';

/** A dependency slower than this counts as down. */
const CHECK_TIMEOUT_MS = 1000;

interface Component {
  status: 'up' | 'down';
  latency_ms?: number;
  error?: string;
}

function within<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS); }),
  ]).finally(() => clearTimeout(timer));
}

async function probe(check: () => Promise<unknown>): Promise<Component> {
  const t0 = performance.now();
  try {
    await within(check());
    return { status: 'up', latency_ms: Math.round((performance.now() - t0) * 100) / 100 };
  } catch (err) {
    return { status: 'down', error: (err as Error).message };
  }
}

export async function health(cfg: Config, queue: Queue, pool: pg.Pool): Promise<{ status: number; body: string }> {
  const [redis, postgres] = await Promise.all([probe(() => queue.redis.ping()), probe(() => pool.query('SELECT 1'))]);
  const unhealthy: string[] = [];
  const degraded: string[] = [];
  let stream: { backlog: number; max_backlog: number; dead_letters: number } | undefined;
  let persisters: Record<string, PersisterStatus> = {};
  if (redis.status === 'down') unhealthy.push(`redis is down: ${redis.error}`);
  else {
    try {
      const [backlogs, dead, live, shortfalls] = await within(Promise.all([
        Promise.allSettled(queue.shards.map((s) => s.backlog())), queue.deadLetters().catch(() => 0), liveStatuses(queue.redis, cfg.redis.stream),
        cfg.queue.replica_acks ? replicaShortfalls(queue.redis, cfg.queue.replica_acks) : [],
      ]));
      let backlog = 0;
      const down: string[] = [];
      for (const [i, b] of backlogs.entries()) {
        if (b.status === 'fulfilled') backlog += b.value;
        else down.push(`queue shard ${i} (${queue.shards[i].stream}) is unavailable: ${(b.reason as Error).message}; ingest to its devices answers 503`);
      }
      if (down.length === queue.shards.length) throw new Error(down[0]);
      degraded.push(...down, ...shortfalls);
      stream = { backlog, max_backlog: cfg.queue.max_backlog, dead_letters: dead };
      persisters = Object.fromEntries(live);
      if (backlog >= cfg.queue.max_backlog) degraded.push(`backlog of ${backlog} logs is at queue.max_backlog (${cfg.queue.max_backlog}): ingest answers 503`);
      if (!live.size) degraded.push('no live persister: logs are accepted but not persisted');
      for (const [name, s] of live) if (s.lastError) degraded.push(`persister ${name} is retrying: ${s.lastError}`);
      // every node's persister reports the one database: each reason once
      for (const why of new Set([...live.values()].map((s) => s.budgetDropping))) if (why) degraded.push(`disk budget: ${why}`);
    } catch (err) {
      unhealthy.push(`redis is failing: ${(err as Error).message}`);
    }
  }
  if (postgres.status === 'down') degraded.push(`postgres is down: ${postgres.error}`);
  const status = unhealthy.length ? 'unhealthy' : degraded.length ? 'degraded' : 'healthy';
  return {
    status: status === 'healthy' ? 200 : 503,
    body: JSON.stringify({ status, reasons: [...unhealthy, ...degraded, ...openWarning(cfg)], components: { redis, postgres, stream, persisters } }),
  };
}
