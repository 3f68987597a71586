/** `logd status`: backlog, persist rate and component health of a running logd (through Redis and PostgreSQL). */
import pg from 'pg';
import type { Config } from '../config';
import { pgConfig, withRedis } from '../connections';
import { health } from '../http/health';
import { liveStatuses } from '../queue/status';
import { Queue } from '../queue/stream';
import { storageState } from '../storage/maintenance';
import { storageSummary } from './storage';

/** The persist rate is measured over this window. */
const RATE_WINDOW_MS = 1000;

interface HealthBody {
  status: string;
  reasons: string[];
  components: {
    redis: { status: string; latency_ms?: number; error?: string };
    postgres: { status: string; latency_ms?: number; error?: string };
    stream?: { backlog: number; max_backlog: number; dead_letters: number };
  };
}

export async function status(cfg: Config, out: NodeJS.WritableStream): Promise<number> {
  const pool = new pg.Pool({ ...pgConfig(cfg), max: 1 });
  pool.on('error', () => undefined);
  try {
    return await withRedis(cfg, 'logd:cli', async (redis) => {
      const queue = new Queue(redis, cfg);
      const before = await liveStatuses(redis, cfg.redis.stream);
      const h = JSON.parse((await health(cfg, queue, pool)).body) as HealthBody;
      await new Promise((r) => setTimeout(r, RATE_WINDOW_MS));
      const after = await liveStatuses(redis, cfg.redis.stream);
      const c = h.components;
      const line = (name: string, s: { status: string; latency_ms?: number; error?: string }): string =>
        `${name.padEnd(11)}${s.status === 'up' ? `up (${s.latency_ms} ms)` : `DOWN: ${s.error}`}\n`;
      out.write(`status     ${h.status}\n`);
      out.write(line('redis', c.redis));
      out.write(line('postgres', c.postgres));
      if (c.stream) {
        out.write(`backlog    ${c.stream.backlog} logs not yet persisted (limit ${c.stream.max_backlog})\n`);
        const dead = queue.shards.length === 1 ? queue.shards[0].deadStream : `the dead-letter streams of ${queue.shards.length} shards (${queue.shards[0].deadStream}, ...)`;
        out.write(`dead       ${c.stream.dead_letters} entries in ${dead}\n`);
      }
      for (const [name, s] of after) {
        const prev = before.get(name);
        const rate = prev ? Math.round(((s.rows - prev.rows) * 1000) / Math.max(1, s.at - prev.at)) : 0;
        out.write(`persister  ${name}: ${rate} logs/s now, ${s.rows} rows in ${s.batches} batches since start, ${s.dead} dead-lettered${s.lastError ? `, RETRYING: ${s.lastError}` : ''}\n`);
      }
      if (!after.size) out.write('persister  none alive\n');
      if (c.postgres.status === 'up') {
        const client = await pool.connect();
        try {
          out.write(storageSummary(await storageState(client, cfg, Date.now()), cfg));
        } finally {
          client.release();
        }
      }
      for (const r of h.reasons) out.write(`problem    ${r}\n`);
      return h.status === 'healthy' ? 0 : 1;
    });
  } finally {
    await pool.end();
  }
}
