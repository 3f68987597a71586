/** The HTTP worker process: Redis for the stream, a one-connection pool for /health, the uWS server. */
import pg from 'pg';
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
  const pool = new pg.Pool({ ...pgConfig(cfg), max: 1 });
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle PostgreSQL connection failed'));
  const auth = new Authenticator(redis, log);
  let server: Server | undefined;
  return {
    async start() {
      await redis.connect();
      await auth.start();
      server = await startServer({ cfg, queue: new Queue(redis, cfg), pool, auth });
    },
    async stop() {
      server?.stopListening();
      while (server && server.inflight() > 0) await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      auth.stop();
      redis.disconnect();
      await pool.end();
    },
  };
}
