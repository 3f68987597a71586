/**
 * Helpers of the fault-injection suite (test/faults.test.ts): a load
 * generator that records every attempt (status, code, Retry-After, timing,
 * messages), a Redis client for poking at the stream, and the exactly-once
 * accounting (acknowledged vs persisted vs duplicates vs lost).
 */
import Redis, { type Cluster } from 'ioredis';
import type { PostgresServer, RedisServer } from './services';
import { waitFor } from './services';
import type { Logd } from './logd';

export const STREAM = 'logs:stream';
export const BACKLOG = 'logs:stream:backlog';
export const GROUP = 'log_workers';
export const DEAD = 'logs:dead';

/** A queue shard's stream and backlog counter (src/queue/keys.ts). */
export interface ShardNames {
  stream: string;
  backlog: string;
  dead: string;
}

/** The keys of a queue of `n` shards: the unsharded names for one shard on one Redis (`tagged` false), else `logs:stream:{i}`... */
export function shardNames(n: number, tagged = n > 1): ShardNames[] {
  if (!tagged) return [{ stream: STREAM, backlog: BACKLOG, dead: DEAD }];
  return Array.from({ length: n }, (_, i) => ({ stream: `${STREAM}:{${i}}`, backlog: `${STREAM}:{${i}}:backlog`, dead: `${DEAD}:{${i}}` }));
}

// ---------------------------------------------------------------------------
// a seeded PRNG (mulberry32), so a failing run can be replayed with its seed

export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed from LOGD_TEST_SEED, else a fresh one (printed by the tests). */
export function testSeed(): number {
  const env = process.env.LOGD_TEST_SEED;
  if (env && /^\d+$/.test(env)) return Number(env) >>> 0;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}

// ---------------------------------------------------------------------------
// load that keeps a record of every request

export interface Attempt {
  /** Date.now() when the request was sent / finished */
  start: number;
  end: number;
  /** HTTP status, or 'timeout' / the connection error's code when there was no answer */
  status: number | string;
  /** `code` of a JSON error answer */
  code?: string;
  retryAfter?: string | null;
  messages: string[];
}

export interface TrackedLoad {
  /** logs acknowledged (2xx) so far */
  ackedCount(): number;
  /** every finished attempt so far (live array) */
  attempts: Attempt[];
  /** resolves once `n` more logs were acknowledged than when called, or throws after timeoutMs */
  waitMoreAcked(n: number, timeoutMs?: number, what?: string): Promise<void>;
  stop(): Promise<LoadReport>;
}

export interface LoadReport {
  /** messages of logs that got a 2xx */
  acked: string[];
  /** messages of every log sent (acknowledged or not) */
  attempted: string[];
  attempts: Attempt[];
  /** attempts by status, for messages */
  statuses: Record<string, number>;
}

export interface LoadOptions {
  prefix: string;
  clients?: number;
  perRequest?: number;
  /** a request not answered within this is aborted and recorded as 'timeout' */
  timeoutMs?: number;
  /** pause after each request (pacing), ms */
  pauseMs?: number;
  /** pause after a non-2xx answer or an error, ms (so refusals don't spin) */
  refusedPauseMs?: number;
  /** the ingest route and its format: logd's JSON API (default), OTLP/HTTP JSON, or Loki push JSON */
  format?: 'logd' | 'otlp' | 'loki';
}

/** One load request for `messages` of `device`, in `format`. */
function loadRequest(format: LoadOptions['format'], device: string, messages: string[], data: Record<string, number>): { path: string; body: string } {
  if (format === 'otlp') {
    const logRecords = messages.map((message) => ({
      timeUnixNano: `${Date.now()}000000`,
      severityNumber: 9,
      body: { stringValue: message },
      attributes: Object.entries(data).map(([key, v]) => ({ key, value: { intValue: String(v) } })),
    }));
    const resource = { attributes: [{ key: 'host.name', value: { stringValue: device } }] };
    return { path: '/v1/logs', body: JSON.stringify({ resourceLogs: [{ resource, scopeLogs: [{ logRecords }] }] }) };
  }
  if (format === 'loki') {
    const values = messages.map((message) => [`${Date.now()}000000`, message]);
    return { path: '/loki/api/v1/push', body: JSON.stringify({ streams: [{ stream: { host: device, level: 'info' }, values }] }) };
  }
  const logs = messages.map((message) => ({ device_id: device, log_level: 'INFO', message, log_data: data }));
  return messages.length === 1
    ? { path: '/api/log', body: JSON.stringify(logs[0]) }
    : { path: '/api/logs/batch', body: JSON.stringify({ logs }) };
}

