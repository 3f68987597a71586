/**
 * Redis Streams, the only place logd touches them. One stream entry (a
 * "frame") holds the accepted logs of one request as pre-encoded COPY rows:
 * measured here, Redis appends ~190k single-log entries/s but ~720k logs/s
 * as 100-log frames.
 *
 *   HTTP worker --append.lua--> logs:stream --XREADGROUP--> persister
 *                 (+backlog)                 <--ack.lua---  (XACK, -backlog, XTRIM MINID)
 */
import { readFileSync } from 'node:fs';
import type { default as Redis, Result } from 'ioredis';
import type { Config } from '../config';
import { LogdError } from '../errors';
import { rootPath } from '../paths';
import { frameFields, isFrame, parseEntry, type BadEntry, type EncodedFrame, type Frame, type Raw } from './frame';

const script = (name: string): string => readFileSync(rootPath('src', 'queue', 'lua', `${name}.lua`), 'utf8');

declare module 'ioredis' {
  interface RedisCommander<Context> {
    logdAppend(stream: string, backlog: string, limit: number, n: number, rows: string, summary: string): Result<string, Context>;
    logdAppendOnce(stream: string, backlog: string, marks: string, limit: number, n: number, rows: string, summary: string, ...ranges: string[]): Result<string, Context>;
    logdAck(stream: string, backlog: string, group: string, windowMs: number, ...idsAndCounts: (string | number)[]): Result<[number, number, number], Context>;
    logdReplay(stream: string, backlog: string, dead: string, deadId: string): Result<string, Context>;
    logdDead(stream: string, backlog: string, dead: string, group: string, id: string, n: number, error: string, ...fields: string[]): Result<string | null, Context>;
  }
}

/** Registers logd's scripts on a client (EVALSHA, loaded on first use). */
export function defineScripts(redis: Redis): void {
  redis.defineCommand('logdAppend', { numberOfKeys: 2, lua: script('append') });
  redis.defineCommand('logdAppendOnce', { numberOfKeys: 3, lua: script('append-once') });
  redis.defineCommand('logdAck', { numberOfKeys: 2, lua: script('ack') });
  redis.defineCommand('logdDead', { numberOfKeys: 3, lua: script('dead') });
  redis.defineCommand('logdReplay', { numberOfKeys: 3, lua: script('replay') });
}

/** An entry of the dead-letter stream. */
export interface DeadLetter {
  id: string;
  /** the stream entry it was */
  entry: string;
  error: string;
  failedAt: string;
  /** logs in it (0: not a frame) */
  logs: number;
  /** its COPY rows, when it was a frame */
  rows?: string;
}


/** Entries of one numbered source in a frame. */
export interface SourceRange {
  source: string;
  first: bigint;
  last: bigint;
}

/** appendOnce found entries of `source` up to `stored` already in the stream. */
export class Stale extends Error {
  constructor(readonly source: string, readonly stored: bigint) {
    super(`entries of ${source} up to ${stored} are stored already`);
  }
}

export class Queue {
  readonly stream: string;
  readonly backlogKey: string;
  readonly group: string;
  readonly deadStream: string;
  /** highest sequence number stored per numbered source (append-once.lua) */
  readonly marksKey: string;
  /** persisted entries younger than this stay in the stream for live tails to resume (tail.resume_window_s), in ms */
  readonly resumeWindowMs: number;

  constructor(readonly redis: Redis, cfg: Config) {
    this.stream = cfg.redis.stream;
    this.backlogKey = `${cfg.redis.stream}:backlog`;
    this.group = cfg.queue.group;
    this.deadStream = cfg.queue.dead_stream;
    this.marksKey = `${cfg.redis.stream}:marks`;
    this.resumeWindowMs = cfg.tail.resume_window_s * 1000;
    defineScripts(redis);
  }

  /** Appends a frame; resolves to its entry ID once Redis has it. */
  async append(limit: number, frame: EncodedFrame): Promise<string> {
    return this.command(() => this.redis.logdAppend(this.stream, this.backlogKey, limit, frame.n, frame.rows, frame.summary));
  }

  /**
   * Appends a frame of numbered entries (per source, numbers first..last)
   * unless a source's first number is already stored: then it rejects with
   * Stale, naming the highest number stored, and appends nothing.
   */
  async appendOnce(limit: number, frame: EncodedFrame, ranges: SourceRange[]): Promise<string> {
    const args = ranges.flatMap((r) => [r.source, String(r.first), String(r.last)]);
    return this.command(() => this.redis.logdAppendOnce(this.stream, this.backlogKey, this.marksKey, limit, frame.n, frame.rows, frame.summary, ...args));
  }

