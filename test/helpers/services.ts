/**
 * Private, real Redis and PostgreSQL servers for tests (never mocks).
 *
 * Every server gets its own free port on 127.0.0.1 and its own directory
 * under /dev/shm (or os.tmpdir(), see scratchRoot()); its stdout/stderr go to
 * a log file in that directory, and the tail of that log is put into startup
 * errors. Children are unref'd so a test
 * that forgets to stop a server does not hang: on process exit they are
 * SIGKILLed, and a tiny shell watchdog kills them even if this process itself
 * is SIGKILLed (which is how tap ends a test file that times out).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';

const execFileP = promisify(execFile);

const HOST = '127.0.0.1' as const;
const REDIS_BIN = '/usr/bin/redis-server';
const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
const PG_USER = 'logd';
const TMPFS_MAGIC = 0x01021994;

/**
 * Where server dirs and the postgres template live. Creating files on this
 * VM's ext4 /tmp was measured at ~1 ms each (copying the 966-file template:
 * 0.6-1 s) against ~50 ms for the whole copy on tmpfs, so a roomy writable
 * tmpfs /dev/shm is preferred over os.tmpdir(). LOGD_TEST_TMPDIR overrides.
 */
function scratchRoot(): string {
  const override = process.env.LOGD_TEST_TMPDIR;
  if (override) return override;
  try {
    const st = fs.statfsSync('/dev/shm');
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    if (st.type === TMPFS_MAGIC && st.bavail * st.bsize >= 2 * 1024 ** 3) return '/dev/shm';
  } catch {
    // no usable /dev/shm
  }
  return os.tmpdir();
}
const SCRATCH = scratchRoot();

/** initdb output cached once per boot (both candidate roots are emptied on reboot) and copied per server. */
const PG_TEMPLATE = path.join(SCRATCH, 'logd-pg-template-15');
const STARTUP_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 15_000;
/** Set LOGD_TEST_KEEP_DIRS=1 to keep server directories (data + logs) after cleanupAll(). */
const KEEP_DIRS = process.env.LOGD_TEST_KEEP_DIRS === '1';

// ---------------------------------------------------------------------------
// small utilities

