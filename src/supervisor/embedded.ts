/**
 * The embedded default: with no Redis or PostgreSQL configured, logd starts
 * and owns its own redis-server and postgres (Debian's binaries) under the
 * data directory, reachable only through unix sockets there, and stops them
 * on exit. PostgreSQL refuses to run as root: as root, it runs as the
 * `postgres` user. Nothing in the data directory is readable by other users
 * (the AOF holds logs and token records):
 *
 *   <data.dir>/                    0750 (as root, group postgres: it must reach pg/)
 *   <data.dir>/logd.pid            the primary that owns the services
 *   <data.dir>/redis/              0700: AOF, redis.sock, redis.pid, redis.log, all 0600
 *   <data.dir>/pg/                 0700: the cluster and its socket
 *   <data.dir>/postgres.log        0640
 *
 * The cluster's superuser is `postgres` (EMBEDDED_SUPERUSER); logd itself
 * connects as postgres.user, an unprivileged role that owns the database
 * (ensureDatabase).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, fchmodSync, fchownSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import Redis from 'ioredis';
import type { Config } from '../config';
import { embeddedPostgres, embeddedRedis } from '../config';
import { pgConfig } from '../connections';
import { LogdError } from '../errors';
import type { Logger } from '../log';
import { EMBEDDED_SUPERUSER, NO_SUCH_ROLE } from '../persist/migrate';

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
/** Port number in the socket's name only: the embedded postgres listens on no TCP port. */
const PG_PORT = 5432;

export interface Embedded {
  /** the configuration with the embedded services' sockets filled in */
  cfg: Config;
  stop(): Promise<void>;
}

function which(names: string[], hint: string): string {
  for (const n of names) {
    if (n.startsWith('/')) {
      if (existsSync(n)) return n;
      continue;
    }
    for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(path.join(dir, n))) return path.join(dir, n);
  }
  throw new Error(`cannot find ${names[0].split('/').pop()}: ${hint}`);
}

function pgBinDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(path.join(base, v, 'bin', 'postgres'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length) return path.join(base, versions[0], 'bin');
  return path.dirname(which(['postgres'], 'install PostgreSQL (apt-get install postgresql)'));
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const readPid = (file: string): number | undefined => {
  try {
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
};

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, log: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`${what} did not start within ${timeoutMs} ms; last lines of ${log}:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); }, timeoutMs);
    child.once('exit', () => { clearTimeout(t); resolve(); });
  });
}

/** Who runs postgres: as root, the `postgres` user (it refuses root). */
function pgOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root, PostgreSQL must run as the `postgres` user, which does not exist: install the postgresql package (apt-get install postgresql)');
  }
}

/** Makes sure the `postgres` user can reach the cluster directory (all parents need +x). */
function checkReachable(dir: string, owner: { uid: number }): void {
  try {
    execFileSync('runuser', ['-u', 'postgres', '--', 'test', '-x', path.dirname(dir)]);
  } catch {
    throw new Error(`the postgres user (uid ${owner.uid}) cannot reach ${path.dirname(dir)}: choose a data directory whose parents are world-searchable, for example --data-dir /var/lib/logd`);
  }
}

/** Directories 0700 and files 0600 under `dir`, itself included: data directories made by older logd had 0755/0644. */
function makePrivate(dir: string): void {
  chmodSync(dir, 0o700);
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    const st = lstatSync(file);
    if (st.isDirectory()) makePrivate(file);
    else if (!st.isSymbolicLink()) chmodSync(file, 0o600);
  }
}

async function startRedis(socket: string, log: Logger): Promise<ChildProcess> {
  const bin = which(['redis-server', '/usr/bin/redis-server'], 'install Redis (apt-get install redis-server)');
  const dir = path.dirname(socket);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  makePrivate(dir);
  const logFile = path.join(dir, 'redis.log');
  const out = openSync(logFile, 'a', 0o600);
  // redis-server has no setting for the mode of the files it creates (AOF, pid file, socket before
  // --unixsocketperm applies): they follow the umask it inherits, 077 for the moment of the spawn.
  const umask = process.umask(0o077);
  let child: ChildProcess;
  try {
    // The safe settings of conf/redis.conf: AOF, and a policy that never evicts the stream.
    child = spawn(bin, [
      '--port', '0', '--unixsocket', socket, '--unixsocketperm', '600', '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '',
      '--maxmemory', '1gb', '--maxmemory-policy', 'noeviction',
      '--daemonize', 'no', '--pidfile', path.join(dir, 'redis.pid'),
    ], { stdio: ['ignore', out, out], detached: true });
  } finally {
    process.umask(umask);
    closeSync(out);
  }
  await until('embedded redis-server', async () => {
    if (child.exitCode !== null) throw new Error('exited');
    const r = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined); // the connect() rejection says it
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } finally {
      r.disconnect();
    }
  }, START_TIMEOUT_MS, logFile);
  log.info({ socket }, 'embedded redis-server started');
  return child;
}

async function startPostgres(cfg: Config, dir: string, owner: { uid: number; gid: number } | undefined, log: Logger): Promise<ChildProcess> {
  const bin = pgBinDir();
  const logFile = path.join(path.dirname(dir), 'postgres.log');
  if (owner) checkReachable(dir, owner);
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    if (owner) chownSync(dir, owner.uid, owner.gid);
    log.info({ dir }, 'initialising the embedded PostgreSQL cluster');
    execFileSync(path.join(bin, 'initdb'), ['-D', dir, '-U', EMBEDDED_SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C'], { ...asOwner, stdio: 'pipe' });
  }
  const out = openSync(logFile, 'a', 0o640);
  fchmodSync(out, 0o640);
  if (owner) fchownSync(out, owner.uid, owner.gid);
  const child = spawn(path.join(bin, 'postgres'), [
    '-D', dir, '-k', dir, '-p', String(PG_PORT), '-c', 'listen_addresses=',
  ], { ...asOwner, stdio: ['ignore', out, out], detached: true });
  closeSync(out);
  const probe = { ...pgConfig(withEmbeddedEndpoints(cfg), 'postgres'), user: EMBEDDED_SUPERUSER };
  await until('embedded postgres', async () => {
    if (child.exitCode !== null) throw new Error('exited');
    const c = new pg.Client(probe);
    try {
      await c.connect();
      return true;
    } catch (err) {
      // No role EMBEDDED_SUPERUSER: a cluster made by an older logd, ready (ensureDatabase adopts it).
      if ((err as { code?: string }).code === NO_SUCH_ROLE) return true;
      throw err;
    } finally {
      await c.end().catch(() => undefined);
    }
  }, START_TIMEOUT_MS, logFile);
  log.info({ socket: dir }, 'embedded postgres started');
  return child;
}

/** Stops processes a previous primary left behind when it was killed. */
function reapLeftovers(dataDir: string, log: Logger): void {
  for (const pidFile of [path.join(dataDir, 'redis', 'redis.pid'), path.join(dataDir, 'pg', 'postmaster.pid')]) {
    const pid = readPid(pidFile);
    if (pid && isAlive(pid)) {
      log.warn({ pid, pidFile }, 'stopping a service left running by a previous logd');
      process.kill(pid, 'SIGTERM');
    }
  }
}

async function waitGone(pidFile: string): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  for (let pid = readPid(pidFile); pid && isAlive(pid) && Date.now() < deadline; pid = readPid(pidFile)) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The configuration with the embedded services' sockets filled in for
 * whichever of Redis and PostgreSQL is not configured (what a running
 * `logd serve` on this data directory uses; CLI commands connect with it).
 */
export function withEmbeddedEndpoints(cfg: Config): Config {
  const redis = embeddedRedis(cfg) ? { ...cfg.redis, host: path.join(cfg.data.dir, 'redis', 'redis.sock') } : cfg.redis;
  const postgres = embeddedPostgres(cfg) ? { ...cfg.postgres, host: path.join(cfg.data.dir, 'pg'), port: PG_PORT } : cfg.postgres;
  return Object.freeze({ ...cfg, redis: Object.freeze(redis), postgres: Object.freeze(postgres) }) as Config;
}

/** Starts whichever of Redis and PostgreSQL is not configured; returns the completed configuration. */
export async function startEmbedded(cfg: Config, log: Logger): Promise<Embedded> {
  const wantRedis = embeddedRedis(cfg);
  const wantPg = embeddedPostgres(cfg);
  if (!wantRedis && !wantPg) return { cfg, stop: async () => undefined };
  if (wantPg && cfg.postgres.user === EMBEDDED_SUPERUSER) {
    throw new LogdError('LOGD_CONFIG_INVALID', `postgres.user must not be "${EMBEDDED_SUPERUSER}" with the embedded PostgreSQL: that is its superuser, and logd connects as an unprivileged role`);
  }
  const dataDir = cfg.data.dir;
  const pgUser = wantPg ? pgOwner() : undefined;
  mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  // Also tightens a data directory an older logd made 0755.
  chmodSync(dataDir, 0o750);
  if (pgUser) chownSync(dataDir, -1, pgUser.gid);
  const lock = path.join(dataDir, 'logd.pid');
  const owner = readPid(lock);
  if (owner && owner !== process.pid && isAlive(owner)) {
    throw new Error(`data directory ${dataDir} is in use by logd pid ${owner}`);
  }
  writeFileSync(lock, `${process.pid}\n`);
  reapLeftovers(dataDir, log);
  await waitGone(path.join(dataDir, 'redis', 'redis.pid'));
  await waitGone(path.join(dataDir, 'pg', 'postmaster.pid'));

  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    // Reverse order; SIGINT is PostgreSQL's fast shutdown, SIGTERM Redis's (it flushes the AOF).
    for (const c of children.reverse()) {
      c.kill(c === pgChild ? 'SIGINT' : 'SIGTERM');
      await waitExit(c, STOP_TIMEOUT_MS);
    }
    rmSync(lock, { force: true });
  };
  let pgChild: ChildProcess | undefined;
  const completed = withEmbeddedEndpoints(cfg);
  try {
    if (wantRedis) children.push(await startRedis(completed.redis.host, log));
    if (wantPg) {
      pgChild = await startPostgres(cfg, completed.postgres.host, pgUser, log);
      children.push(pgChild);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { cfg: completed, stop };
}
