/** The persister process: the persister loop, and its heartbeat for /health. */
import os from 'node:os';
import pg from 'pg';
import type { Config } from '../config';
import { connectRedis, pgConfig, redisClient } from '../connections';
import type { Logger } from '../log';
import { partitionsDropped, rowsDropped, trackBacklog, trackStorage } from '../metrics';
import { HEARTBEAT_MS, publishStatus } from '../queue/status';
import { Queue } from '../queue/stream';
import type { RoleMain } from '../supervisor/child';
import { PERSISTER_INDEX_ENV } from '../supervisor/messages';
import { maintain, type StorageState } from '../storage/maintenance';
import { buildSearchIndex } from '../storage/search-indexes';
import { Persister } from './persister';

/** How often the backlog is read while a search index builds. */
const BUILD_WATCH_MS = 1000;

/**
 * Stable per instance and persister, so a restarted persister finds the
 * entries it had taken (its pending list); the first keeps the instance's
 * name, the others add "/<index>".
 */
export function consumerName(cfg: Config, index: number): string {
  const instance = process.env.WORKER_NAME || process.env.INSTANCE_NAME || `${os.hostname()}:${cfg.server.port}`;
  return index ? `${instance}/${index}` : instance;
}

/** The oldest first entry of the shards' streams, as epoch ms (undefined: all empty). */
async function oldestEntryMs(queue: Queue): Promise<number | undefined> {
  const ms = (await queue.firstIds()).flatMap((id) => (id ? [Number(id.split('-')[0])] : []));
  return ms.length ? Math.min(...ms) : undefined;
}

export function persisterMain(cfg: Config, log: Logger): RoleMain {
  // XREADGROUP BLOCK holds its connection; acks, claims and the heartbeat share the other.
  const reader = redisClient(cfg, 'logd:persister-reader', { blocking: true });
  const redis = redisClient(cfg, 'logd:persister');
  for (const r of [reader, redis]) r.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const index = Number(process.env[PERSISTER_INDEX_ENV] ?? 0);
  const consumer = consumerName(cfg, index);
  // storage maintenance and search index builds are the first persister's work
  const maintainer = index === 0;
  const queue = new Queue(redis, cfg);
  const persister = new Persister(cfg, queue, reader, consumer, log);
  let done: Promise<void> = Promise.resolve();
  // one process per node reports the backlog (the gauge is the whole queue's)
  if (maintainer) trackBacklog(() => queue.backlog());
  let timer: NodeJS.Timeout | undefined;
  let storage: StorageState | undefined;
  const publish = (): void => {
    const lastError = persister.stats.lastError ?? queue.shardError;
    publishStatus(redis, cfg.redis.stream, consumer, { at: Date.now(), ...persister.stats, lastError, budgetDropping: storage?.budgetDropping })
      .catch((err) => log.debug({ err: err.message }, 'heartbeat failed'));
  };
  // Storage maintenance (src/storage/maintenance.ts): partitions ahead, retention, the disk budget.
  let maintenanceTimer: NodeJS.Timeout | undefined;
  let maintaining: Promise<void> = Promise.resolve();
  const runMaintenance = async (): Promise<void> => {
    try {
      const { created, dropped, state } = await maintain(cfg, Date.now(), await oldestEntryMs(queue));
      storage = state;
      trackStorage({ ...state, lastDrop: state.lastDrop?.at ?? null });
      if (created) log.info({ created }, 'partitions created ahead');
      for (const d of dropped) {
        partitionsDropped.inc({ reason: d.reason });
        rowsDropped.inc({ reason: d.reason }, d.rows);
        log[d.reason === 'budget' ? 'warn' : 'info']({ ...d, from: Number.isFinite(d.from) ? new Date(d.from).toISOString() : null, to: new Date(d.to).toISOString() },
          d.reason === 'budget' ? 'partition dropped: logs over retention.max_bytes' : 'partition dropped: retention expired');
      }
    } catch (err) {
      log.warn({ err }, 'storage maintenance failed; will retry');
    }
    if (!stopping && cfg.storage.search_indexes) await buildIndex();
  };
  // Search indexes on closed partitions (src/storage/search-indexes.ts), after the pass; ended at stop.
  let builder: pg.Client | undefined;
  const buildIndex = async (): Promise<void> => {
    const client = new pg.Client(pgConfig(cfg));
    builder = client;
    let watch: NodeJS.Timeout | undefined;
    let gaveWay = false;
    try {
      await client.connect();
      // the backend gives the build up within a second of this client's end (at stop); PostgreSQL 14 and later
      await client.query("SET client_connection_check_interval = '1s'").catch(() => undefined);
      const t0 = Date.now();
      // A build gives way to ingest: when the backlog grows past the limit
      // meanwhile, the build is ended (its invalid index is dropped next pass).
      watch = setInterval(() => {
        queue.backlog().then((n) => {
          if (n <= cfg.storage.search_index_max_backlog || gaveWay) return;
          gaveWay = true;
          log.info({ backlog: n }, 'search index build given up: the backlog passed storage.search_index_max_backlog; will retry');
          return client.end();
        }).catch(() => undefined);
      }, BUILD_WATCH_MS);
      const r = await buildSearchIndex(client, cfg, Date.now(), await queue.backlog());
      if (r.dropped.length) log.info({ indexes: r.dropped }, 'invalid search indexes dropped (a build cut short)');
      if (r.built) log.info({ index: r.built, ms: Date.now() - t0 }, 'search index built');
      if (r.skipped === 'cancelled') log.info('search index build cancelled by a drop of its partition');
    } catch (err) {
      if (!stopping && !gaveWay) log.warn({ err }, 'search index build failed; will retry');
    } finally {
      clearInterval(watch);
      builder = undefined;
      await client.end().catch(() => undefined);
    }
  };
  let stopping = false;
  const scheduleMaintenance = (): void => {
    if (stopping) return;
    maintenanceTimer = setTimeout(() => {
      maintaining = runMaintenance().finally(scheduleMaintenance);
    }, cfg.storage.maintenance_interval_s * 1000);
  };
  return {
    async start() {
      await Promise.all([connectRedis(reader), connectRedis(redis)]);
      publish();
      timer = setInterval(publish, HEARTBEAT_MS);
      // not awaited: the persister makes the partitions its batches need itself
      if (maintainer) maintaining = runMaintenance().finally(scheduleMaintenance);
      done = persister.run().catch((err) => {
        log.fatal({ err }, 'persister failed');
        process.exit(1);
      });
    },
    async stop() {
      persister.stop();
      stopping = true;
      clearTimeout(maintenanceTimer);
      await builder?.end().catch(() => undefined);
      await Promise.all([done, maintaining]);
      clearInterval(timer);
      reader.disconnect();
      redis.disconnect();
    },
  };
}
