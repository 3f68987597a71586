/**
 * The real log shippers of a Debian 12 VM, run as private child processes so
 * tests can check that logd takes what they send: rsyslogd 8.2302 (with
 * omrelp and gtls), syslog-ng 3.38 (with the http module) and
 * systemd-journal-upload 252. Installed by `scripts/bootstrap.sh --test`.
 *
 * Nothing here touches the machine's logging: every daemon gets a directory
 * of the test's (config, pid file, queue/state files, control socket, and
 * its input, a unix datagram socket DIR/log.sock that `feedLines` writes to
 * through `logger`); rsyslog's system socket (/dev/log) is off, and neither
 * daemon reads /etc. Each runs in the foreground as our child, is stopped
 * with SIGTERM (SIGKILL after STOP_GRACE_MS), and a detached shell watchdog
 * sends it SIGTERM if this process dies first (tap SIGKILLs a test file that
 * times out).
 *
 * rsyslog and syslog-ng conflict as Debian packages (both Provide and
 * Conflict system-log-daemon), so bootstrap installs rsyslog with apt and
 * unpacks the syslog-ng-core and syslog-ng-mod-http .debs into
 * SYSLOG_NG_PREFIX (/opt/logd-syslog-ng; LOGD_SYSLOG_NG_PREFIX overrides; a
 * syslog-ng installed as a package is used when that prefix is absent).
 *
 * Configuration comes from docs/collect-vm-logs.md through `snippet()`, so
 * the tests run exactly what the guide tells operators to paste. The guide's
 * blocks hold real-looking example values (see DOC) rather than
 * placeholders; `snippet(name, vars)` replaces each key of `vars` (a literal
 * string of the guide, e.g. DOC.host) by its value, and throws when the
 * block does not contain that literal, so a changed guide breaks the test
 * instead of silently testing something else.
 *
 *   const dir = await makeShipperDir('rsyslog');
 *   const rs = await startRsyslog(dir, snippet('rsyslog-tcp', { [DOC.host]: '127.0.0.1', [DOC.tcpPort]: String(port) }));
 *   await rs.feedLines(['one', 'two'], { tag: 'app', pid: 42, priority: 'daemon.warning' });
 *   ...
 *   await rs.stop();
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { killWhenOrphaned, terminate } from './services';

const ROOT = path.resolve(__dirname, '..', '..');
export const GUIDE = path.join(ROOT, 'docs', 'collect-vm-logs.md');

export const RSYSLOGD = '/usr/sbin/rsyslogd';
export const LOGGER = '/usr/bin/logger';
export const JOURNAL_REMOTE = '/lib/systemd/systemd-journal-remote';
export const JOURNAL_UPLOAD = '/lib/systemd/systemd-journal-upload';
/** Where bootstrap unpacks syslog-ng ("/" = the system's). */
export const SYSLOG_NG_PREFIX = process.env.LOGD_SYSLOG_NG_PREFIX
  ?? (fs.existsSync('/opt/logd-syslog-ng/usr/sbin/syslog-ng') ? '/opt/logd-syslog-ng' : '/');
export const SYSLOG_NG = path.join(SYSLOG_NG_PREFIX, 'usr/sbin/syslog-ng');
const SYSLOG_NG_LIBDIR = path.join(SYSLOG_NG_PREFIX, 'usr/lib/syslog-ng');

const STOP_GRACE_MS = 15_000;
const START_TIMEOUT_MS = 20_000;

/** The example values of docs/collect-vm-logs.md, the keys to give snippet(). */
export const DOC = {
  host: 'logd.example.com',
  /** [syslog] tcp_port */
  tcpPort: '5140',
  /** [syslog] udp_port (same number as TCP in the guide) */
  udpPort: '5140',
  /** [syslog] tls_port */
  tlsPort: '6514',
  /** [syslog] relp_port */
  relpPort: '2514',
  /** logd's HTTP port */
  httpPort: '8000',
  /** nginx's HTTPS port (journal-upload-tls) */
  httpsPort: '443',
  /** the bearer token of syslog-ng-http */
  token: 'YOUR_LOGD_TOKEN',
  /** CA file of rsyslog-tls and syslog-ng-tls */
  caFile: '/etc/ssl/certs/logd-ca.pem',
  /** disk-buffer dir() of syslog-ng-tcp and syslog-ng-tls: replace with a private directory */
  syslogNgDir: '/var/lib/syslog-ng',
  /** journal-upload-tls: client key, client certificate, CA */
  uploadKey: '/etc/systemd/journal-upload/client.key',
  uploadCert: '/etc/systemd/journal-upload/client.crt',
  uploadTrust: '/etc/systemd/journal-upload/logd-ca.pem',
} as const;

