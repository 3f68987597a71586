/**
 * The load generator of bench/listeners.ts and bench/protocols.ts, run as
 * their child (node:child_process fork) so that building and sending logs
 * does not share the bench's event loop. Every path sends the logs of
 * gen.ts's entry(): the same devices, levels, messages (`<run>:<tid>:<seq>:<j>
 * ...`, unique; the http kind cycles through a pool of bodies, so its
 * messages recur once per turn) and data, in the path's own format.
 *
 * The parent sends one command at a time over IPC:
 *   { start: Load }   begins a load;
 *   { stop: true }    ends it: nothing new is sent, what was sent is finished
 *                     (answers awaited, syslog connections ended and closed by
 *                     logd), and the child answers { result: Result }.
 * A paced load also ends by itself once its connection fails, and answers
 * { result } then.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { entry, type Entry } from './gen';
import { buildBodies, taken, type Format } from './protocols';

export type Load =
  /** POST /api/logs/batch, `per` logs per request, closed loop on `connections` keep-alive connections */
  | { kind: 'native'; port: number; run: string; connections: number; per: number }
  /** RFC 5424 lines, octet-counted (RFC 6587), as fast as `connections` sockets take them */
  | { kind: 'syslog'; port: number; run: string; connections: number }
  /** POST /upload, chunked export-format bodies of `entries` entries, `uploads` at once, each with its own __SEQNUM_ID */
  | { kind: 'journal'; port: number; run: string; uploads: number; entries: number }
  /** one syslog connection writing `rate` numbered lines/s until it fails or `maxMs` passes */
  | { kind: 'paced'; port: number; run: string; rate: number; maxMs: number }
  /**
   * POST bodies of a protocols.ts format, `per` logs each (gzipped with `gzip`): `bodies` distinct ones built
   * here before the first request, then sent in turn, closed loop on `connections` keep-alive connections
   */
  | { kind: 'http'; port: number; run: string; connections: number; format: Format; gzip: boolean; per: number; bodies: number };

export interface Result {
  /** logs handed to the connection */
  sent: number;
  /** logs the sender counts as delivered: in 2xx answers (HTTP), or in writes whose callback had no error (syslog) */
  delivered: number;
  /** error codes or HTTP statuses, with the logs they concerned */
  errors: Record<string, number>;
  /** paced: epoch ms at which the connection ended (logd closed it, or it failed), and how: 'FIN' or the error's code */
  endedAtMs?: number;
  ending?: string;
  /** http: logs taken from each body (by index) over the load, and the body bytes sent */
  perBody?: number[];
  bytes?: number;
}

const HOST = '127.0.0.1';
/** Severity (RFC 5424) and journal PRIORITY of each level gen.ts sends. */
const SEVERITY: Record<string, number> = { CRITICAL: 2, ERROR: 3, WARNING: 4, INFO: 6, DEBUG: 7 };
/** local0 */
const FACILITY = 16;
/** Syslog lines per socket write. */
const LINES_PER_WRITE = 64;
/** Writes in a row before the sender yields to its event loop. */
const WRITES_PER_TURN = 16;
/** Journal entries per chunk of an upload's body. */
const ENTRIES_PER_CHUNK = 250;
/** How long ended syslog connections may take to be closed by logd, in ms. */
const CLOSE_MS = 30_000;

class Tally {
  sent = 0;
  delivered = 0;
  errors: Record<string, number> = {};
  endedAtMs: number | undefined;
  ending: string | undefined;
  perBody: number[] | undefined;
  bytes: number | undefined;
  fail(code: string, logs: number): void {
    this.errors[code] = (this.errors[code] ?? 0) + logs;
  }
  ended(how: string): void {
    if (this.ending !== undefined) return;
    this.endedAtMs = Date.now();
    this.ending = how;
  }
  result(): Result {
    return { sent: this.sent, delivered: this.delivered, errors: this.errors, endedAtMs: this.endedAtMs, ending: this.ending, perBody: this.perBody, bytes: this.bytes };
  }
}

/** Entry k of a sender: connection `tid`, 100 logs per gen.ts sequence number. */
const nth = (run: string, tid: number, k: number): Entry => entry(run, tid, Math.floor(k / 100), k % 100, 100);

/** One RFC 5424 message, octet-counted; the data of gen.ts as SD params. */
function syslogLine(e: Entry, time: string): string {
  const d = e.log_data;
  const msg = `<${FACILITY * 8 + SEVERITY[e.log_level]}>1 ${time} ${e.device_id} bench ${process.pid} - [meta seq="${d.seq}" region="${d.region}" latency_ms="${d.latency_ms}" path="${d.path}"] ${e.message}`;
  return `${msg.length} ${msg}`; // ASCII: length = bytes
}

