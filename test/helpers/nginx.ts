/**
 * A real nginx (Debian's /usr/sbin/nginx) in front of logd instances, with
 * the shipped conf/nginx.conf rendered by scripts/render-nginx.sh, as an
 * operator would run it. Loopback only; never a mock.
 *
 * Each nginx gets its own prefix directory (mode 0755: started as root, the
 * workers run as nobody and must traverse it to write request bodies to
 * PREFIX/client_body_temp), a free listen port on 127.0.0.1 (and a second one
 * for TLS when rendered with a certificate), and runs in the foreground (`-g 'daemon off;'`) as our child. A detached shell watchdog
 * sends the master SIGTERM if this process dies without stopping it (tap
 * SIGKILLs a test file that times out), so no nginx outlives its test.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Test } from 'tap';
import { ROOT, type Logd } from './logd';
import { cleanupAll, freePort, startPostgres, startRedis, waitFor, killWhenOrphaned, terminate, type PostgresServer, type RedisServer } from './services';

const execFileP = promisify(execFile);

export const NGINX_BIN = '/usr/sbin/nginx';
const RENDER = path.join(ROOT, 'scripts', 'render-nginx.sh');
const STOP_GRACE_MS = 15_000;

/** One line of the `logd` access log format of conf/nginx.conf. */
export interface AccessEntry {
  client: string;
  method: string;
  /** path and query */
  uri: string;
  status: number;
  userAgent: string;
  /** $upstream_addr split on ", " and " : " (every upstream tried, in order); [] for "-" */
  upstreams: string[];
  /** the X-Request-ID passed to logd (the client's, else nginx's $request_id) */
  requestId: string;
}

export interface RenderOptions {
  /** logd instances, HOST:PORT */
  upstreams: string[];
  /** --rate, e.g. "1r/m" */
  rate?: string;
  /** --burst (ingest locations) */
  burst?: number;
  /** --query-burst */
  queryBurst?: number;
  /** --query-rate, e.g. "1r/m" */
  queryRate?: string;
  /** --tls-cert and --tls-key (absolute paths): TLS on a second port (Nginx.tlsUrl), the plain port redirects to it */
  tls?: { cert: string; key: string };
  /** --real-ip-from, each */
  realIpFrom?: string[];
  /** --real-ip-header */
  realIpHeader?: string;
}

export interface Nginx {
  port: number;
  /** http://127.0.0.1:port */
  url: string;
  /** https://127.0.0.1:tlsPort, when rendered with `tls` */
  tlsUrl?: string;
  /** the prefix directory (ends without "/") */
  prefix: string;
  /** absolute path of the rendered configuration */
  conf: string;
  /** pid of the master */
  pid: number;
  /** pids of the current worker processes */
  workers(): number[];
  /** parsed PREFIX/logs/access.log (buffered by nginx for up to 1 s: wait for what you expect) */
  accessLog(): AccessEntry[];
  /** PREFIX/logs/error.log */
  errorLog(): string;
  /** renders again with new options, checks it with `nginx -t`, `nginx -s reload`, waits until only new workers remain */
  reload(opts: RenderOptions): Promise<void>;
  /** SIGTERM (fast shutdown), waits for the master to exit, removes the prefix */
  stop(): Promise<void>;
}