/** What `scripts/bootstrap.sh --test` should have installed and is not there (empty when all is). */
export function missingShippers(): string[] {
  const missing: string[] = [];
  const libGlob = (dir: string, file: string): boolean => {
    for (const base of ['/usr/lib', '/lib']) {
      let subdirs: string[] = [];
      try {
        subdirs = fs.readdirSync(base);
      } catch {
        continue;
      }
      if (subdirs.some((d) => fs.existsSync(path.join(base, d, dir, file)))) return true;
    }
    return false;
  };
  if (!fs.existsSync(RSYSLOGD)) missing.push(RSYSLOGD);
  if (!libGlob('rsyslog', 'omrelp.so')) missing.push('rsyslog omrelp.so (rsyslog-relp)');
  if (!libGlob('rsyslog', 'lmnsd_gtls.so')) missing.push('rsyslog lmnsd_gtls.so (rsyslog-gnutls)');
  if (!fs.existsSync(LOGGER)) missing.push(LOGGER);
  if (!fs.existsSync(SYSLOG_NG)) missing.push(SYSLOG_NG);
  let modules: string[] = [];
  try {
    modules = fs.readdirSync(SYSLOG_NG_LIBDIR).filter((d) => /^\d+\.\d+$/.test(d));
  } catch { /* reported below */ }
  if (!modules.some((v) => fs.existsSync(path.join(SYSLOG_NG_LIBDIR, v, 'libhttp.so')))) missing.push(`${SYSLOG_NG_LIBDIR}/*/libhttp.so (syslog-ng-mod-http)`);
  if (!fs.existsSync(JOURNAL_REMOTE)) missing.push(JOURNAL_REMOTE);
  if (!fs.existsSync(JOURNAL_UPLOAD)) missing.push(JOURNAL_UPLOAD);
  return missing;
}

// ---------------------------------------------------------------------------------------------
// The guide's snippets

interface Block { name: string; text: string }

