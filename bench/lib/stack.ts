/**
 * The bench's own stack, on 127.0.0.1 only: a private redis-server with
 * conf/redis.conf's settings (as arguments; the tests' launcher puts its
 * directory, AOF included, on /dev/shm when that is a tmpfs with 2 GiB free),
 * a private PostgreSQL 15 with its stock settings (fsync, synchronous_commit
 * and full_page_writes on, as an operator runs it; data directory on /dev/shm
 * when it exists), logd (`node dist/bin/logd.js serve`, default worker count)
 * and nginx with the shipped conf rendered by scripts/render-nginx.sh.
 * storage() reports where the data actually went.
 *
 * Everything started here is registered with the reaper: stopped on normal
 * exit, on SIGINT/SIGTERM and on errors, SIGKILLed on process exit, and a
 * detached shell watchdog SIGTERMs what is left if this process is SIGKILLed.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import pg from 'pg';
import { freePort, startRedis, waitFor, type RedisServer } from '../../test/helpers/services';

const execFileP = promisify(execFile);
const HOST = '127.0.0.1';
const PG_BIN = '/usr/lib/postgresql/15/bin';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// reaper

interface Owned {
  name: string;
  pid: () => number | undefined;
  stop: () => Promise<void>;
  /** last resort, synchronous (process 'exit') */
  kill: () => void;
}
const owned: Owned[] = [];
let watchdog: ChildProcess | undefined;

function tellWatchdog(line: string): void {
  if (!watchdog) {
    // SIGTERM (not KILL): a logd primary or nginx master then stops its own children.
    const script = 'live=""; while read -r op pid; do if [ "$op" = "+" ]; then live="$live $pid"; else n=""; for p in $live; do [ "$p" = "$pid" ] || n="$n $p"; done; live=$n; fi; done; [ -z "$live" ] || kill -TERM $live 2>/dev/null; exit 0';
    watchdog = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    watchdog.on('error', () => undefined);
    watchdog.stdin!.on('error', () => undefined);
    watchdog.unref();
    if (watchdog.stdin instanceof net.Socket) watchdog.stdin.unref();
  }
  watchdog.stdin!.write(`${line}\n`);
}

/** Registers a process; its pid goes to the watchdog until `gone` resolves (its exit), so that a recycled pid is never hit. */
function own(o: Owned, gone?: Promise<unknown>, watch = true): void {
  owned.push(o);
  const pid = o.pid();
  if (pid && watch) {
    tellWatchdog(`+ ${pid}`);
    void gone?.then(() => tellWatchdog(`- ${pid}`));
  }
}

let stopping: Promise<void> | undefined;
/** Stops everything started here, newest first. */
export function stopAll(): Promise<void> {
  stopping ??= (async () => {
    for (const o of owned.splice(0).reverse()) {
      try {
        await Promise.race([o.stop(), sleep(20_000).then(() => o.kill())]);
      } catch (err) {
        process.stderr.write(`bench: stopping ${o.name}: ${(err as Error).message}\n`);
        o.kill();
      }
    }
    watchdog?.stdin?.end();
  })();
  return stopping;
}