export function startTrackedLoad(url: string, opts: LoadOptions): TrackedLoad {
  const clients = opts.clients ?? 8;
  const per = opts.perRequest ?? 10;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const refusedPause = opts.refusedPauseMs ?? 20;
  const attempts: Attempt[] = [];
  const acked: string[] = [];
  const attempted: string[] = [];
  let running = true;
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  const loop = async (c: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const messages = Array.from({ length: per }, (_, j) => `${opts.prefix}-${c}-${i}-${j}`);
      const { path, body } = loadRequest(opts.format, `${opts.prefix}-${c}`, messages, { c, i });
      attempted.push(...messages);
      const a: Attempt = { start: Date.now(), end: 0, status: 0, messages };
      try {
        const res = await fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await res.text();
        a.status = res.status;
        a.retryAfter = res.headers.get('retry-after');
        try {
          const parsed = JSON.parse(text) as { code?: unknown };
          if (typeof parsed.code === 'string') a.code = parsed.code;
        } catch {
          // not JSON: recorded as is (status only)
        }
      } catch (err) {
        const e = err as { name?: string; cause?: { code?: string }; message?: string };
        a.status = e.name === 'TimeoutError' || e.name === 'AbortError' ? 'timeout' : (e.cause?.code ?? e.message ?? 'error');
      }
      a.end = Date.now();
      attempts.push(a);
      const ok = typeof a.status === 'number' && a.status >= 200 && a.status < 300;
      if (ok) acked.push(...messages);
      if (!ok) await sleep(refusedPause);
      else if (opts.pauseMs) await sleep(opts.pauseMs);
    }
  };
  const loops = Array.from({ length: clients }, (_, c) => loop(c));
  return {
    ackedCount: () => acked.length,
    attempts,
    async waitMoreAcked(n, timeoutMs = 30_000, what) {
      const target = acked.length + n;
      await waitFor(what ?? `${n} more logs acknowledged (statuses so far: ${JSON.stringify(statusCounts(attempts))})`,
        () => acked.length >= target, timeoutMs);
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      return { acked: [...acked], attempted: [...attempted], attempts: [...attempts], statuses: statusCounts(attempts) };
    },
  };
}