/** One export-format entry as systemd-journal-upload sends it; the data of gen.ts as fields. */
function journalEntry(e: Entry, id: string, seqnum: number, boot: string): string {
  const d = e.log_data;
  const us = Date.now() * 1000;
  const mono = Math.round(performance.now() * 1000);
  return `__CURSOR=s=${id};i=${seqnum.toString(16)};b=${boot};m=${mono.toString(16)};t=${us.toString(16)};x=0\n`
    + `__REALTIME_TIMESTAMP=${us}\n__MONOTONIC_TIMESTAMP=${mono}\n__SEQNUM=${seqnum}\n__SEQNUM_ID=${id}\n`
    + `_HOSTNAME=${e.device_id}\nPRIORITY=${SEVERITY[e.log_level]}\nSYSLOG_IDENTIFIER=bench\nMESSAGE=${e.message}\n`
    + `SEQ=${d.seq}\nREGION=${d.region}\nLATENCY_MS=${d.latency_ms}\nPATH=${d.path}\n\n`;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Ends a socket and waits until logd closes it (it does once it has stored what it read). */
function endAndClose(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => s.destroy(), CLOSE_MS);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
    s.end();
  });
}

/** A request's status, and its body; status 0 and the error's code when it failed. */
function exchange(req: http.ClientRequest): Promise<{ status: number; body: string; code?: string }> {
  return new Promise((resolve) => {
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, body: '', code: err.code ?? err.message }));
  });
}

/** A load under way; `ended` resolves when it ends by itself (paced). */
type Running = { stop(): Promise<void>; ended?: Promise<void> };

function native(o: Extract<Load, { kind: 'native' }>, t: Tally): Running {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections });
  let stopping = false;
  const loop = async (tid: number): Promise<void> => {
    for (let seq = 0; !stopping; seq++) {
      const logs = Array.from({ length: o.per }, (_, j) => entry(o.run, tid, seq, j, o.per));
      const body = JSON.stringify({ logs });
      t.sent += o.per;
      const req = http.request({ host: HOST, port: o.port, path: '/api/logs/batch', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
      const answer = exchange(req);
      req.end(body);
      const a = await answer;
      if (a.status >= 200 && a.status < 300) t.delivered += o.per;
      else t.fail(a.code ?? String(a.status), o.per);
    }
  };
  const all = Promise.all(Array.from({ length: o.connections }, (_, tid) => loop(tid))).then(() => agent.destroy());
  return { stop: async () => { stopping = true; await all; } };
}

/** Resolves once `s` takes writes again, or is closed. */
function writable(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}

function syslog(o: Extract<Load, { kind: 'syslog' }>, t: Tally): Running {
  let stopping = false;
  const one = async (tid: number): Promise<void> => {
    const s = await connect(o.port);
    s.on('error', (err: NodeJS.ErrnoException) => t.fail(err.code ?? err.message, 0));
    let k = 0;
    while (!stopping && !s.destroyed) {
      for (let w = 0; w < WRITES_PER_TURN && !stopping; w++) {
        const time = new Date().toISOString();
        let chunk = '';
        for (let i = 0; i < LINES_PER_WRITE; i++) chunk += syslogLine(nth(o.run, tid, k++), time);
        t.sent += LINES_PER_WRITE;
        const more = s.write(chunk, (err) => {
          if (err) t.fail((err as NodeJS.ErrnoException).code ?? err.message, LINES_PER_WRITE);
          else t.delivered += LINES_PER_WRITE;
        });
        if (!more) {
          await writable(s);
          break;
        }
      }
      await new Promise((r) => setImmediate(r));
    }
    await endAndClose(s);
  };
  const all = Promise.all(Array.from({ length: o.connections }, (_, tid) => one(tid)));
  return { stop: async () => { stopping = true; await all; } };
}

function journal(o: Extract<Load, { kind: 'journal' }>, t: Tally): Running {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.uploads });
  const boot = randomBytes(16).toString('hex');
  let stopping = false;
  const loop = async (tid: number): Promise<void> => {
    const id = randomBytes(16).toString('hex');
    let seqnum = 1;
    let k = 0;
    while (!stopping) {
      const req = http.request({ host: HOST, port: o.port, path: '/upload', method: 'POST', agent, headers: { 'content-type': 'application/vnd.fdo.journal' } });
      const answer = exchange(req);
      t.sent += o.entries;
      for (let n = 0; n < o.entries; n += ENTRIES_PER_CHUNK) {
        let chunk = '';
        for (let i = n; i < Math.min(o.entries, n + ENTRIES_PER_CHUNK); i++) chunk += journalEntry(nth(o.run, tid, k++), id, seqnum++, boot);
        if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
      }
      req.end();
      const a = await answer;
      const stored = /^OK: (\d+) entries stored, (\d+) already stored/.exec(a.body);
      if (a.status === 200 && stored) {
        t.delivered += Number(stored[1]);
        if (Number(stored[2])) t.fail('already stored', Number(stored[2]));
      } else t.fail(a.code ?? `${a.status} ${a.body.slice(0, 80)}`, o.entries);
    }
  };
  const all = Promise.all(Array.from({ length: o.uploads }, (_, tid) => loop(tid))).then(() => agent.destroy());
  return { stop: async () => { stopping = true; await all; } };
}