/** Binds 127.0.0.1:0 to let the kernel pick an unused port, then releases it. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read a free port'))));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

type Falsy = undefined | null | false;

/** Resolves fn() but gives up (resolving `undefined`) after ms, so a hung check cannot outlive the deadline. */
async function withinMs<T>(ms: number, fn: () => Promise<T> | T): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(ms, 0));
  });
  try {
    return await Promise.race([Promise.resolve().then(fn), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * waitFor plus an `abort` check, used by the launchers to fail fast when the
 * server process has already exited instead of polling until the deadline.
 */
async function poll<T>(
  what: string,
  fn: () => Promise<T | Falsy> | T | Falsy,
  timeoutMs: number,
  intervalMs: number,
  abort?: () => Error | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const fatal = abort?.();
    if (fatal) throw fatal;
    try {
      const value = await withinMs(deadline - Date.now(), fn);
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const last = lastError === undefined ? '' : ` (last error: ${errorText(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last}`, { cause: lastError });
    }
    await sleep(Math.min(intervalMs, Math.max(deadline - Date.now(), 0)));
  }
}

/**
 * Polls fn until it returns something truthy and resolves with that value.
 * Errors thrown by fn count as "not yet"; the last one is quoted in the
 * timeout error: `timed out after ${timeoutMs} ms waiting for ${what} (last error: ...)`.
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | Falsy> | T | Falsy,
  timeoutMs = 15000,
  intervalMs = 25,
): Promise<T> {
  return poll(what, fn, timeoutMs, intervalMs);
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

/** Last lines of a server log written after byte `from` (i.e. by the current run), for error messages. */
function logTail(logFile: string, from = 0, maxBytes = 4096, maxLines = 30): string {
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const start = Math.max(from, size - maxBytes, 0);
      const buf = Buffer.alloc(size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      return buf.toString('utf8').split('\n').slice(-maxLines).join('\n').trimEnd();
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    return `(no log: ${errorText(err)})`;
  }
}

// ---------------------------------------------------------------------------
// child process bookkeeping

/** Processes still running; SIGKILLed on exit so a failing test never leaves servers behind. */
const liveProcesses = new Set<ServerProcess>();
process.on('exit', () => {
  for (const p of liveProcesses) p.signal('SIGKILL');
});

/**
 * The 'exit' handler does not run when this process is SIGKILLed (tap does
 * that to a test file that times out). A detached shell keeps the list of live
 * server pids fed through its stdin; when the pipe closes because we died, it
 * SIGKILLs whatever is still listed. Servers that exited are removed ("- pid")
 * so a recycled pid is never hit.
 */
const WATCHDOG_SCRIPT = `
set -f
live=""
while read -r op pid; do
  if [ "$op" = "+" ]; then live="$live $pid"; else
    next=""; for p in $live; do [ "$p" = "$pid" ] || next="$next $p"; done; live=$next
  fi
done
[ -z "$live" ] || kill -KILL $live 2>/dev/null
exit 0
`;
let watchdog: ChildProcess | undefined;

function tellWatchdog(op: '+' | '-', pid: number): void {
  if (!watchdog && op === '+') watchdog = startWatchdog();
  watchdog?.stdin?.write(`${op} ${pid}\n`);
}

function startWatchdog(): ChildProcess {
  const wd = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  wd.on('error', () => undefined); // no /bin/sh: lose only the SIGKILL safety net
  wd.on('exit', () => {
    if (watchdog === wd) watchdog = undefined;
  });
  wd.stdin.on('error', () => undefined); // EPIPE if it died; nothing useful to do
  // Neither the watchdog nor its pipe may keep the test process alive.
  wd.unref();
  if (wd.stdin instanceof net.Socket) wd.stdin.unref();
  return wd;
}

function stopWatchdog(): void {
  watchdog?.stdin?.end(); // EOF with an empty list: it exits without killing anything
  watchdog = undefined;
}

interface RunAs {
  uid: number;
  gid: number;
}

interface SpawnSpec {
  name: string;
  cmd: string;
  args: string[];
  cwd: string;
  logFile: string;
  runAs?: RunAs;
}

/** One server process: output appended to spec.logFile, exit observable, pid watched. */
class ServerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** undefined while running, else how it ended (for error messages). */
  exitReason: string | undefined;
  /** Last signal sent; a running process with one set is on its way out (or stopped by SIGSTOP). */
  signalled: NodeJS.Signals | undefined;
  /** Where this run's output starts in the (appended-to) log file. */
  readonly logOffset: number;

  constructor(readonly spec: SpawnSpec) {
    this.logOffset = fs.existsSync(spec.logFile) ? fs.statSync(spec.logFile).size : 0;
    const cmdline = [spec.cmd, ...spec.args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`));
    fs.appendFileSync(spec.logFile, `\n--- ${new Date().toISOString()} test helper starting: ${cmdline.join(' ')}\n`);
    // A file descriptor rather than pipes: output survives us, and no pipe keeps the event loop alive.
    const fd = fs.openSync(spec.logFile, 'a');
    try {
      this.child = spawn(spec.cmd, spec.args, {
        cwd: spec.cwd,
        stdio: ['ignore', fd, fd],
        ...(spec.runAs ? { uid: spec.runAs.uid, gid: spec.runAs.gid } : {}),
      });
    } finally {
      fs.closeSync(fd);
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.onGone(signal ? `killed by ${signal}` : `exited with code ${code}`);
        resolve();
      });
      this.child.once('error', (err) => {
        // 'error' without a pid means spawn failed and no 'exit' will follow.
        if (this.child.pid === undefined) {
          this.onGone(`could not be spawned: ${err.message}`);
          resolve();
        }
      });
    });
    this.child.unref();
    liveProcesses.add(this);
    if (this.child.pid !== undefined) tellWatchdog('+', this.child.pid);
  }

  get running(): boolean {
    return this.exitReason === undefined;
  }

  get pid(): number | undefined {
    return this.running ? this.child.pid : undefined;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    this.signalled = sig;
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** Sends `sig`, escalates to SIGKILL after graceMs, resolves once the process has exited. */
  async stop(sig: NodeJS.Signals, graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.running) return;
    this.child.ref(); // an unref'd child would let node exit while we await its exit
    this.signal(sig);
    const escalate = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(escalate);
    }
  }

  private onGone(reason: string): void {
    if (!this.running) return;
    this.exitReason = reason;
    liveProcesses.delete(this);
    if (this.child.pid !== undefined) tellWatchdog('-', this.child.pid);
  }
}

/** Thrown when a server did not come up; `addressInUse` lets callers retry on another port. */
class StartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Spawns a server and waits until `ready()` holds; on failure kills it and throws with the log tail. */
async function launch(spec: SpawnSpec, ready: () => Promise<boolean>): Promise<ServerProcess> {
  const proc = new ServerProcess(spec);
  try {
    await poll(spec.name, ready, STARTUP_TIMEOUT_MS, 25, () =>
      proc.running ? undefined : new Error(`${spec.name} ${proc.exitReason}`),
    );
    return proc;
  } catch (err) {
    await proc.stop('SIGKILL');
    const tail = logTail(spec.logFile, proc.logOffset);
    throw new StartError(
      `${spec.name} failed to start: ${errorText(err)}\n--- tail of ${spec.logFile} ---\n${tail}`,
      /address already in use/i.test(tail),
      { cause: err },
    );
  }
}

/** Picks a free port and calls start(port); retries with a new port if another process grabbed it meanwhile. */
async function onFreePort<T>(start: (port: number) => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (!(err instanceof StartError && err.addressInUse) || i >= attempts) throw err;
    }
  }
}

/** Lifecycle shared by both kinds of server: one process at a time, always on the same port and dir. */
abstract class Server {
  readonly host = HOST;
  private proc: ServerProcess | undefined;

  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  protected abstract readonly stopSignal: NodeJS.Signals;
  protected abstract spawnSpec(): SpawnSpec;
  /** Resolves true once clients can use the server; throwing means "not yet". */
  protected abstract ready(): Promise<boolean>;

  async start(): Promise<void> {
    const old = this.proc;
    if (old?.running) {
      if (!old.signalled) return; // already up
      // After kill() the old process must be gone before the new one binds the port (and, for
      // postgres, checks the pid file and shared memory).
      await withinMs(STOP_GRACE_MS, () => old.exited);
      if (old.running) throw new Error(`${old.spec.name} still runs after kill(${old.signalled}): stop() it first`);
    }
    const deadline = Date.now() + STOP_GRACE_MS;
    for (;;) {
      try {
        this.proc = await launch(this.spawnSpec(), () => this.ready());
        return;
      } catch (err) {
        // after a SIGKILL, postgres' backends outlive the postmaster for a moment and still hold its shared memory
        if (!old?.signalled || Date.now() >= deadline || !/pre-existing shared memory block/.test(String((err as Error).message))) throw err;
        await sleep(100);
      }
    }
  }

  async stop(): Promise<void> {
    await this.proc?.stop(this.stopSignal);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.proc?.signal(signal);
  }

  pid(): number | undefined {
    return this.proc?.pid;
  }
}

async function requireBinary(file: string, pkg: string): Promise<void> {
  try {
    await fsp.access(file, fs.constants.X_OK);
  } catch {
    throw new Error(`${file} not found or not executable: install the Debian package "${pkg}" (apt-get install -y ${pkg})`);
  }
}

/** Everything started by this process, for cleanupAll(). */
interface Managed {
  dir: string;
  stop(): Promise<void>;
}
const servers = new Set<Managed>();

/** Stops every server started by this process and removes their directories (unless LOGD_TEST_KEEP_DIRS=1). */
export async function cleanupAll(): Promise<void> {
  const all = [...servers];
  servers.clear();
  const results = await Promise.allSettled(all.map((s) => s.stop()));
  if (!KEEP_DIRS) {
    await Promise.all(all.map((s) => fsp.rm(s.dir, { recursive: true, force: true }).catch(() => undefined)));
  }
  if (liveProcesses.size === 0) stopWatchdog();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

// ---------------------------------------------------------------------------
// Redis

export interface RedisServer {
  port: number;
  host: '127.0.0.1';
  dir: string;
  /** redis://127.0.0.1:port */
  url: string;
  /** SIGTERM, then waits for exit; the AOF keeps the data. */
  stop(): Promise<void>;
  /** Starts again on the same port and dir (data reloaded from the AOF). */
  start(): Promise<void>;
  /** Sends a signal (default SIGKILL) without waiting. */
  kill(signal?: NodeJS.Signals): void;
  pid(): number | undefined;
}

export interface RedisOptions {
  appendfsync?: 'always' | 'everysec';
  /** Appended after the defaults, so they can override them (e.g. ['--maxmemory', '10mb']). */
  extraArgs?: string[];
}

/** Answers once the server replies +PONG (not -LOADING while it replays the AOF). */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port });
    let reply = '';
    const finish = (err?: Error): void => {
      sock.destroy();
      if (err) reject(err);
      else resolve(true);
    };
    sock.setTimeout(1000, () => finish(new Error('PING timed out')));
    sock.once('error', (err) => finish(err));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (!reply.includes('\r\n')) return;
      finish(reply.startsWith('+PONG') ? undefined : new Error(`PING answered ${reply.trim()}`));
    });
  });
}

class RedisInstance extends Server implements RedisServer {
  readonly url: string;
  protected readonly stopSignal = 'SIGTERM'; // redis flushes the AOF and exits

  constructor(
    port: number,
    dir: string,
    private readonly args: string[],
  ) {
    super(port, dir);
    this.url = `redis://${HOST}:${port}`;
  }

  protected spawnSpec(): SpawnSpec {
    return {
      name: `redis-server on ${HOST}:${this.port}`,
      cmd: REDIS_BIN,
      args: ['--port', String(this.port), '--dir', this.dir, ...this.args],
      cwd: this.dir,
      logFile: path.join(this.dir, 'redis.log'),
    };
  }

  protected ready(): Promise<boolean> {
    return redisPing(this.port);
  }
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  await requireBinary(REDIS_BIN, 'redis-server');
  const args = [
    '--bind', HOST,
    '--appendonly', 'yes',
    '--appendfsync', opts.appendfsync ?? 'everysec',
    '--save', '', // no RDB snapshots: the AOF alone persists
    '--maxmemory-policy', 'noeviction',
    '--daemonize', 'no',
    '--protected-mode', 'no',
    ...(opts.extraArgs ?? []),
  ];
  const dir = await fsp.mkdtemp(path.join(SCRATCH, 'logd-redis-'));
  // On failure the dir is kept on purpose: the error names its log file.
  const server = await onFreePort(async (port) => {
    const s = new RedisInstance(port, dir, args);
    await s.start();
    return s;
  });
  servers.add(server);
  return server;
}

// ---------------------------------------------------------------------------
// PostgreSQL

export interface PostgresServer {
  port: number;
  host: '127.0.0.1';
  /** The data directory (also holds postgres.log). */
  dir: string;
  user: string;
  database: string;
  /** postgres://user@127.0.0.1:port/database */
  url: string;
  /** POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_DB */
  env: Record<string, string>;
  /** SIGINT (fast shutdown), then waits for exit. */
  stop(): Promise<void>;
  /** Starts again on the same port and dir. */
  start(): Promise<void>;
  /** Sends a signal (default SIGKILL) to the postmaster without waiting. */
  kill(signal?: NodeJS.Signals): void;
  /** The postmaster's pid; undefined once it has exited. */
  pid(): number | undefined;
  /** Creates another database on this server; resolves with its URL. */
  createDatabase(name: string): Promise<string>;
  /** Runs one statement on `database` with a one-shot client and returns the rows. */
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
}

export interface PostgresOptions {
  /** Database created on first start; default 'logd'. */
  database?: string;
  /**
   * fsync, synchronous_commit and full_page_writes on (PostgreSQL's defaults), for tests that stop the
   * server in immediate mode, which is a crash to PostgreSQL: with synchronous_commit off a COMMIT
   * returns before its WAL reaches the disk, and a crash can lose it
   * (https://www.postgresql.org/docs/15/wal-async-commit.html).
   */
  durable?: boolean;
}

const pgBin = (name: string): string => path.join(PG_BIN_DIR, name);

/**
 * PostgreSQL refuses to run as root, so as root initdb/postgres run as the
 * `postgres` user. spawn()'s uid/gid is used rather than `runuser`, so the
 * pid we hold (and signal, and SIGKILL on exit) is the postmaster itself and
 * not a wrapper that could outlive it.
 */
let runAsCache: Promise<RunAs | undefined> | undefined;
function postgresRunAs(): Promise<RunAs | undefined> {
  runAsCache ??= (async () => {
    if (process.getuid?.() !== 0) return undefined;
    try {
      const uid = Number((await execFileP('id', ['-u', 'postgres'])).stdout.trim());
      const gid = Number((await execFileP('id', ['-g', 'postgres'])).stdout.trim());
      return { uid, gid };
    } catch (err) {
      throw new Error(`running as root but there is no "postgres" user (install the Debian package "postgresql"): ${errorText(err)}`);
    }
  })();
  return runAsCache;
}

/**
 * Gives a directory made by mkdtemp to the postgres user when we are root
 * (its contents come from initdb or `cp -a`, which already keeps ownership);
 * postgres insists on mode 0700.
 */
async function givePostgres(dir: string, runAs: RunAs | undefined): Promise<void> {
  if (runAs) await fsp.chown(dir, runAs.uid, runAs.gid);
  await fsp.chmod(dir, 0o700);
}

/** C.UTF-8 keeps the cluster UTF-8 and locale-independent; plain C where it is not installed. */
async function pgLocale(): Promise<string> {
  try {
    const { stdout } = await execFileP('locale', ['-a']);
    return /^c\.utf-?8$/im.test(stdout) ? 'C.UTF-8' : 'C';
  } catch {
    return 'C';
  }
}

async function initdb(dir: string, runAs: RunAs | undefined): Promise<void> {
  const args = ['-D', dir, '-U', PG_USER, '-A', 'trust', '--no-sync', '-E', 'UTF8', `--locale=${await pgLocale()}`, '--no-instructions'];
  try {
    await execFileP(pgBin('initdb'), args, { cwd: os.tmpdir(), ...(runAs ?? {}) });
  } catch (err) {
    const out = err instanceof Error && 'stderr' in err ? String(err.stderr) : '';
    throw new Error(`initdb ${args.join(' ')} failed: ${errorText(err)}\n${out}`, { cause: err });
  }
}

const isCluster = (dir: string): Promise<boolean> => exists(path.join(dir, 'PG_VERSION'));

/**
 * Returns the template cluster, building it if this is the first use since
 * boot. Correctness comes from the atomic rename (a half-built template is
 * never visible under PG_TEMPLATE, and a losing builder just discards its
 * copy); the lock file only keeps concurrent test processes from all running
 * initdb at once. A lock left by a dead process is ignored.
 */
async function pgTemplate(runAs: RunAs | undefined): Promise<string> {
  const lockFile = `${PG_TEMPLATE}.lock`;
  while (!(await isCluster(PG_TEMPLATE))) {
    const release = await tryLock(lockFile);
    if (release) {
      try {
        if (!(await isCluster(PG_TEMPLATE))) await buildTemplate(runAs);
      } finally {
        await release();
      }
    } else {
      await waitFor('the PostgreSQL template cluster built by another process', async () =>
        (await isCluster(PG_TEMPLATE)) || !(await lockHolderAlive(lockFile)), 120_000, 50);
    }
  }
  return PG_TEMPLATE;
}

async function buildTemplate(runAs: RunAs | undefined): Promise<void> {
  const build = await fsp.mkdtemp(`${PG_TEMPLATE}.build-`);
  try {
    await givePostgres(build, runAs);
    await initdb(build, runAs);
    await fsp.rename(build, PG_TEMPLATE);
  } catch (err) {
    if (!(await isCluster(PG_TEMPLATE))) throw err; // else someone else published first: fine
  } finally {
    await fsp.rm(build, { recursive: true, force: true });
  }
}

/** Creates the lock file exclusively; returns its release function, or undefined if held. */
async function tryLock(lockFile: string): Promise<(() => Promise<void>) | undefined> {
  try {
    await fsp.writeFile(lockFile, String(process.pid), { flag: 'wx' });
    return () => fsp.rm(lockFile, { force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!(await lockHolderAlive(lockFile))) await fsp.rm(lockFile, { force: true });
    return undefined;
  }
}

async function lockHolderAlive(lockFile: string): Promise<boolean> {
  let pid: number;
  try {
    pid = Number(await fsp.readFile(lockFile, 'utf8'));
  } catch {
    return false; // released meanwhile
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A fresh data directory: a copy of the template (cp -a keeps the postgres ownership). */
async function newDataDir(runAs: RunAs | undefined): Promise<string> {
  const template = await pgTemplate(runAs);
  const dir = await fsp.mkdtemp(path.join(SCRATCH, 'logd-pg-'));
  try {
    await execFileP('cp', ['-a', `${template}/.`, dir]);
    await givePostgres(dir, runAs);
    return dir;
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** Runs fn with a connected one-shot client and always closes it. */
async function withClient<T>(port: number, database: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ host: HOST, port, user: PG_USER, database, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined); // the server going away under an idle client must not crash the test
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

class PostgresInstance extends Server implements PostgresServer {
  readonly user = PG_USER;
  readonly url: string;
  readonly env: Record<string, string>;
  protected readonly stopSignal = 'SIGINT'; // fast shutdown: disconnects clients instead of waiting for them

  constructor(
    port: number,
    dir: string,
    readonly database: string,
    private readonly runAs: RunAs | undefined,
    private readonly durable: boolean,
  ) {
    super(port, dir);
    this.url = this.urlFor(database);
    this.env = {
      POSTGRES_HOST: HOST,
      POSTGRES_PORT: String(port),
      POSTGRES_USER: PG_USER,
      POSTGRES_DB: database,
    };
  }

  protected spawnSpec(): SpawnSpec {
    return {
      name: `postgres on ${HOST}:${this.port}`,
      cmd: pgBin('postgres'),
      args: ['-D', this.dir, '-p', String(this.port), '-k', this.dir, '-c', `listen_addresses=${HOST}`,
        // Durability against OS crashes is irrelevant for most tests; skipping fsync makes commits and shutdown fast.
        ...(this.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
        // Dynamic shared memory as files in the data dir rather than /dev/shm/PostgreSQL.*, which a
        // SIGKILLed postmaster would leave behind; removing the dir removes them.
        '-c', 'dynamic_shared_memory_type=mmap'],
      cwd: this.dir,
      logFile: path.join(this.dir, 'postgres.log'),
      runAs: this.runAs,
    };
  }

  /** Ready = a client can log in and run a statement (not just "the port is open"). */
  protected async ready(): Promise<boolean> {
    await withClient(this.port, 'postgres', (c) => c.query('SELECT 1'));
    return true;
  }

  async createDatabase(name: string): Promise<string> {
    await withClient(this.port, 'postgres', (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}`));
    return this.urlFor(name);
  }

  async query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]> {
    const result = await withClient(this.port, this.database, (c) => c.query(sql, params));
    return result.rows as R[];
  }

  private urlFor(database: string): string {
    return `postgres://${PG_USER}@${HOST}:${this.port}/${encodeURIComponent(database)}`;
  }
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresServer> {
  await requireBinary(pgBin('postgres'), 'postgresql');
  await requireBinary(pgBin('initdb'), 'postgresql');
  const database = opts.database ?? 'logd';
  const runAs = await postgresRunAs();
  const dir = await newDataDir(runAs);
  let server: PostgresInstance | undefined;
  try {
    server = await onFreePort(async (port) => {
      const s = new PostgresInstance(port, dir, database, runAs, opts.durable ?? false);
      await s.start();
      return s;
    });
    if (database !== 'postgres') await server.createDatabase(database);
    servers.add(server);
    return server;
  } catch (err) {
    await server?.stop(); // the dir is kept on purpose: the error names its log file
    throw err;
  }
}

/** Sends SIGTERM to `pid` when our end of its stdin closes without "done" having been written first. */
export function killWhenOrphaned(pid: number): ChildProcess {
  const wd = spawn('/bin/sh', ['-c', `read -r line || kill -TERM ${pid} 2>/dev/null`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  wd.on('error', () => undefined);
  wd.stdin!.on('error', () => undefined);
  wd.unref();
  if (wd.stdin instanceof net.Socket) wd.stdin.unref();
  return wd;
}

/** SIGTERM to a child still running, SIGKILL after `graceMs`; resolves once it has exited. */
export async function terminate(proc: ChildProcess, running: boolean, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (!running) return;
  proc.ref();
  proc.kill('SIGTERM');
  const escalate = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(escalate);
}