export function statusCounts(attempts: Attempt[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of attempts) {
    const key = a.code ? `${a.status} ${a.code}` : String(a.status);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Redis access from the test

/** A plain ioredis client for the test itself (errors while Redis restarts are ignored). */
export function testRedis(redis: RedisServer): Redis {
  const client = new Redis({ host: redis.host, port: redis.port, maxRetriesPerRequest: 1, lazyConnect: false });
  client.on('error', () => undefined);
  return client;
}

export interface StreamState {
  length: number;
  pending: number;
  /** entries the group has not been delivered yet */
  undelivered: boolean;
  backlog: number;
}

/** The queue's state, summed over its shards (default: the one unsharded stream). */
export async function streamState(r: Redis | Cluster, shards: ShardNames[] = shardNames(1)): Promise<StreamState> {
  const states = await Promise.all(shards.map((s) => shardState(r, s)));
  return {
    length: states.reduce((a, s) => a + s.length, 0),
    pending: states.reduce((a, s) => a + s.pending, 0),
    undelivered: states.some((s) => s.undelivered),
    backlog: states.reduce((a, s) => a + s.backlog, 0),
  };
}

async function shardState(r: Redis | Cluster, { stream, backlog: backlogKey }: ShardNames): Promise<StreamState> {
  const [length, pendingSummary, backlog, info, groups] = await Promise.all([
    r.xlen(stream),
    r.xpending(stream, GROUP).catch(() => [0]) as Promise<unknown[]>,
    r.get(backlogKey),
    r.call('XINFO', 'STREAM', stream) as Promise<unknown[]>,
    r.call('XINFO', 'GROUPS', stream) as Promise<unknown[][]>,
  ]);
  const field = (list: unknown[], name: string): unknown => {
    for (let i = 0; i + 1 < list.length; i += 2) if (list[i] === name) return list[i + 1];
    return undefined;
  };
  const lastGenerated = String(field(info, 'last-generated-id'));
  const group = groups.find((g) => field(g, 'name') === GROUP);
  const lastDelivered = group ? String(field(group, 'last-delivered-id')) : '0-0';
  return {
    length,
    pending: Number(pendingSummary[0] ?? 0),
    undelivered: length > 0 && lastDelivered !== lastGenerated,
    backlog: Number(backlog ?? 0),
  };
}

/** Waits until the group has read everything in the stream and nothing is pending. */
export async function waitDrained(r: Redis | Cluster, timeoutMs = 30_000, shards?: ShardNames[]): Promise<StreamState> {
  let last: StreamState | undefined;
  try {
    return await waitFor('the stream to be drained (nothing pending, nothing undelivered)', async () => {
      last = await streamState(r, shards);
      return last.pending === 0 && !last.undelivered ? last : undefined;
    }, timeoutMs, 50);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last state ${JSON.stringify(last)}`, { cause: err });
  }
}

/** A stream entry's fields as an object (later duplicates win). */
export function fieldsOf(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i]] = list[i + 1];
  return out;
}

/** COPY text row the way logd encodes it (only for messages without tab, newline, CR or backslash). */
export function copyRow(device: string, level: string, message: string, data: string, createdAt: string): string {
  if (/[\t\n\r\\]/.test(device + message + data)) throw new Error('copyRow: only plain fields');
  return `${device}\t${level}\t${message}\t${data}\t${createdAt}\n`;
}

// ---------------------------------------------------------------------------
// exactly-once accounting

export interface Tally {
  acknowledged: number;
  /** rows in logs whose message has the prefix */
  persisted: number;
  /** messages stored more than once (GROUP BY message HAVING count(*) > 1) */
  duplicates: number;
  /** acknowledged messages not stored */
  lost: number;
  /** stored messages that never got a 2xx (a refused or unanswered request whose frame Redis did take) */
  unacknowledgedStored: number;
  /** stored messages that were never sent at all (must be 0) */
  unknown: number;
  /** every acknowledged message not stored */
  lostMessages: string[];
  lostSample: string[];
  duplicateSample: string[];
  unknownSample: string[];
}

/**
 * Waits until every acknowledged message is in PostgreSQL (or the deadline
 * passes), then counts. Messages are matched by `prefix`.
 */
export async function tally(pg: PostgresServer, prefix: string, acked: string[], attempted: string[], timeoutMs = 10_000): Promise<Tally> {
  const ackedSet = new Set(acked);
  const rowsOf = async (): Promise<Map<string, number>> => {
    const rows = await pg.query<{ message: string; n: string }>(
      'SELECT message, count(*) AS n FROM logs WHERE starts_with(message, $1) GROUP BY message', [prefix]);
    return new Map(rows.map((r) => [r.message, Number(r.n)]));
  };
  let stored = new Map<string, number>();
  await waitFor(`${acked.length} acknowledged logs in PostgreSQL`, async () => {
    stored = await rowsOf();
    return acked.every((m) => stored.has(m));
  }, timeoutMs, 200).catch(() => undefined); // counted below: the assertions say what is missing
  stored = await rowsOf();
  const dupRows = await pg.query<{ message: string; n: string }>(
    'SELECT message, count(*) AS n FROM logs WHERE starts_with(message, $1) GROUP BY message HAVING count(*) > 1', [prefix]);
  const [{ n: total }] = await pg.query<{ n: string }>('SELECT count(*) AS n FROM logs WHERE starts_with(message, $1)', [prefix]);
  const attemptedSet = new Set(attempted);
  const lost = acked.filter((m) => !stored.has(m));
  const extra = [...stored.keys()].filter((m) => !ackedSet.has(m));
  const unknown = extra.filter((m) => !attemptedSet.has(m));
  return {
    acknowledged: ackedSet.size,
    persisted: Number(total),
    duplicates: dupRows.length,
    lost: lost.length,
    unacknowledgedStored: extra.length - unknown.length,
    unknown: unknown.length,
    lostMessages: lost,
    lostSample: lost.slice(0, 5),
    duplicateSample: dupRows.slice(0, 5).map((r) => `${r.message} x${r.n}`),
    unknownSample: unknown.slice(0, 5),
  };
}

export const tallyLine = (t: Tally): string =>
  `acknowledged=${t.acknowledged} persisted=${t.persisted} duplicates=${t.duplicates} lost=${t.lost}` +
  (t.unacknowledgedStored ? ` (stored without a 2xx: ${t.unacknowledgedStored})` : '');

// ---------------------------------------------------------------------------
// processes

/** True while the pid exists (a stopped process counts as alive). */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGTERM, and SIGKILL if logd is not gone after graceMs; resolves with the exit code (null when killed). */
export async function stopLogd(logd: Logd, graceMs = 20_000): Promise<number | null> {
  const exited = logd.stop('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), graceMs); });
  const first = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (first !== 'late') return first;
  for (const role of ['http', 'persister'] as const) for (const pid of logd.children(role)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  logd.proc.kill('SIGKILL');
  return exited;
}

export async function health(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let body: unknown;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}
