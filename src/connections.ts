/**
 * How a process reaches Redis and PostgreSQL, from the configuration. A host
 * that starts with '/' is a unix socket (the embedded services use them).
 */
import Redis, { type RedisOptions } from 'ioredis';
import pg from 'pg';
import type { Config } from './config';

export function redisOptions(cfg: Config): RedisOptions {
  const r = cfg.redis;
  const where = r.host.startsWith('/') ? { path: r.host } : { host: r.host, port: r.port };
  return {
    ...where,
    db: r.db,
    ...(r.password ? { password: r.password } : {}),
    // Fail fast instead of queueing while disconnected: a client must get a
    // prompt 503 it can retry, never a request that hangs on a dead Redis.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: r.command_timeout_ms,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, 2000),
  };
}

/** A Redis client; `blocking` clients (XREADGROUP BLOCK) get no command timeout. */
export function redisClient(cfg: Config, name: string, blocking = false): Redis {
  const opts = redisOptions(cfg);
  if (blocking) delete opts.commandTimeout;
  return new Redis({ ...opts, connectionName: name, lazyConnect: true });
}

export function pgConfig(cfg: Config, database = cfg.postgres.database): pg.ClientConfig {
  const p = cfg.postgres;
  return {
    host: p.host,
    port: p.port,
    user: p.user,
    database,
    ...(p.password ? { password: p.password } : {}),
    application_name: `logd:${process.title.replace(/^logd: /, '')}`,
    connectionTimeoutMillis: 5000,
  };
}

/** A short-lived Redis connection (CLI commands, start-up checks). */
export async function withRedis<T>(cfg: Config, name: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = redisClient(cfg, name);
  redis.on('error', () => undefined); // connect() and the commands report it
  await redis.connect();
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}