  /** The highest number stored of each source (undefined: none). */
  async marks(sources: string[]): Promise<(bigint | undefined)[]> {
    if (!sources.length) return [];
    const got = await this.command(() => this.redis.hmget(this.marksKey, ...sources));
    return got.map((v) => (v === null ? undefined : BigInt(v)));
  }

  /** Runs a command of the ingest path, its failures as catalogue errors (Stale as it is). */
  private async command<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const msg = (err as Error).message ?? '';
      const stale = /^LOGDSTALE (.*) (\d+)$/.exec(msg);
      if (stale) throw new Stale(stale[1], BigInt(stale[2]));
      if (msg.includes('LOGDBACKLOG') || msg.startsWith('OOM')) {
        throw new LogdError('LOGD_BACKLOG_FULL', undefined, { cause: err });
      }
      throw new LogdError('LOGD_QUEUE_UNAVAILABLE', undefined, { cause: err });
    }
  }

  /** Creates the consumer group (and the stream) if missing. */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.stream, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).startsWith('BUSYGROUP')) throw err;
    }
  }

  /** Reads up to `count` entries never delivered before; blocks up to `blockMs` when given. */
  async read(consumer: string, count: number, blockMs: number | undefined): Promise<(Frame | BadEntry)[]> {
    const res = (await this.redis.call(
      'XREADGROUP', 'GROUP', this.group, consumer, 'COUNT', count,
      ...(blockMs === undefined ? [] : ['BLOCK', blockMs]),
      'STREAMS', this.stream, '>',
    )) as [string, Raw[]][] | null;
    return res ? res[0][1].map((raw) => parseEntry(raw, 1)) : [];
  }

  /**
   * Takes over pending entries idle for at least `minIdleMs`: this
   * consumer's own (`ownOnly`: left by a crash of this instance's persister)
   * or anyone's (a dead consumer's). XCLAIM counts the delivery and resets
   * the idle time, so two persisters do not take the same entry at once.
   */
  async recover(consumer: string, count: number, minIdleMs: number, ownOnly: boolean): Promise<(Frame | BadEntry)[]> {
    const pending = (await this.redis.call(
      'XPENDING', this.stream, this.group, 'IDLE', minIdleMs, '-', '+', count, ...(ownOnly ? [consumer] : []),
    )) as [id: string, owner: string, idle: number, deliveries: number][];
    if (!pending.length) return [];
    const deliveries = new Map(pending.map(([id, , , n]) => [id, n + 1]));
    const claimed = (await this.redis.call(
      'XCLAIM', this.stream, this.group, consumer, minIdleMs, ...pending.map(([id]) => id),
    )) as Raw[];
    return claimed.map((raw) => parseEntry(raw, deliveries.get(raw[0]) ?? 1));
  }

  /** Acknowledges persisted entries (one round trip), lowers the backlog, trims what is older than the resume window. */
  async ack(entries: { id: string; n: number }[]): Promise<{ frames: number; logs: number; trimmed: number }> {
    const args: (string | number)[] = [];
    for (const e of entries) args.push(e.id, e.n);
    const [frames, logs, trimmed] = await this.redis.logdAck(this.stream, this.backlogKey, this.group, this.resumeWindowMs, ...args);
    return { frames, logs, trimmed };
  }

  /** Moves an entry to the dead-letter stream with its error; false if it was no longer pending. */
  async kill(entry: Frame | BadEntry, error: string): Promise<boolean> {
    const fields = isFrame(entry) ? frameFields(entry) : entry.fields;
    const n = isFrame(entry) ? entry.n : 0;
    const id = await this.redis.logdDead(this.stream, this.backlogKey, this.deadStream, this.group, entry.id, n, error, ...fields);
    return id !== null;
  }

  /** The stream's first entry ID, or undefined when it is empty. */
  async firstId(): Promise<string | undefined> {
    const [first] = await this.redis.xrange(this.stream, '-', '+', 'COUNT', 1);
    return first?.[0];
  }

  /** Dead-letter entries, oldest first. */
  async deadList(count: number): Promise<DeadLetter[]> {
    const raw = await this.redis.xrange(this.deadStream, '-', '+', 'COUNT', count);
    return raw.map(([id, fields]) => {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
      return { id, entry: f.entry, error: f.error, failedAt: new Date(Number(f.failed_at) * 1000).toISOString(), logs: Number(f.n) || 0, rows: f.r };
    });
  }

  /** Re-queues a dead-letter entry; resolves to the new stream entry ID. */
  async replay(deadId: string): Promise<string> {
    return this.redis.logdReplay(this.stream, this.backlogKey, this.deadStream, deadId);
  }

  /** Entries in the dead-letter stream. */
  async deadLetters(): Promise<number> {
    return this.redis.xlen(this.deadStream);
  }

  /** Logs accepted and not yet persisted. */
  async backlog(): Promise<number> {
    return Number((await this.redis.get(this.backlogKey)) ?? 0);
  }
}