function guideBlocks(): Block[] {
  const md = fs.readFileSync(GUIDE, 'utf8');
  const out: Block[] = [];
  const marker = /<!--\s*snippet:\s*([\w.-]+)\s*-->\s*\n(`{3,})[^\n]*\n([\s\S]*?)\n\2[ \t]*(?:\n|$)/g;
  for (let m = marker.exec(md); m; m = marker.exec(md)) out.push({ name: m[1], text: `${m[3]}\n` });
  return out;
}

/** The names of the marked blocks of docs/collect-vm-logs.md, in order. */
export function snippetNames(): string[] {
  return guideBlocks().map((b) => b.name);
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The fenced block that follows `<!-- snippet: NAME -->` in the guide (its
 * text, ending with a newline), with every occurrence of each key of `vars`
 * replaced by its value. A key only matches where it is not part of a longer
 * word or number ("5140" does not match in "51400"); keys are applied
 * longest first. Throws when the block is missing or a key is not in it.
 */
export function snippet(name: string, vars: Record<string, string> = {}): string {
  const blocks = guideBlocks().filter((b) => b.name === name);
  if (blocks.length !== 1) {
    throw new Error(`${GUIDE}: ${blocks.length === 0 ? 'no' : blocks.length} block(s) marked <!-- snippet: ${name} --> (have: ${snippetNames().join(', ')})`);
  }
  const keys = Object.keys(vars).sort((a, b) => b.length - a.length);
  // Replace all keys in one pass, so a value cannot be matched by a later key.
  if (keys.length === 0) return blocks[0].text;
  const re = new RegExp(`(?<![\\w])(?:${keys.map(escapeRe).join('|')})(?![\\w])`, 'g');
  const seen = new Set<string>();
  const text = blocks[0].text.replace(re, (hit) => {
    seen.add(hit);
    return vars[hit];
  });
  const absent = keys.filter((k) => !seen.has(k));
  if (absent.length > 0) throw new Error(`snippet ${name} does not contain ${absent.map((k) => JSON.stringify(k)).join(', ')}:\n${blocks[0].text}`);
  return text;
}

// ---------------------------------------------------------------------------------------------
// Processes

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGTERM');
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` every 25 ms until it returns true; throws what `abort` returns, or a timeout error. */
async function pollUntil(what: string, fn: () => boolean, timeoutMs: number, abort: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fatal = abort();
    if (fatal) throw new Error(`${what}: ${fatal}`);
    if (fn()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function tail(text: string, lines = 30): string {
  return text.split('\n').slice(-lines).join('\n').trimEnd();
}

interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs a command to its end (SIGKILL at the deadline), with `input` on its stdin. */
function run(file: string, args: string[], opts: { input?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'buffer', maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL', env: opts.env ?? process.env }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals }) | null;
      if (e && typeof e.code === 'string') return reject(e); // could not start (ENOENT...)
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout: stdout.toString('utf8'),
        stderr: stderr.toString('utf8'),
      });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
  });
}

export interface FeedOptions {
  /** syslog tag (program name), logger's -t; default "logd-test" */
  tag?: string;
  /** the pid written in the message (logger --id=PID); none by default */
  pid?: number;
  /** facility.severity, logger's -p; default "user.notice" */
  priority?: string;
  /** send RFC 5424 (logger --rfc5424) instead of logger's local RFC 3164 format (second-precision timestamps) */
  rfc5424?: boolean;
}

/**
 * Sends each line as one message to the unix datagram socket `socket`, through
 * `logger -u`, and resolves when logger has written them all (not when the
 * daemon has forwarded them). Lines must not contain "\n" (logger would split
 * them); empty lines are skipped by logger.
 */
export async function feedLines(socket: string, lines: string[], opts: FeedOptions = {}): Promise<void> {
  if (lines.some((l) => l.includes('\n'))) throw new Error('feedLines: a line contains "\\n"');
  const longest = Math.max(0, ...lines.map((l) => Buffer.byteLength(l)));
  const args = ['-u', socket, '-d', '--socket-errors=on', '-t', opts.tag ?? 'logd-test', '-p', opts.priority ?? 'user.notice', '--size', String(Math.max(1024, longest + 1))];
  if (opts.pid !== undefined) args.push(`--id=${opts.pid}`);
  if (opts.rfc5424) args.push('--rfc5424');
  const r = await run(LOGGER, args, { input: lines.map((l) => `${l}\n`).join('') });
  if (r.code !== 0) throw new Error(`logger ${args.join(' ')} failed (${r.signal ?? r.code}): ${r.stderr.trim()}`);
}

export interface Shipper {
  /** the daemon's pid */
  pid: number;
  /** the test's directory given to start* */
  dir: string;
  /** the configuration file written there (the fixed preamble + the text given) */
  conf: string;
  /** the unix datagram socket the daemon reads (DIR/log.sock) */
  socket: string;
  /** feedLines(socket, ...) */
  feedLines(lines: string[], opts?: FeedOptions): Promise<void>;
  /** the daemon's own messages so far (rsyslog: DIR/internal.log and its stdout/stderr; syslog-ng: its stderr) */
  log(): string;
  /** whether the process has exited */
  exited(): boolean;
  /** SIGTERM, waits for the exit (SIGKILL after 15 s); keeps the directory (queues survive for a restart) */
  stop(): Promise<void>;
}

/** A fresh private directory (mode 0755) for one daemon; short, for unix socket paths. */
export async function makeShipperDir(name: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `logd-${name}-`));
  await fsp.chmod(dir, 0o755);
  return dir;
}

interface SpawnSpec {
  what: string;
  dir: string;
  conf: string;
  socket: string;
  bin: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  outFile: string;
  log: () => string;
  ready: () => boolean;
}

