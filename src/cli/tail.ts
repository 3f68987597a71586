/**
 * `logd tail`: follows new logs over GET /api/tail (a WebSocket, the `ws`
 * package), as `journalctl -f` does; `--since` first prints the persisted
 * logs of a window from GET /api/logs.
 *
 * The switch from the persisted logs to the live ones leaves no gap while
 * the stream holds the last seconds (tail.resume_window_s): the tail resumes
 * from HANDOVER_MS before the first search answer, and the live logs of that
 * overlap that the search returned already are dropped (same device, level,
 * message and time).
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import type { Config } from '../config';
import { LogdError } from '../errors';

/** Most persisted logs `--since` prints. */
const MAX_SINCE_LOGS = 10_000;
const PAGE = 1000;
/** The tail resumes this long before the persisted logs were read: longer than a persist batch takes. */
const HANDOVER_MS = 5000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export interface TailFlags {
  device?: string;
  level?: string;
  q?: string;
  since?: string;
  json?: boolean;
  retry?: boolean;
  url?: string;
  tokenFile?: string;
}

interface Log {
  device_id: string;
  log_level: string;
  message: string | null;
  log_data: Record<string, unknown> | null;
  created_at: string | null;
}

const COLOURS: Record<string, string> = { DEBUG: '\x1b[2m', INFO: '\x1b[32m', WARNING: '\x1b[33m', ERROR: '\x1b[31m', CRITICAL: '\x1b[1;35m' };
const RESET = '\x1b[0m';

/** One line per log: time, level, device, message, and log_data when it holds anything. */
export function formatLog(l: Log, colour: boolean, json: boolean): string {
  if (json) return `${JSON.stringify(l)}\n`;
  const data = l.log_data && Object.keys(l.log_data).length ? ` ${JSON.stringify(l.log_data)}` : '';
  const level = l.log_level.padEnd(8);
  return `${l.created_at ?? '-'} ${colour ? `${COLOURS[l.log_level] ?? ''}${level}${RESET}` : level} ${l.device_id} ${l.message ?? ''}${data}\n`;
}