function paced(o: Extract<Load, { kind: 'paced' }>, t: Tally): Running {
  let stopping = false;
  let socket: net.Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  let finish: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => { finish = resolve; });
  const stop = (): void => {
    stopping = true;
    clearTimeout(timer);
    socket?.end();
  };
  const go = async (): Promise<void> => {
    const s = (socket = await connect(o.port));
    const t0 = Date.now();
    let k = 0;
    s.on('error', (err: NodeJS.ErrnoException) => {
      stopping = true;
      t.ended(err.code ?? err.message);
      t.fail(err.code ?? err.message, 0);
    });
    // logd closed the connection in order: its receive buffer was empty (a close with unread data sends a reset)
    s.on('end', () => {
      stopping = true;
      t.ended('FIN');
    });
    // after 'error', and after the callbacks of the writes it failed
    s.on('close', () => {
      clearTimeout(timer);
      stopping = true;
      finish();
    });
    s.resume();
    const tick = (): void => {
      if (stopping || s.destroyed) return;
      const now = Date.now();
      if (now - t0 > o.maxMs) return stop();
      const due = Math.floor(((now - t0) * o.rate) / 1000) - k;
      if (due > 0) {
        const time = new Date(now).toISOString();
        let chunk = '';
        for (let i = 0; i < due; i++) chunk += syslogLine(entry(o.run, 0, k++, 0, 1), time);
        t.sent += due;
        s.write(chunk, (err) => {
          if (err) t.fail((err as NodeJS.ErrnoException).code ?? err.message, due);
          else t.delivered += due;
        });
      }
      timer = setTimeout(tick, 1);
    };
    if (stopping) s.end();
    else tick();
  };
  go().catch((err: NodeJS.ErrnoException) => {
    t.fail(err.code ?? err.message, 0);
    finish();
  });
  return { stop: async () => { stop(); await ended; }, ended };
}

/** A request's status and its whole body; status 0 and the error's code when it failed. */
function exchangeBytes(req: http.ClientRequest): Promise<{ status: number; body: Buffer; code?: string }> {
  return new Promise((resolve) => {
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.once('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, body: Buffer.alloc(0), code: err.code ?? err.message }));
  });
}

function httpBodies(o: Extract<Load, { kind: 'http' }>, t: Tally): Running {
  const built = buildBodies(o.format, o.run, o.bodies, o.per, o.gzip);
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections });
  const perBody = new Array<number>(o.bodies).fill(0);
  let bytes = 0;
  let next = 0;
  let stopping = false;
  const loop = async (): Promise<void> => {
    while (!stopping) {
      const b = next;
      next = (next + 1) % o.bodies;
      const body = built.bodies[b];
      t.sent += o.per;
      bytes += body.length;
      const req = http.request({ host: HOST, port: o.port, path: built.path, method: 'POST', agent, headers: { ...built.headers, 'content-length': body.length } });
      const answer = exchangeBytes(req);
      req.end(body);
      const a = await answer;
      const n = a.code ?? taken(o.format, a.status, a.body, o.per);
      if (typeof n === 'string') t.fail(n, o.per);
      else {
        t.delivered += n;
        perBody[b] += n;
        if (n < o.per) t.fail(`${a.status}: ${o.per - n} of ${o.per} refused`, o.per - n);
      }
    }
  };
  const all = Promise.all(Array.from({ length: o.connections }, () => loop())).then(() => {
    agent.destroy();
    t.perBody = perBody;
    t.bytes = bytes;
  });
  return { stop: async () => { stopping = true; await all; } };
}

const START = { native, syslog, journal, paced, http: httpBodies } as const;

process.title = 'bench-sender';
process.on('disconnect', () => process.exit(0));
let current: { running: Running; tally: Tally; answered: boolean } | undefined;
const answer = (): void => {
  if (!current || current.answered) return;
  current.answered = true;
  const result = current.tally.result();
  current = undefined;
  process.send!({ result });
};
process.on('message', (m: { start?: Load; stop?: true }) => {
  if (m.start) {
    const tally = new Tally();
    const load = m.start;
    const running = (START[load.kind] as (o: Load, t: Tally) => Running)(load, tally);
    current = { running, tally, answered: false };
    void running.ended?.then(answer);
  } else if (m.stop && current) {
    void current.running.stop().then(answer);
  }
});
