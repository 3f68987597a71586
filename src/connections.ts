/**
 * How a process reaches Redis and PostgreSQL, from the configuration. A host
 * that starts with '/' is a unix socket (the embedded services use them).
 * With redis.cluster set, every Redis client is an ioredis Cluster client.
 */
import Redis, { Cluster, type RedisOptions } from 'ioredis';
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

/** A client of one Redis server or of a Redis Cluster: the commands logd uses are the same on both. */
export type RedisClient = Redis | Cluster;

/** "host:port" of a cluster seed node. */
function seed(hostPort: string): { host: string; port: number } {
  const at = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(hostPort.slice(at + 1)) };
}

/**
 * A Redis client; `blocking` clients (XREADGROUP BLOCK) get no command
 * timeout, `commandTimeout` overrides redis.command_timeout_ms.
 */
export function redisClient(cfg: Config, name: string, opts: { blocking?: boolean; commandTimeout?: number } = {}): RedisClient {
  const base = { ...redisOptions(cfg), connectionName: name, lazyConnect: true };
  if (opts.commandTimeout !== undefined) base.commandTimeout = opts.commandTimeout;
  if (opts.blocking) delete base.commandTimeout;
  if (!cfg.redis.cluster.length) return new Redis(base);
  // each node's address comes from the cluster itself
  const perNode: RedisOptions = { ...base };
  for (const k of ['host', 'port', 'path', 'db', 'lazyConnect'] as const) delete perNode[k];
  // the node pool queues commands while a node connects (ioredis' ConnectionPool): keep its own offline queue
  delete perNode.enableOfflineQueue;
  return new Cluster(cfg.redis.cluster.map(seed), {
    lazyConnect: true,
    // a command before the cluster is ready fails at once, like a standalone client's while disconnected
    enableOfflineQueue: false,
    scaleReads: 'master',
    // while a master fails over, commands to its slots fail at once (ingest answers 503) instead of stalling
    retryDelayOnFailover: 0,
    retryDelayOnMoved: 0,
    retryDelayOnTryAgain: 100,
    retryDelayOnClusterDown: 100,
    // pipelines (Queue.durably) neither follow redirections nor update the slot map: it is refreshed every second
    slotsRefreshInterval: 1000,
    slotsRefreshTimeout: 1000,
    redisOptions: { ...perNode, disableClientInfo: true },
    clusterRetryStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2000),
  });
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

/**
 * Connects a client. A cluster client is connected once it has the slot map;
 * its connections to the masters open on their first command, and a command
 * to a master whose connection is opening fails at once (enableOfflineQueue:
 * false): this resolves once every master's connection is ready.
 */
export async function connectRedis(redis: RedisClient): Promise<void> {
  await redis.connect();
  if (!(redis instanceof Cluster)) return;
  await Promise.all(redis.nodes('master').map(async (node) => {
    if (node.status === 'wait') return node.connect();
    if (node.status === 'ready') return undefined;
    return new Promise<void>((resolve, reject) => {
      node.once('ready', () => resolve());
      node.once('end', () => reject(new Error(`Redis Cluster node ${node.options.host}:${node.options.port} closed while connecting`)));
    });
  }));
}

/** A short-lived Redis connection (CLI commands, start-up checks). */
export async function withRedis<T>(cfg: Config, name: string, fn: (redis: RedisClient) => Promise<T>): Promise<T> {
  const redis = redisClient(cfg, name);
  redis.on('error', () => undefined); // connect() and the commands report it
  await connectRedis(redis);
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}