/** Runs scripts/render-nginx.sh and returns the configuration text. */
async function render(opts: RenderOptions, listen: string, tlsListen?: string): Promise<string> {
  const args = [RENDER, '--listen', listen];
  if (opts.rate !== undefined) args.push('--rate', opts.rate);
  if (opts.burst !== undefined) args.push('--burst', String(opts.burst));
  if (opts.queryBurst !== undefined) args.push('--query-burst', String(opts.queryBurst));
  if (opts.queryRate !== undefined) args.push('--query-rate', opts.queryRate);
  if (opts.tls) args.push('--tls-cert', opts.tls.cert, '--tls-key', opts.tls.key, '--tls-listen', tlsListen!);
  for (const cidr of opts.realIpFrom ?? []) args.push('--real-ip-from', cidr);
  if (opts.realIpHeader !== undefined) args.push('--real-ip-header', opts.realIpHeader);
  const { stdout } = await execFileP('bash', [...args, ...opts.upstreams]);
  return stdout;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  // SIGTERM, not SIGKILL: the master then stops its workers (a killed master would orphan them).
  for (const p of running) p.kill('SIGTERM');
});

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n').trimEnd();
  } catch (err) {
    return `(no ${file}: ${(err as Error).message})`;
  }
}

const ACCESS_LINE = /^(\S+) - \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) \d+ "[^"]*" "([^"]*)" "[^"]*" upstream: (.*?) response_time: .* request_id: (\S+)$/;

function parseAccessLog(text: string): AccessEntry[] {
  const out: AccessEntry[] = [];
  for (const line of text.split('\n')) {
    const m = ACCESS_LINE.exec(line);
    if (!m) continue;
    out.push({
      client: m[1],
      method: m[2],
      uri: m[3],
      status: Number(m[4]),
      userAgent: m[5],
      upstreams: m[6] === '-' ? [] : m[6].split(/, | : /),
      requestId: m[7],
    });
  }
  return out;
}

async function launch(opts: RenderOptions, port: number, tlsPort?: number): Promise<Nginx> {
  const prefix = await fsp.mkdtemp(path.join(os.tmpdir(), 'logd-nginx-'));
  await fsp.chmod(prefix, 0o755);
  await fsp.mkdir(path.join(prefix, 'logs'), { mode: 0o755 });
  const conf = path.join(prefix, 'nginx.conf');
  const tlsListen = tlsPort === undefined ? undefined : `127.0.0.1:${tlsPort}`;
  await fsp.writeFile(conf, await render(opts, `127.0.0.1:${port}`, tlsListen));
  const outFile = path.join(prefix, 'logs', 'nginx.out');
  const errorLogFile = path.join(prefix, 'logs', 'error.log');
  const base = ['-p', `${prefix}/`, '-c', conf];
  const fd = fs.openSync(outFile, 'a');
  let proc: ChildProcess;
  try {
    proc = spawn(NGINX_BIN, [...base, '-g', 'daemon off;'], { stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  running.add(proc);
  const wd = killWhenOrphaned(proc.pid!);
  let exitReason: string | undefined;
  const exited = new Promise<void>((resolve) => proc.once('exit', (code, signal) => {
    exitReason = signal ? `killed by ${signal}` : `exited with code ${code}`;
    running.delete(proc);
    wd.stdin?.end('done\n');
    resolve();
  }));
  proc.unref();
  const url = `http://127.0.0.1:${port}`;
  const tlsUrl = tlsPort === undefined ? undefined : `https://127.0.0.1:${tlsPort}`;

  const workers = (): number[] => {
    const ps = execFileSync('ps', ['-o', 'pid=,ppid=,args=', '-e']).toString();
    return ps.split('\n').map((l) => l.trim().match(/^(\d+)\s+(\d+)\s+(.*)$/))
      .filter((m): m is RegExpMatchArray => !!m && Number(m[2]) === proc.pid && m[3].startsWith('nginx: worker process'))
      .map((m) => Number(m[1]));
  };
  const stop = async (): Promise<void> => {
    await terminate(proc, exitReason === undefined, exited, STOP_GRACE_MS);
    await fsp.rm(prefix, { recursive: true, force: true });
  };

  try {
    // With TLS the plain port only redirects: ask the TLS port (any certificate will do here).
    const status = `${tlsUrl ?? url}/nginx_status`;
    await waitFor(`nginx to answer ${status}`, async () => {
      if (exitReason !== undefined) throw new Error(`nginx ${exitReason}`);
      return (await httpRequest(status, { tls: { rejectUnauthorized: false } })).status === 200;
    }, 20_000);
  } catch (err) {
    const detail = `${(err as Error).message}\n--- ${outFile} ---\n${tail(outFile)}\n--- ${errorLogFile} ---\n${tail(errorLogFile)}`;
    await stop();
    throw Object.assign(new Error(`nginx failed to start: ${detail}`), { addressInUse: /Address already in use/.test(detail) });
  }

  return {
    port,
    url,
    ...(tlsUrl ? { tlsUrl } : {}),
    prefix,
    conf,
    pid: proc.pid!,
    workers,
    accessLog: () => parseAccessLog(fs.readFileSync(path.join(prefix, 'logs', 'access.log'), 'utf8')),
    errorLog: () => fs.readFileSync(errorLogFile, 'utf8'),
    async reload(next) {
      await fsp.writeFile(conf, await render(next, `127.0.0.1:${port}`, tlsListen));
      await execFileP(NGINX_BIN, [...base, '-t', '-q']);
      const old = workers();
      await execFileP(NGINX_BIN, [...base, '-s', 'reload']);
      await waitFor('nginx to replace its workers after reload', () => {
        const now = workers();
        return now.length > 0 && now.every((p) => !old.includes(p));
      }, 20_000);
    },
    stop,
  };
}

/** Starts nginx on a free 127.0.0.1 port (and another for TLS) in front of `opts.upstreams`. */
export async function startNginx(opts: RenderOptions): Promise<Nginx> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(opts, await freePort(), opts.tls ? await freePort() : undefined);
    } catch (err) {
      if (!(err as { addressInUse?: boolean }).addressInUse || attempt >= 3) throw err;
    }
  }
}

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** parsed JSON body, or undefined */
  body: any;
}