export function installReaper(): void {
  process.on('exit', () => {
    for (const o of owned) o.kill();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping everything it started\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
}

/** Pids of everything started (roots for /proc sampling). */
export const ownedPids = (): number[] => owned.map((o) => o.pid()).filter((p): p is number => !!p);

// ---------------------------------------------------------------------------
// Redis: the test helper's server, with conf/redis.conf's settings as arguments

const REDIS_SKIP = new Set(['bind', 'port', 'dir', 'daemonize', 'supervised', 'logfile', 'protected-mode', 'pidfile', 'unixsocket', 'unixsocketperm', 'include']);

/** conf/redis.conf as redis-server arguments (minus what places the server: port, dir, bind...). */
export function redisConfArgs(confFile: string): string[] {
  const args: string[] = [];
  for (const raw of fs.readFileSync(confFile, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [key, ...vals] = line.split(/\s+/);
    if (REDIS_SKIP.has(key.toLowerCase())) continue;
    args.push(`--${key}`, ...vals.map((v) => v.replace(/^"(.*)"$/, '$1')));
  }
  return args;
}

export async function benchRedis(root: string): Promise<RedisServer> {
  const r = await startRedis({ extraArgs: redisConfArgs(path.join(root, 'conf', 'redis.conf')) });
  // the launcher watches it; its directory (the AOF: up to ~2 GB on tmpfs) goes with it
  const stop = async (): Promise<void> => {
    await r.stop();
    await fsp.rm(r.dir, { recursive: true, force: true });
  };
  own({ name: 'redis-server', pid: () => r.pid(), stop, kill: () => r.kill('SIGKILL') }, undefined, false);
  return r;
}

// ---------------------------------------------------------------------------
// PostgreSQL with stock settings

export interface Pg {
  port: number;
  dir: string;
  pid: number;
  env: Record<string, string>;
  pool: pg.Pool;
}

export async function benchPostgres(): Promise<Pg> {
  const scratch = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = await fsp.mkdtemp(path.join(scratch, 'logd-bench-pg-'));
  let runAs: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    runAs = { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
    await fsp.chown(dir, runAs.uid, runAs.gid);
  }
  await fsp.chmod(dir, 0o700);
  await execFileP(path.join(PG_BIN, 'initdb'), ['-D', dir, '-U', 'logd', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-instructions'], { cwd: os.tmpdir(), ...(runAs ?? {}) });
  const port = await freePort();
  const logFile = path.join(dir, 'postgres.log');
  const fd = fs.openSync(logFile, 'a');
  const proc = spawn(path.join(PG_BIN, 'postgres'), ['-D', dir, '-p', String(port), '-k', dir, '-c', `listen_addresses=${HOST}`], {
    cwd: dir, stdio: ['ignore', fd, fd], ...(runAs ?? {}),
  });
  fs.closeSync(fd);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let alive = true;
  void exited.then(() => { alive = false; });
  own({
    name: 'postgres',
    pid: () => (alive ? proc.pid : undefined),
    stop: async () => {
      if (!alive) return;
      proc.kill('SIGINT'); // fast shutdown
      await exited;
      await fsp.rm(dir, { recursive: true, force: true });
    },
    kill: () => { if (alive) proc.kill('SIGKILL'); },
  }, exited);
  await waitFor('postgres to accept connections', async () => {
    if (!alive) throw new Error(`postgres exited: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
    const c = new pg.Client({ host: HOST, port, user: 'logd', database: 'postgres' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('CREATE DATABASE logd');
      return true;
    } finally {
      await c.end().catch(() => undefined);
    }
  }, 30_000, 100);
  const pool = new pg.Pool({ host: HOST, port, user: 'logd', database: 'logd', max: 3 });
  pool.on('error', () => undefined);
  return { port, dir, pid: proc.pid!, pool, env: { POSTGRES_HOST: HOST, POSTGRES_PORT: String(port), POSTGRES_USER: 'logd', POSTGRES_DB: 'logd' } };
}

// ---------------------------------------------------------------------------
// where the data lives

/** statfs(2) f_type values, from linux/magic.h. */
const FS_TYPES = new Map<number, string>([
  [0x01021994, 'tmpfs'], [0xef53, 'ext2/3/4'], [0x58465342, 'xfs'], [0x9123683e, 'btrfs'], [0x794c7630, 'overlayfs'], [0x6969, 'nfs'],
]);

const fsTypeOf = (dir: string): string => {
  const t = fs.statfsSync(dir).type;
  return FS_TYPES.get(t) ?? `a filesystem of type 0x${t.toString(16)}`;
};

export interface Storage {
  postgres: { dataDirectory: string; fs: string; fsync: string; synchronousCommit: string };
  redis: { aofDirectory: string; fs: string; appendonly: string; appendfsync: string };
}

/** Where PostgreSQL and Redis keep their data and how they flush it, as the running servers report it. */
export async function storage(redis: Redis, pool: pg.Pool): Promise<Storage> {
  const show = async (name: string): Promise<string> => (await pool.query<Record<string, string>>(`SHOW ${name}`)).rows[0][name];
  const conf = async (name: string): Promise<string> => ((await redis.config('GET', name)) as string[])[1];
  const dataDirectory = await show('data_directory');
  const aofDirectory = path.join(await conf('dir'), await conf('appenddirname'));
  return {
    postgres: { dataDirectory, fs: fsTypeOf(dataDirectory), fsync: await show('fsync'), synchronousCommit: await show('synchronous_commit') },
    redis: { aofDirectory, fs: fsTypeOf(aofDirectory), appendonly: await conf('appendonly'), appendfsync: await conf('appendfsync') },
  };
}

// ---------------------------------------------------------------------------
// logd

/** The options of the tree under test that the bench's figures are judged against. */
export interface LogdConfig {
  /** queue.max_backlog, logs */
  maxBacklog: number;
  /** persister.batch_max_rows, rows */
  batchRows: number;
  /** server.workers once resolved (0 = the CPU count) */
  workers: number;
}

interface ConfigModule {
  loadConfig(file: string | undefined, env: NodeJS.ProcessEnv, flags: { port?: number; workers?: number }): {
    queue: { max_backlog: number };
    persister: { batch_max_rows: number };
    server: { workers: number };
  };
}

/**
 * The configuration `logd serve` will load, read by the tree's own
 * loadConfig with the same file (LOGD_CONFIG), environment and flags. Throws
 * when it cannot be read: the targets are judged against these values.
 */
export function logdConfig(root: string, env: NodeJS.ProcessEnv, flags: { port?: number; workers?: number }): LogdConfig {
  const file = path.join(root, 'dist', 'src', 'config.js');
  let c: ReturnType<ConfigModule['loadConfig']>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    c = (require(file) as ConfigModule).loadConfig(env.LOGD_CONFIG, env, flags);
  } catch (err) {
    throw new Error(`cannot read the configuration of the logd under test with ${file}: ${(err as Error).message}`, { cause: err });
  }
  const out = { maxBacklog: c.queue?.max_backlog, batchRows: c.persister?.batch_max_rows, workers: c.server?.workers };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`the configuration of the logd under test (${file}) has no usable ${k}: ${String(v)}`);
  }
  return out;
}

export interface Logd {
  port: number;
  url: string;
  pid: number;
  /** the options it was started with */
  config: LogdConfig;
  output(): string;
  /** how long the last stop() took (SIGTERM to exit), and the exit code */
  stopped(): { seconds?: number; code: number | null | undefined };
  /** warnings, errors and non-JSON lines it printed, counted by message */
  events(): Map<string, number>;
  /** pids and titles of its children */
  children(): { pid: number; role: string }[];
  stop(): Promise<number | null>;
}

export async function startLogd(root: string, redis: RedisServer, pgs: Pg, opts: { env?: Record<string, string>; workers?: number; nodeArgs?: string[] } = {}): Promise<Logd> {
  const port = await freePort();
  // node:cluster forks the children with the primary's execArgv: --cpu-prof reaches them too.
  const args = [...(opts.nodeArgs ?? []), path.join(root, 'dist', 'bin', 'logd.js'), 'serve', '--port', String(port), ...(opts.workers ? ['--workers', String(opts.workers)] : [])];
  const env = {
    ...process.env,
    REDIS_HOST: HOST, REDIS_PORT: String(redis.port), ...pgs.env,
    LOGD_LOG_LEVEL: 'warn', LOGD_SERVER_HOST: HOST, LOGD_AUTH_MODE: 'open', LOGD_SERVER_ALLOW_ROOT: 'true',
    ...opts.env,
  };
  const config = logdConfig(root, env, { port, workers: opts.workers });
  const cwd = await fsp.mkdtemp(path.join(os.tmpdir(), 'logd-bench-cwd-'));
  const proc = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let partial = '';
  const events = new Map<string, number>();
  // logd logs JSON lines (pino): count warnings and errors by message, and any non-JSON line
  const keep = (d: Buffer): void => {
    const text = d.toString();
    out = (out + text).slice(-200_000);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      let key: string | undefined;
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string; role?: string; code?: string };
        if ((j.level ?? 0) >= 40) key = `${j.level === 40 ? 'warn' : j.level === 50 ? 'error' : 'fatal'} (${j.role ?? '?'}): ${j.msg ?? ''}${j.code ? ` [${j.code}]` : ''}`;
      } catch {
        key = `output: ${line.slice(0, 160)}`;
      }
      if (key) events.set(key, (events.get(key) ?? 0) + 1);
    }
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let code: number | null | undefined;
  let stopSeconds: number | undefined;
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => { code = c; r(c); }));
  const stop = async (): Promise<number | null> => {
    const t0 = Date.now();
    if (code === undefined) proc.kill('SIGTERM');
    const c = await exited;
    stopSeconds = (Date.now() - t0) / 1000;
    await fsp.rm(cwd, { recursive: true, force: true });
    return c;
  };
  own({ name: 'logd', pid: () => (code === undefined ? proc.pid : undefined), stop: async () => { await stop(); }, kill: () => { if (code === undefined) proc.kill('SIGKILL'); } }, exited);
  const url = `http://${HOST}:${port}`;
  const children = (): { pid: number; role: string }[] => {
    const ps = execFileSync('ps', ['-o', 'pid=,ppid=,args=', '-e']).toString();
    return ps.split('\n').map((l) => l.trim().match(/^(\d+)\s+(\d+)\s+(.*)$/))
      .filter((m): m is RegExpMatchArray => !!m && Number(m[2]) === proc.pid)
      .map((m) => ({ pid: Number(m[1]), role: m[3].trim() }));
  };
  await waitFor('logd to answer /health with 200', async () => {
    if (code !== undefined) throw new Error(`logd exited with ${code}:\n${out}`);
    const res = await fetch(`${url}/health`).catch(() => undefined);
    return res?.status === 200 && children().filter((c) => c.role === 'logd: http').length === config.workers;
  }, 60_000, 100);
  return { port, url, pid: proc.pid!, config, output: () => out, events: () => events, stopped: () => ({ seconds: stopSeconds, code }), children, stop };
}

// ---------------------------------------------------------------------------
// nginx

export interface Nginx {
  port: number;
  url: string;
  pid: number;
  conf: string;
}

export async function startNginx(root: string, upstream: string, rate: string): Promise<Nginx> {
  const port = await freePort();
  const prefix = await fsp.mkdtemp(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'logd-bench-nginx-'));
  await fsp.chmod(prefix, 0o755);
  await fsp.mkdir(path.join(prefix, 'logs'), { mode: 0o755 });
  const conf = path.join(prefix, 'nginx.conf');
  const { stdout } = await execFileP('bash', [path.join(root, 'scripts', 'render-nginx.sh'), '--listen', `${HOST}:${port}`, '--rate', rate, upstream]);
  await fsp.writeFile(conf, stdout);
  const fd = fs.openSync(path.join(prefix, 'logs', 'nginx.out'), 'a');
  const proc = spawn('/usr/sbin/nginx', ['-p', `${prefix}/`, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  let alive = true;
  const exited = new Promise<void>((r) => proc.once('exit', () => { alive = false; r(); }));
  own({
    name: 'nginx',
    pid: () => (alive ? proc.pid : undefined),
    stop: async () => {
      if (alive) proc.kill('SIGTERM');
      await exited;
      await fsp.rm(prefix, { recursive: true, force: true });
    },
    kill: () => { if (alive) proc.kill('SIGKILL'); },
  }, exited);
  const url = `http://${HOST}:${port}`;
  await waitFor('nginx to answer /health', async () => {
    if (!alive) throw new Error(`nginx exited: ${fs.readFileSync(path.join(prefix, 'logs', 'error.log'), 'utf8').slice(-2000)}`);
    return (await fetch(`${url}/health`).catch(() => undefined))?.status === 200;
  }, 20_000, 100);
  return { port, url, pid: proc.pid!, conf };
}

// ---------------------------------------------------------------------------
// a bench child process (wrk, redis-benchmark), registered while it runs

export function runOwned(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d) => { stdout += d; });
    proc.stderr!.on('data', (d) => { stderr += d; });
    let alive = true;
    const entry: Owned = {
      name: path.basename(cmd),
      pid: () => (alive ? proc.pid : undefined),
      stop: async () => { if (alive) proc.kill('SIGTERM'); },
      kill: () => { if (alive) proc.kill('SIGKILL'); },
    };
    const gone = new Promise<void>((r) => proc.once('exit', () => r()));
    own(entry, gone);
    proc.once('error', reject);
    proc.once('exit', (code) => {
      alive = false;
      const i = owned.indexOf(entry);
      if (i >= 0) owned.splice(i, 1);
      resolve({ code, stdout, stderr, pid: proc.pid! });
    });
  });
}

/** A plain client on the bench's Redis. */
export function redisClient(r: RedisServer): Redis {
  const c = new Redis({ host: HOST, port: r.port, lazyConnect: false, maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  return c;
}