async function launch(spec: SpawnSpec): Promise<Shipper> {
  const fd = fs.openSync(spec.outFile, 'a');
  let proc: ChildProcess;
  try {
    proc = spawn(spec.bin, spec.args, { stdio: ['ignore', fd, fd], env: spec.env ?? process.env });
  } finally {
    fs.closeSync(fd);
  }
  running.add(proc);
  let exitReason: string | undefined;
  let spawnError: Error | undefined;
  proc.once('error', (err) => {
    spawnError = err;
    exitReason ??= `could not start: ${err.message}`;
  });
  const wd = proc.pid === undefined ? undefined : killWhenOrphaned(proc.pid);
  const exited = new Promise<void>((resolve) => {
    const done = (): void => {
      running.delete(proc);
      wd?.stdin?.end('done\n');
      resolve();
    };
    proc.once('exit', (code, signal) => {
      exitReason = signal ? `killed by ${signal}` : `exited with code ${code}`;
      done();
    });
    proc.once('error', done);
  });
  proc.unref();

  const stop = async (): Promise<void> => {
    await terminate(proc, exitReason === undefined, exited, STOP_GRACE_MS);
  };

  try {
    await pollUntil(`${spec.what} to start`, spec.ready, START_TIMEOUT_MS, () => (exitReason ?? spawnError?.message));
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- ${spec.what} ${spec.args.join(' ')} ---\n${tail(spec.log())}`);
  }
  return {
    pid: proc.pid!,
    dir: spec.dir,
    conf: spec.conf,
    socket: spec.socket,
    feedLines: (lines, opts) => feedLines(spec.socket, lines, opts),
    log: spec.log,
    exited: () => exitReason !== undefined,
    stop,
  };
}

/**
 * The preamble startRsyslog puts before the test's configuration: the work
 * directory (queue files) DIR/spool, the input DIR/log.sock (imuxsock, no
 * /dev/log, no rate limit), and rsyslog's own messages to DIR/internal.log
 * (not forwarded, unlike a stock setup, so captures hold only fed lines).
 */
export function rsyslogPreamble(dir: string): string {
  return [
    `global(workDirectory="${dir}/spool" processInternalMessages="on")`,
    'module(load="imuxsock" SysSock.Use="off")',
    `input(type="imuxsock" Socket="${dir}/log.sock" CreatePath="on" RateLimit.Interval="0")`,
    'if $inputname == "rsyslogd" then {',
    `  action(type="omfile" file="${dir}/internal.log")`,
    '  stop',
    '}',
    '',
  ].join('\n');
}

/**
 * Runs `rsyslogd -n -f DIR/rsyslog.conf -i DIR/rsyslogd.pid` with
 * rsyslogPreamble(dir) + configText (e.g. a snippet: what an operator puts in
 * /etc/rsyslog.d/), after checking it with `rsyslogd -N1`. Ready when rsyslog
 * has logged its "start" message (the config is active and the socket open).
 * Starting again on the same dir resumes its disk queues.
 */
export async function startRsyslog(dir: string, configText: string): Promise<Shipper> {
  await fsp.mkdir(path.join(dir, 'spool'), { recursive: true });
  const conf = path.join(dir, 'rsyslog.conf');
  const socket = path.join(dir, 'log.sock');
  const internal = path.join(dir, 'internal.log');
  const outFile = path.join(dir, 'rsyslogd.out');
  await fsp.writeFile(conf, rsyslogPreamble(dir) + configText);
  const check = await run(RSYSLOGD, ['-N1', '-f', conf]);
  if (check.code !== 0) throw new Error(`rsyslogd -N1 -f ${conf} rejected the configuration:\n${(check.stdout + check.stderr).trim()}\n--- ${conf} ---\n${fs.readFileSync(conf, 'utf8')}`);
  const startsBefore = (readOr(internal).match(/\] start$/gm) ?? []).length;
  return launch({
    what: 'rsyslogd',
    dir,
    conf,
    socket,
    bin: RSYSLOGD,
    args: ['-n', '-f', conf, '-i', path.join(dir, 'rsyslogd.pid')],
    outFile,
    log: () => readOr(internal) + readOr(outFile),
    ready: () => (readOr(internal).match(/\] start$/gm) ?? []).length > startsBefore && fs.existsSync(socket),
  });
}

/**
 * The preamble startSyslogNg puts before the test's configuration: the
 * version line and `source s_src`, a unix datagram socket DIR/log.sock
 * (Debian's stock syslog-ng.conf defines s_src as system() and internal(),
 * which the guide's snippets read from).
 */
export function syslogNgPreamble(dir: string): string {
  return [
    '@version: 3.38',
    'options { stats_freq(0); };',
    `source s_src { unix-dgram("${dir}/log.sock"); };`,
    '',
  ].join('\n');
}

function syslogNgEnv(): NodeJS.ProcessEnv {
  if (SYSLOG_NG_PREFIX === '/') return process.env;
  const ld = process.env.LD_LIBRARY_PATH;
  return { ...process.env, LD_LIBRARY_PATH: ld ? `${SYSLOG_NG_LIBDIR}:${ld}` : SYSLOG_NG_LIBDIR };
}

function syslogNgModuleArgs(): string[] {
  if (SYSLOG_NG_PREFIX === '/') return [];
  const versions = fs.readdirSync(SYSLOG_NG_LIBDIR).filter((d) => /^\d+\.\d+$/.test(d));
  return [`--module-path=${versions.map((v) => path.join(SYSLOG_NG_LIBDIR, v)).join(':')}`];
}

/**
 * Runs `syslog-ng -F -e --no-caps -f DIR/syslog-ng.conf -p DIR/syslog-ng.pid
 * -R DIR/syslog-ng.persist -c DIR/syslog-ng.ctl` (plus --module-path and
 * LD_LIBRARY_PATH for the unpacked copy) with syslogNgPreamble(dir) +
 * configText, after checking it with `--syntax-only`. Ready when it has
 * logged "syslog-ng starting up" and its socket exists. Give snippets with a
 * disk-buffer `{ [DOC.syslogNgDir]: dir }`.
 */
export async function startSyslogNg(dir: string, configText: string): Promise<Shipper> {
  const conf = path.join(dir, 'syslog-ng.conf');
  const socket = path.join(dir, 'log.sock');
  const outFile = path.join(dir, 'syslog-ng.out');
  await fsp.writeFile(conf, syslogNgPreamble(dir) + configText);
  const env = syslogNgEnv();
  const common = [...syslogNgModuleArgs(), '-f', conf];
  const check = await run(SYSLOG_NG, [...common, '--syntax-only'], { env });
  if (check.code !== 0) throw new Error(`syslog-ng --syntax-only rejected ${conf}:\n${(check.stdout + check.stderr).trim()}`);
  const startsBefore = (readOr(outFile).match(/syslog-ng starting up/g) ?? []).length;
  return launch({
    what: 'syslog-ng',
    dir,
    conf,
    socket,
    bin: SYSLOG_NG,
    args: ['-F', '-e', '--no-caps', ...common, '-p', path.join(dir, 'syslog-ng.pid'), '-R', path.join(dir, 'syslog-ng.persist'), '-c', path.join(dir, 'syslog-ng.ctl')],
    env,
    outFile,
    log: () => readOr(outFile),
    ready: () => (readOr(outFile).match(/syslog-ng starting up/g) ?? []).length > startsBefore && fs.existsSync(socket),
  });
}

// ---------------------------------------------------------------------------------------------
// journald

/** One journal entry: field name → value (a Buffer, or a string with "\n", is written as a binary field). */
export type JournalEntry = Record<string, string | number | Buffer>;

/**
 * The journal export format of `entries` (systemd's "Journal Export
 * Format"). Entries without __REALTIME_TIMESTAMP get now + index µs, and
 * without __MONOTONIC_TIMESTAMP / _BOOT_ID fixed ones.
 */
export function journalExport(entries: JournalEntry[]): Buffer {
  const parts: Buffer[] = [];
  const now = BigInt(Date.now()) * 1000n;
  entries.forEach((entry, i) => {
    const fields: JournalEntry = {
      __REALTIME_TIMESTAMP: (now + BigInt(i)).toString(),
      __MONOTONIC_TIMESTAMP: String(1_000_000 + i),
      _BOOT_ID: '0123456789abcdef0123456789abcdef',
      ...entry,
    };
    for (const [name, value] of Object.entries(fields)) {
      const v = typeof value === 'number' ? String(value) : value;
      if (Buffer.isBuffer(v) || v.includes('\n')) {
        const data = Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8');
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(data.length));
        parts.push(Buffer.from(`${name}\n`), len, data, Buffer.from('\n'));
      } else {
        parts.push(Buffer.from(`${name}=${v}\n`));
      }
    }
    parts.push(Buffer.from('\n'));
  });
  return Buffer.concat(parts);
}

let journals = 0;

/**
 * Writes a journal file DIR/test-N.journal from export-format data (as
 * `journalExport` makes, or `journalctl -o export` prints) with
 * `systemd-journal-remote --output=FILE -`, and returns its path.
 */
export async function makeJournal(dir: string, exportData: string | Buffer | JournalEntry[]): Promise<string> {
  const file = path.join(dir, `test-${process.pid}-${++journals}.journal`);
  const input = Array.isArray(exportData) ? journalExport(exportData) : exportData;
  const r = await run(JOURNAL_REMOTE, [`--output=${file}`, '-'], { input });
  if (r.code !== 0 || !fs.existsSync(file)) throw new Error(`systemd-journal-remote --output=${file} - failed (${r.signal ?? r.code}): ${r.stderr.trim()}`);
  return file;
}

export interface UploadOptions {
  /** --key (PEM), for https URLs */
  key?: string;
  /** --cert (PEM), for https URLs */
  cert?: string;
  /** --trust: CA file or "all" */
  trust?: string;
  /** default 30 s; then SIGKILL */
  timeoutMs?: number;
}

export interface UploadResult {
  /** exit code (0: everything uploaded), null when killed */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `systemd-journal-upload --file=FILE --url=URL --save-state=STATE
 * --follow=no` (it POSTs to URL + "/upload", one chunked request per run
 * here) and resolves when it exits. The state file holds the last cursor
 * the server accepted: a second run with it sends only newer entries.
 */
export async function runJournalUpload(file: string, url: string, stateFile: string, opts: UploadOptions = {}): Promise<UploadResult> {
  const args = [`--file=${file}`, `--url=${url}`, `--save-state=${stateFile}`, '--follow=no'];
  if (opts.key !== undefined) args.push(`--key=${opts.key}`);
  if (opts.cert !== undefined) args.push(`--cert=${opts.cert}`);
  if (opts.trust !== undefined) args.push(`--trust=${opts.trust}`);
  return run(JOURNAL_UPLOAD, args, { timeoutMs: opts.timeoutMs ?? 30_000 });
}

/**
 * The settings of a journal-upload.conf [Upload] section (e.g. a snippet),
 * as runJournalUpload's url and options: URL → url, ServerKeyFile → key,
 * ServerCertificateFile → cert, TrustedCertificateFile → trust.
 * (systemd-journal-upload only reads /etc/systemd/journal-upload.conf*, so
 * tests pass the same settings as flags.)
 */
export function parseJournalUploadConf(text: string): UploadOptions & { url: string } {
  let section = '';
  const kv: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1];
      continue;
    }
    const m = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (!m || section !== 'Upload') throw new Error(`journal-upload.conf: unexpected line ${JSON.stringify(raw)}`);
    kv[m[1]] = m[2];
  }
  if (!kv.URL) throw new Error('journal-upload.conf: no URL= in [Upload]');
  const known = new Set(['URL', 'ServerKeyFile', 'ServerCertificateFile', 'TrustedCertificateFile']);
  const unknown = Object.keys(kv).filter((k) => !known.has(k));
  if (unknown.length) throw new Error(`journal-upload.conf: unknown settings ${unknown.join(', ')}`);
  return {
    url: kv.URL,
    ...(kv.ServerKeyFile !== undefined ? { key: kv.ServerKeyFile } : {}),
    ...(kv.ServerCertificateFile !== undefined ? { cert: kv.ServerCertificateFile } : {}),
    ...(kv.TrustedCertificateFile !== undefined ? { trust: kv.TrustedCertificateFile } : {}),
  };
}

export const OMELASTICSEARCH = '/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so';

/**
 * rsyslog forwarding to logd's Elasticsearch bulk API with omelasticsearch
 * (bulkmode, the token as the Basic password), as docs/elasticsearch.md
 * configures it: each message as a document built in `$!` (rendered with
 * `$!all-json`, so a document rsyslog resubmits, whose `$!` is the document
 * it sent, renders the same), and `retryfailures` sending the items that got
 * 429 (a full backlog) through the ruleset again; 400s go to DIR/es-errors.json.
 * Ruleset "to_logd" is the one to call.
 */
export function omelasticsearchConfig(dir: string, port: number, token: string, index: string): string {
  return [
    'module(load="omelasticsearch")',
    'template(name="logd_es_time" type="string" string="%timereported:::date-rfc3339%")',
    'template(name="logd_es_doc" type="string" string="%$!all-json%")',
    'ruleset(name="to_logd") {',
    '  if strlen($.omes!status) > 0 then {',
    '    if $.omes!status == 200 or $.omes!status == 201 then stop',
    '    if $.omes!status == 400 or $.omes!status < 200 then stop',
    '  }',
    `  action(type="omelasticsearch" server="127.0.0.1" serverport="${port}" uid="rsyslog" pwd="${token}"`,
    `         searchIndex="${index}" esVersion.major="8" bulkmode="on" template="logd_es_doc"`,
    `         errorfile="${dir}/es-errors.json" retryfailures="on" retryruleset="to_logd" ratelimit.interval="0"`,
    '         action.resumeRetryCount="-1" action.resumeInterval="1")',
    '}',
    'if $inputname == "imuxsock" then {',
    '  set $!message = ltrim($msg);',
    '  set $!host!name = $hostname;',
    '  set $!log!level = $syslogseverity-text;',
    '  set $!program = $programname;',
    '  set $!timestamp = exec_template("logd_es_time");',
    '  call to_logd',
    '}',
    '',
  ].join('\n');
}
