/** The HTTP worker process: Redis for the stream, the cache, two PostgreSQL pools for reads and /health, the uWS server, the syslog listeners. */
import { Cache } from '../cache/cache';
import { Versions } from '../cache/versions';
import type { Config } from '../config';
import { connectRedis, redisClient } from '../connections';
import { startSyslog, type SyslogListeners } from '../listen/syslog';
import type { Logger } from '../log';
import { Queue } from '../queue/stream';
import { readPools } from '../read/db';
import type { RoleMain } from '../supervisor/child';
import { Authenticator } from './auth';
import { startServer, type Server } from './server';
import { uploadOptions } from './upload';

/** How often a draining worker looks whether its last request is answered. */
const DRAIN_POLL_MS = 10;
/** On stop, the least time syslog connections are read until they go quiet (RELP: acknowledged, then closed), in ms. */
const SYSLOG_DRAIN_MS = 1000;

export function httpWorker(cfg: Config, log: Logger): RoleMain {
  const redis = redisClient(cfg, 'logd:http');
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const { reads, scans } = readPools(cfg);
  for (const p of [reads, scans]) p.pool.on('error', (err) => log.warn({ err: err.message }, 'idle PostgreSQL connection failed'));
  const auth = new Authenticator(redis, log, cfg.auth.mode === 'open');
  const cache = new Cache(cfg, log);
  let server: Server | undefined;
  let syslog: SyslogListeners | undefined;
  return {
    async start() {
      await connectRedis(redis);
      await auth.start();
      cache.start();
      const queue = new Queue(redis, cfg);
      server = await startServer({ cfg, queue, reads, scans, auth, cache, versions: new Versions(redis, cfg), upload: uploadOptions(cfg) });
      syslog = await startSyslog(cfg, queue, log);
    },
    async stop() {
      server?.stopListening();
      // Keep answering (with Connection: close) for server.drain_ms, so a proxy's pooled connections are used once
      // and closed by their last answer instead of being reset when the worker exits.
      const until = Date.now() + cfg.server.drain_ms;
      // syslog senders get at least SYSLOG_DRAIN_MS to go quiet, even with server.drain_ms = 0 (no proxy)
      const syslogStopped = syslog?.stop(Math.max(until, Date.now() + SYSLOG_DRAIN_MS));
      while (server && (server.inflight() > 0 || Date.now() < until)) await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      await syslogStopped;
      auth.stop();
      cache.stop();
      redis.disconnect();
      await Promise.all([reads.pool.end(), scans.pool.end()]);
    },
  };
}
