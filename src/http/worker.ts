/** The HTTP worker process: Redis for the stream, the cache, a PostgreSQL pool for reads and /health, the uWS server. */
import pg from 'pg';
import { Cache } from '../cache/cache';
import type { Config } from '../config';
import { pgConfig, redisClient } from '../connections';
import type { Logger } from '../log';
import { Queue } from '../queue/stream';
import type { RoleMain } from '../supervisor/child';
import { Authenticator } from './auth';
import { startServer, type Server } from './server';

/** How often a draining worker looks whether its last request is answered. */
const DRAIN_POLL_MS = 10;

export function httpWorker(cfg: Config, log: Logger): RoleMain {
  const redis = redisClient(cfg, 'logd:http');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  // The timeout bounds a search no index serves (a scan), so it cannot hold PostgreSQL's CPU for long.
  const pool = new pg.Pool({ ...pgConfig(cfg), max: cfg.postgres.pool_size, statement_timeout: cfg.postgres.statement_timeout_ms });
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle PostgreSQL connection failed'));
  const auth = new Authenticator(redis, log);
  const cache = new Cache(cfg, log);
  let server: Server | undefined;
  return {
    async start() {
      await redis.connect();
      await auth.start();
      cache.start();
      server = await startServer({ cfg, queue: new Queue(redis, cfg), pool, auth, cache });
    },
    async stop() {
      server?.stopListening();
      // Keep answering (with Connection: close) for server.drain_ms, so a proxy's pooled connections are used once
      // and closed by their last answer instead of being reset when the worker exits.
      const until = Date.now() + cfg.server.drain_ms;
      while (server && (server.inflight() > 0 || Date.now() < until)) await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      auth.stop();
      cache.stop();
      redis.disconnect();
      await pool.end();
    },
  };
}