export interface HttpOptions {
  method?: string;
  headers?: Record<string, string | number>;
  /** sent whole */
  body?: string | Buffer;
  /** source address of the client socket (any 127.x.y.z reaches lo) */
  localAddress?: string;
  /** keep-alive agent to reuse connections; without one, each request has its own connection */
  agent?: http.Agent;
  /** for https: URLs (ca, servername, minVersion, maxVersion, rejectUnauthorized...) */
  tls?: https.RequestOptions;
}

/**
 * One request with node:http, or node:https for an https: URL (fetch can
 * choose neither the source address nor a private connection pool). Resolves
 * as soon as the response is complete, even if the server answered before
 * reading the whole body and closed (nginx's 413).
 */
export function httpRequest(url: string, opts: HttpOptions = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? https : http).request(url, {
      ...opts.tls,
      method: opts.method ?? 'GET',
      headers: { ...(opts.agent ? {} : { connection: 'close' }), ...opts.headers },
      agent: opts.agent ?? false,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    let settled = false;
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        settled = true;
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, body });
        // Stops sending a body the server refused; a pooled connection goes back to its agent instead.
        if (!opts.agent) req.destroy();
      });
    });
    // A write error after the answer (the server stopped reading the body) is expected.
    req.on('error', (err) => { if (!settled) reject(err); });
    req.end(opts.body);
  });
}

/**
 * Private Redis and PostgreSQL for logd instances behind nginx: the test adds
 * the instances and nginxes it starts to the lists, and all of them are
 * stopped (nginx first, logd by SIGKILL) when `t` ends.
 */
export async function frontDoorServices(t: Test): Promise<{ redis: RedisServer; pg: PostgresServer; instances: Logd[]; nginxes: Nginx[] }> {
  const [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
  const instances: Logd[] = [];
  const nginxes: Nginx[] = [];
  t.teardown(async () => {
    await Promise.all(nginxes.map((n) => n.stop()));
    await Promise.all(instances.map((l) => l.stop('SIGKILL')));
    await cleanupAll();
  });
  return { redis, pg, instances, nginxes };
}
