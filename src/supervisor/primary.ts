/**
 * The primary: starts the embedded services when needed, applies the schema,
 * forks the HTTP workers and the persister, restarts crashed children with
 * backoff, and on SIGTERM/SIGINT stops in order:
 *
 *   HTTP workers (stop listening, drain)  ->  persister (last batch, ack)
 *     ->  embedded services  ->  exit 0
 */
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config';
import { embeddedPostgres, embeddedRedis, openWarning } from '../config';
import { activeTokens } from '../auth/tokens';
import { LogdError } from '../errors';
import type { Logger } from '../log';
import { withRedis } from '../connections';
import { serveClusterMetrics } from '../metrics';
import { ensureDatabase, migrate } from '../persist/migrate';
import { redisWarnings } from '../queue/safety';
import { startEmbedded } from './embedded';
import { CONFIG_ENV, PERSISTER_INDEX_ENV, ROLE_ENV, type FromChild, type Role, type ToChild } from './messages';

/** A child that lived at least this long is healthy again: its backoff restarts from the beginning. */
const HEALTHY_AFTER_MS = 10_000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;

interface Slot {
  role: Role;
  /** environment of its process beyond the role's */
  env?: Record<string, string>;
  worker?: Worker;
  startedAt: number;
  backoff: number;
  ready: boolean;
}

/**
 * The HTTP workers parse untrusted input, so `logd serve` runs as root only
 * in the embedded development setup (the quick start) or with
 * server.allow_root (disposable test machines). In the embedded setup the
 * workers keep root: its Redis socket is private to root and its PostgreSQL
 * socket to the `postgres` user, and another user could reach them only if
 * they were opened up.
 */
function checkRoot(cfg: Config, log: Logger): void {
  if (process.getuid?.() !== 0) return;
  if (!(embeddedRedis(cfg) && embeddedPostgres(cfg)) && !cfg.server.allow_root) {
    throw new LogdError('LOGD_CONFIG_INVALID', 'logd serve refuses to run as root with an external Redis or PostgreSQL (server.allow_root = false): '
      + 'its HTTP workers parse untrusted input. Run it as an unprivileged user: the systemd unit conf/logd.service (User=logd), '
      + 'or `useradd --system logd` and `runuser -u logd -- logd serve ...`');
  }
  log.warn("running as root: the HTTP workers parse untrusted input with root's privileges; outside local development, run logd as an unprivileged user (conf/logd.service: User=logd)");
}

export async function serve(cfgIn: Config, log: Logger): Promise<number> {
  checkRoot(cfgIn, log);
  process.title = 'logd: primary';
  const embedded = await startEmbedded(cfgIn, log);
  const cfg = embedded.cfg;
  try {
    if (embeddedPostgres(cfgIn)) await ensureDatabase(cfg, log);
    await migrate(cfg, log);
    await checkRedis(cfg, log);
  } catch (err) {
    await embedded.stop();
    throw err;
  }

  const env = { [CONFIG_ENV]: JSON.stringify(cfg) };
  const slots: Slot[] = [
    ...Array.from({ length: cfg.persister.count }, (_, i): Slot => ({
      role: 'persister', env: { [PERSISTER_INDEX_ENV]: String(i) }, startedAt: 0, backoff: BACKOFF_MIN_MS, ready: false,
    })),
    ...Array.from({ length: cfg.server.workers }, (): Slot => ({ role: 'http', startedAt: 0, backoff: BACKOFF_MIN_MS, ready: false })),
  ];
  let stopping = false;
  let announced = false;

  const fork = (slot: Slot): void => {
    slot.startedAt = Date.now();
    slot.ready = false;
    // V8 grows a busy worker's heap lazily, toward gigabytes: measured under 100-log batches, 818 MB RSS per
    // HTTP worker uncapped, 105-118 MB with a 256 MiB old space (which still parses a 50 MiB batch).
    cluster.setupPrimary({ execArgv: slot.role === 'http' ? [...process.execArgv, `--max-old-space-size=${cfg.server.worker_heap_mb}`] : process.execArgv });
    const w = cluster.fork({ ...env, ...slot.env, [ROLE_ENV]: slot.role });
    slot.worker = w;
    w.on('message', (m: FromChild) => {
      if (m.type !== 'ready') return;
      slot.ready = true;
      if (!announced && slots.every((s) => s.ready)) {
        announced = true;
        log.info({ port: cfg.server.port, workers: cfg.server.workers, pid: process.pid }, `logd listening on http://${cfg.server.host}:${cfg.server.port}`);
        for (const warning of openWarning(cfg)) log.warn(warning);
      }
    });
    w.on('exit', (code, signal) => {
      if (slot.worker !== w) return;
      slot.worker = undefined;
      if (stopping) return;
      const lived = Date.now() - slot.startedAt;
      slot.backoff = lived >= HEALTHY_AFTER_MS ? BACKOFF_MIN_MS : Math.min(slot.backoff * 2, BACKOFF_MAX_MS);
      const delay = lived >= HEALTHY_AFTER_MS ? 0 : slot.backoff;
      log.error({ role: slot.role, pid: w.process.pid, code, signal, restartInMs: delay }, 'child exited; restarting');
      setTimeout(() => { if (!stopping) fork(slot); }, delay);
    });
  };
  serveClusterMetrics();
  for (const s of slots) fork(s);

  return new Promise<number>((resolve) => {
    const stop = async (signal: string): Promise<void> => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      let forced = false;
      const deadline = setTimeout(() => {
        forced = true;
        log.error({ timeoutMs: cfg.server.shutdown_timeout_ms }, 'shutdown timed out; killing children');
        for (const s of slots) s.worker?.process.kill('SIGKILL');
      }, cfg.server.shutdown_timeout_ms);
      await stopChildren(slots.filter((s) => s.role === 'http'));
      await stopChildren(slots.filter((s) => s.role === 'persister'));
      clearTimeout(deadline);
      await embedded.stop();
      log.info({ forced }, 'stopped');
      resolve(forced ? 1 : 0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });
}

/** Warns when the Redis server could lose or evict accepted logs, and when no route but the public ones can be used yet. */
async function checkRedis(cfg: Config, log: Logger): Promise<void> {
  const [warnings, tokens] = await withRedis(cfg, 'logd:primary', (redis) => Promise.all([redisWarnings(redis), activeTokens(redis)]));
  for (const warning of warnings) log.warn(warning);
  if (cfg.auth.mode === 'token' && tokens === 0) {
    log.warn('no active token exists: every route but /health and the docs answers 401 until one is created (logd token create --name NAME --scope ingest|read|admin)');
  }
}

async function stopChildren(slots: Slot[]): Promise<void> {
  await Promise.all(slots.map((s) => {
    const w = s.worker;
    if (!w || w.isDead()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      try {
        w.send({ type: 'shutdown' } satisfies ToChild);
      } catch {
        w.process.kill('SIGTERM');
      }
    });
  }));
}

