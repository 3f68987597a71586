/** GET /health: 200 when Redis and PostgreSQL both answer, 503 otherwise, with each component's state. */
import type Redis from 'ioredis';
import type pg from 'pg';

/** A dependency slower than this counts as down. */
const CHECK_TIMEOUT_MS = 1000;

interface Component {
  status: 'up' | 'down';
  latency_ms?: number;
  error?: string;
}

async function probe(check: () => Promise<unknown>): Promise<Component> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS); }),
    ]);
    return { status: 'up', latency_ms: Math.round((performance.now() - t0) * 100) / 100 };
  } catch (err) {
    return { status: 'down', error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export async function health(redis: Redis, pool: pg.Pool): Promise<{ status: number; body: string }> {
  const [r, p] = await Promise.all([probe(() => redis.ping()), probe(() => pool.query('SELECT 1'))]);
  const ok = r.status === 'up' && p.status === 'up';
  return {
    status: ok ? 200 : 503,
    body: JSON.stringify({ status: ok ? 'healthy' : 'unhealthy', components: { redis: r, postgres: p } }),
  };
}