/** `10m` (s, m, h, d) as milliseconds, or undefined. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([smhd])$/.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]] : undefined;
}

/** The server's URL: --url, else the configured listen address (a wildcard address means this host). */
function baseUrl(cfg: Config, url: string | undefined): string {
  if (url) return url.replace(/\/+$/, '');
  const host = ['0.0.0.0', '::', ''].includes(cfg.server.host) ? '127.0.0.1' : cfg.server.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${cfg.server.port}`;
}

/** The token: --token-file, else LOGD_TOKEN; never a flag value (it would show in ps). */
function readToken(file: string | undefined): string {
  if (file) return readFileSync(file, 'utf8').trim();
  return process.env.LOGD_TOKEN ?? '';
}

const key = (l: Log): string => `${l.device_id}\u0000${l.log_level}\u0000${l.message}\u0000${Date.parse(l.created_at ?? '')}`;

/** An answer the server refused with: its JSON detail, and whether retrying can help. */
class Refusal extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

const detailOf = (body: string): string => {
  try {
    const j = JSON.parse(body) as { detail?: unknown; code?: string };
    return `${j.code ?? ''}: ${typeof j.detail === 'string' ? j.detail : JSON.stringify(j.detail)}`;
  } catch {
    return body.slice(0, 200);
  }
};

export async function tail(cfg: Config, flags: TailFlags, out: NodeJS.WriteStream, err: NodeJS.WritableStream): Promise<number> {
  const since = flags.since === undefined ? undefined : parseDuration(flags.since);
  if (flags.since !== undefined && since === undefined) throw new LogdError('LOGD_CONFIG_INVALID', `--since must be a number and a unit (s, m, h, d), like 10m; got "${flags.since}"`);
  const token = readToken(flags.tokenFile);
  const filters = new URLSearchParams();
  if (flags.device) filters.set('device_id', flags.device);
  if (flags.level) filters.set('level', flags.level);
  if (flags.q) filters.set('q', flags.q);
  const session: Session = {
    base: baseUrl(cfg, flags.url),
    headers: token ? { authorization: `Bearer ${token}` } : {},
    filters,
    retry: flags.retry === true,
    print: (l) => void out.write(formatLog(l, out.isTTY === true && !flags.json, flags.json === true)),
    note: (text) => void err.write(`-- ${text} --\n`),
    fail: (text) => void err.write(`logd tail: ${text}\n`),
    stopping: false,
    printed: new Map(),
    handoverUntil: 0,
  };
  const onSignal = (): void => {
    session.stopping = true;
    session.socket?.close(1000);
    session.wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (since !== undefined) {
      const code = await handover(session, since);
      if (code !== undefined) return code;
    }
    return await followLive(session, since !== undefined);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** What one `logd tail` run keeps between its steps and reconnections. */
interface Session {
  base: string;
  headers: Record<string, string>;
  filters: URLSearchParams;
  retry: boolean;
  print(l: Log): void;
  note(text: string): void;
  fail(text: string): void;
  /** SIGINT or SIGTERM arrived */
  stopping: boolean;
  socket?: WebSocket;
  /** ends a wait before reconnecting */
  wake?: () => void;
  /** the last position received: where a reconnection resumes */
  position?: string;
  /** persisted logs printed whose live copy (the handover overlap) may still come, and the last position it can come at (ms) */
  printed: Map<string, number>;
  handoverUntil: number;
}

/** Prints the persisted logs of the window, and sets the live tail to resume where they were read; an exit code when that failed. */
async function handover(s: Session, sinceMs: number): Promise<number | undefined> {
  try {
    const h = await persisted(s, sinceMs);
    s.position = `${h.readAt - HANDOVER_MS}-0`;
    s.handoverUntil = h.doneAt + 1000;
    for (const k of h.keys) s.printed.set(k, (s.printed.get(k) ?? 0) + 1);
    return s.stopping ? 0 : undefined;
  } catch (e) {
    if (e instanceof Refusal) {
      s.fail(e.message);
      return e.status >= 500 ? 1 : 2;
    }
    s.fail(`cannot reach ${s.base}: ${(e as Error).message}`);
    return 1;
  }
}

/**
 * The time of the newest entry a position covers, in ms: its entry ID's, or
 * with a sharded queue the latest of its per-shard IDs'. A resume sends the
 * shards' entries in ID order, so a message of the handover overlap carries
 * no ID after the entry's own.
 */
const newestMs = (position: string): number => Math.max(...position.split(',').map((id) => Number(id.split('-')[0])));

/** A live log, unless it is one of the handover overlap already printed. */
function printLive(s: Session, position: string, logs: Log[]): void {
  const overlap = newestMs(position) <= s.handoverUntil;
  for (const l of logs) {
    const n = overlap ? s.printed.get(key(l)) : undefined;
    if (n === undefined) {
      s.print(l);
      continue;
    }
    if (n > 1) s.printed.set(key(l), n - 1);
    else s.printed.delete(key(l));
  }
}

/** Follows the tail until a signal (0), a refusal (2: 401, 403, 422; 1: others) or, without --retry, a lost connection (1). */
async function followLive(s: Session, afterHandover: boolean): Promise<number> {
  let backoff = RETRY_MIN_MS;
  let first = true;
  for (;;) {
    const query = new URLSearchParams(s.filters);
    if (s.position) query.set('after', s.position);
    // The first connection after --since resumes before the persisted logs were read: trimmed entries there were printed from PostgreSQL.
    const quietExpiry = first && afterHandover;
    const outcome = await follow(s, `${s.base.replace(/^http/, 'ws')}/api/tail?${query}`, (m) => {
      if (m.position) s.position = m.position;
      if (m.type === 'ready') backoff = RETRY_MIN_MS;
      else if (m.type === 'logs') printLive(s, m.position, m.logs);
      else if (m.type === 'skipped' && m.reason === 'slow') s.note(`${m.count} logs skipped (reading too slowly)`);
      else if (m.type === 'skipped' && !quietExpiry) s.note('logs after the last position were trimmed from the stream before they could be read: search them (GET /api/logs)');
      else if (m.type === 'status') s.note(m.queue === 'available' ? 'logd reads its queue again' : 'logd lost its queue (Redis); waiting');
      else if (m.type === 'error') s.fail(`${m.code}: ${m.detail}`);
    });
    first = false;
    if (s.stopping) return 0;
    if (outcome instanceof Refusal && (outcome.status < 500 || !s.retry)) {
      s.fail(outcome.message);
      return outcome.status < 500 ? 2 : 1;
    }
    if (!s.retry) {
      s.fail(outcome.message);
      return 1;
    }
    s.fail(`${outcome.message}; retrying in ${(backoff / 1000).toFixed(1)} s`);
    await new Promise<void>((resolve) => {
      s.wake = resolve;
      setTimeout(resolve, backoff);
    });
    backoff = Math.min(backoff * 2, RETRY_MAX_MS);
    if (s.stopping) return 0;
  }
}

/** Runs one WebSocket until it closes; resolves with why (a Refusal when the upgrade was answered with an error). */
function follow(s: Session, url: string, onMessage: (m: any) => void): Promise<Error> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ['logd.v1'], { headers: s.headers });
    s.socket = ws;
    let done = false;
    const finish = (e: Error): void => {
      if (done) return;
      done = true;
      resolve(e);
    };
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d; });
      res.on('end', () => finish(new Refusal(`${res.statusCode} ${detailOf(body)}`, res.statusCode ?? 0)));
    });
    ws.on('message', (data) => onMessage(JSON.parse(data.toString())));
    ws.on('error', (e) => finish(new Error(`connection failed: ${e.message}`)));
    ws.on('close', (code, reason) => finish(new Error(`connection closed (${code}${reason.length ? ` ${reason}` : ''})`)));
  });
}

/** Prints the persisted logs of the last `sinceMs`, oldest first; returns when they were read (server time) and their keys. */
async function persisted(s: Session, sinceMs: number): Promise<{ readAt: number; doneAt: number; keys: string[] }> {
  const logs: Log[] = [];
  let cursor: string | null = null;
  let readAt = 0;
  let doneAt = 0;
  let more = false;
  const from = new Date(Date.now() - sinceMs).toISOString();
  do {
    const q = new URLSearchParams(s.filters);
    q.set('since', from);
    q.set('limit', String(Math.min(PAGE, MAX_SINCE_LOGS - logs.length)));
    if (cursor) q.set('cursor', cursor);
    const res = await fetch(`${s.base}/api/logs?${q}`, { headers: s.headers });
    const text = await res.text();
    if (res.status !== 200) throw new Refusal(`${res.status} ${detailOf(text)}`, res.status);
    doneAt = Date.parse(res.headers.get('date') ?? '') || Date.now();
    readAt ||= doneAt;
    const page = JSON.parse(text) as { data: Log[]; next_cursor: string | null };
    logs.push(...page.data);
    cursor = page.next_cursor;
    more = cursor !== null && logs.length >= MAX_SINCE_LOGS;
  } while (cursor !== null && logs.length < MAX_SINCE_LOGS);
  if (more) s.note(`only the newest ${MAX_SINCE_LOGS} logs of the window are shown; search for the older ones (GET /api/logs)`);
  for (let i = logs.length - 1; i >= 0; i--) s.print(logs[i]);
  return { readAt, doneAt, keys: logs.map(key) };
}
