/**
 * Redis Streams, the only place logd touches them. One stream entry (a
 * "frame") holds the accepted logs of one request as pre-encoded COPY rows:
 * measured here, Redis appends ~190k single-log entries/s but ~720k logs/s
 * as 100-log frames.
 *
 *   HTTP worker --append.lua--> logs:stream --XREADGROUP--> persister
 *                 (+backlog)                 <--ack.lua---  (XACK, -backlog, XTRIM MINID)
 *
 * The queue is queue.shards such streams (src/queue/keys.ts), each a Shard
 * with its own backlog, group and dead-letter stream; a frame goes to the
 * shard of its first log's device, and every persister reads every shard.
 * Every script touches the keys of one shard only (one cluster slot).
 */
import { readFileSync } from 'node:fs';
import { Cluster, type ChainableCommander, type Result } from 'ioredis';
import type { Config } from '../config';
import type { RedisClient } from '../connections';
import { LogdError } from '../errors';
import { rootPath } from '../paths';
import { frameFields, isFrame, parseEntry, type BadEntry, type EncodedFrame, type Frame, type Raw } from './frame';
import { shardKeys, shardOf, sharded } from './keys';

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
export function defineScripts(redis: RedisClient): void {
  redis.defineCommand('logdAppend', { numberOfKeys: 2, lua: script('append') });
  redis.defineCommand('logdAppendOnce', { numberOfKeys: 3, lua: script('append-once') });
  redis.defineCommand('logdAck', { numberOfKeys: 2, lua: script('ack') });
  redis.defineCommand('logdDead', { numberOfKeys: 3, lua: script('dead') });
  redis.defineCommand('logdReplay', { numberOfKeys: 3, lua: script('replay') });
}

/** An entry of the dead-letter stream. */
export interface DeadLetter {
  /** its ID in its shard's dead-letter stream, prefixed with "<shard>/" when the queue is sharded */
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

/** A frame's entry, or a bad entry, of a shard. */
type Entry = Frame | BadEntry;

/** Entries of several shards, grouped by shard. */
export function byShard<T extends { shard: number }>(entries: T[]): Map<number, T[]> {
  const m = new Map<number, T[]>();
  for (const e of entries) {
    const list = m.get(e.shard);
    if (list) list.push(e);
    else m.set(e.shard, [e]);
  }
  return m;
}

/** Runs a command of the ingest path, its failures as catalogue errors (Stale and LogdError as they are). */
async function ingestCommand<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof LogdError) throw err;
    const msg = (err as Error).message ?? '';
    const stale = /^LOGDSTALE (.*) (\d+)$/.exec(msg);
    if (stale) throw new Stale(stale[1], BigInt(stale[2]));
    if (msg.includes('LOGDBACKLOG') || msg.startsWith('OOM')) {
      throw new LogdError('LOGD_BACKLOG_FULL', undefined, { cause: err });
    }
    throw new LogdError('LOGD_QUEUE_UNAVAILABLE', undefined, { cause: err });
  }
}

/** One stream of the queue, with its backlog counter, consumer group and dead-letter stream. */
export class Shard {
  readonly stream: string;
  readonly backlogKey: string;
  readonly deadStream: string;
  readonly marksKey: string;

  constructor(private readonly q: Queue, readonly index: number) {
    const k = shardKeys(q.cfg, index);
    this.stream = k.stream;
    this.backlogKey = k.backlog;
    this.deadStream = k.dead;
    this.marksKey = k.marks;
  }

  private get redis(): RedisClient {
    return this.q.redis;
  }

  /** Appends a frame; resolves to its entry ID once Redis (and queue.replica_acks replicas) have it. */
  async append(frame: EncodedFrame): Promise<string> {
    const args = [this.stream, this.backlogKey, this.q.limit, frame.n, frame.rows, frame.summary] as const;
    return ingestCommand(() => (this.q.replicated ? this.q.durably((p) => p.logdAppend(...args)) : this.redis.logdAppend(...args)));
  }

  /**
   * Appends a frame of numbered entries (per source, numbers first..last)
   * unless a source's first number is already stored: then it rejects with
   * Stale, naming the highest number stored, and appends nothing. Every
   * source must be of this shard (Queue.shardOfSource).
   */
  async appendOnce(frame: EncodedFrame, ranges: SourceRange[]): Promise<string> {
    const args = [this.stream, this.backlogKey, this.marksKey, this.q.limit, frame.n, frame.rows, frame.summary,
      ...ranges.flatMap((r) => [r.source, String(r.first), String(r.last)])] as const;
    return ingestCommand(() => (this.q.replicated ? this.q.durably((p) => p.logdAppendOnce(...args)) : this.redis.logdAppendOnce(...args)));
  }

  /** The highest number stored of each source (undefined: none). */
  async marks(sources: string[]): Promise<(bigint | undefined)[]> {
    if (!sources.length) return [];
    const got = await ingestCommand(() => this.redis.hmget(this.marksKey, ...sources));
    return got.map((v) => (v === null ? undefined : BigInt(v)));
  }

  /** Creates the consumer group (and the stream) if missing. */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.stream, this.q.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).startsWith('BUSYGROUP')) throw err;
    }
  }

  /** Reads up to `count` entries never delivered before; blocks up to `blockMs` when given. */
  async read(redis: RedisClient, consumer: string, count: number, blockMs: number | undefined): Promise<Entry[]> {
    const res = (await redis.call(
      'XREADGROUP', 'GROUP', this.q.group, consumer, 'COUNT', count,
      ...(blockMs === undefined ? [] : ['BLOCK', blockMs]),
      'STREAMS', this.stream, '>',
    )) as [string, Raw[]][] | null;
    return res ? res[0][1].map((raw) => parseEntry(raw, 1, this.index)) : [];
  }

  /** Pending entries idle for at least `minIdleMs` taken over by `consumer` (Queue.recover). */
  async recover(consumer: string, count: number, minIdleMs: number, ownOnly: boolean): Promise<Entry[]> {
    const pending = (await this.redis.call(
      'XPENDING', this.stream, this.q.group, 'IDLE', minIdleMs, '-', '+', count, ...(ownOnly ? [consumer] : []),
    )) as [id: string, owner: string, idle: number, deliveries: number][];
    if (!pending.length) return [];
    const deliveries = new Map(pending.map(([id, , , n]) => [id, n + 1]));
    const claimed = (await this.redis.call(
      'XCLAIM', this.stream, this.q.group, consumer, minIdleMs, ...pending.map(([id]) => id),
    )) as Raw[];
    return claimed.map((raw) => parseEntry(raw, deliveries.get(raw[0]) ?? 1, this.index));
  }

  async ack(entries: { id: string; n: number }[]): Promise<{ frames: number; logs: number; trimmed: number }> {
    const args: (string | number)[] = [];
    for (const e of entries) args.push(e.id, e.n);
    const [frames, logs, trimmed] = await this.redis.logdAck(this.stream, this.backlogKey, this.q.group, this.q.resumeWindowMs, ...args);
    return { frames, logs, trimmed };
  }

  async kill(entry: Entry, error: string): Promise<boolean> {
    const fields = isFrame(entry) ? frameFields(entry) : entry.fields;
    const n = isFrame(entry) ? entry.n : 0;
    const id = await this.redis.logdDead(this.stream, this.backlogKey, this.deadStream, this.q.group, entry.id, n, error, ...fields);
    return id !== null;
  }

  /** The stream's first entry ID, or undefined when it is empty. */
  async firstId(): Promise<string | undefined> {
    const [first] = await this.redis.xrange(this.stream, '-', '+', 'COUNT', 1);
    return first?.[0];
  }

  async backlog(): Promise<number> {
    return Number((await this.redis.get(this.backlogKey)) ?? 0);
  }
}

export class Queue {
  readonly shards: Shard[];
  readonly group: string;
  /** logs one shard may hold unpersisted: queue.max_backlog shared evenly */
  readonly limit: number;
  /** persisted entries younger than this stay in the stream for live tails to resume (tail.resume_window_s), in ms */
  readonly resumeWindowMs: number;
  /** appends wait for queue.replica_acks replicas */
  readonly replicated: boolean;
  /** the last error of a shard that failed while others answered (read, recover), until all answer again */
  shardError: string | undefined;
  private readonly sharded: boolean;

  constructor(readonly redis: RedisClient, readonly cfg: Config) {
    this.replicated = cfg.queue.replica_acks > 0;
    this.group = cfg.queue.group;
    this.limit = Math.ceil(cfg.queue.max_backlog / cfg.queue.shards);
    this.resumeWindowMs = cfg.tail.resume_window_s * 1000;
    this.sharded = sharded(cfg);
    this.shards = Array.from({ length: cfg.queue.shards }, (_, i) => new Shard(this, i));
    defineScripts(redis);
  }

  /** The shard a device's frames go to. */
  shardOf(device: string): Shard {
    return this.shards[shardOf(device, this.shards.length)];
  }

  /** Appends a frame to its device's shard; resolves to its entry ID once it is stored (queue.replica_acks). */
  append(frame: EncodedFrame): Promise<string> {
    return this.shardOf(frame.device).append(frame);
  }

  /**
   * Runs a write, then, with queue.replica_acks, WAIT in the same pipeline
   * (so on the same connection, to the same master): the write counts only
   * once that many replicas have it, or it is refused with 503 (it may still
   * be persisted: a 503 promises nothing either way).
   */
  async durably(write: (p: ChainableCommander) => unknown): Promise<string> {
    const { replica_acks: want, replica_timeout_ms: timeout } = this.cfg.queue;
    for (let attempt = 1; ; attempt++) {
      const p = this.redis.pipeline();
      write(p);
      p.call('WAIT', want, timeout);
      const [[err, id], [waitErr, acks]] = ((await p.exec()) ?? []) as [Error | null, unknown][];
      if (err) {
        // ioredis does not follow a pipeline's redirections: the write did not run; retry once the slot map is fresh
        if (this.redis instanceof Cluster && REDIRECTED.test(err.message) && attempt < REDIRECTED_ATTEMPTS) {
          await refreshSlots(this.redis);
          await new Promise((r) => setTimeout(r, REDIRECTED_PAUSE_MS * attempt));
          continue;
        }
        throw err;
      }
      if (waitErr) throw waitErr;
      if ((acks as number) < want) {
        throw new LogdError('LOGD_QUEUE_UNAVAILABLE', `Redis stored the logs, but only ${acks} of the ${want} replicas queue.replica_acks asks for had them within ${timeout} ms; retry later`);
      }
      return id as string;
    }
  }

  /** Creates every shard's consumer group (and stream) if missing. */
  async ensureGroups(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.ensureGroup()));
  }

  /**
   * Reads up to about `count` entries never delivered before, from every
   * shard, on `redis` (a connection of its own: it may block up to
   * `blockMs`). One Redis server reads all shards with one XREADGROUP; a
   * cluster cannot (its keys are on different slots), so each shard is read
   * by itself, each blocking at most CLUSTER_BLOCK_MS so that a quiet shard
   * does not hold back the others. A shard that fails does not hold back the
   * others either: its error is thrown only when no shard answered.
   */
  async read(redis: RedisClient, consumer: string, count: number, blockMs: number | undefined): Promise<Entry[]> {
    if (this.shards.length === 1) return this.shards[0].read(redis, consumer, count, blockMs);
    const per = Math.max(1, Math.ceil(count / this.shards.length));
    if (!this.cfg.redis.cluster.length) {
      const res = (await redis.call(
        'XREADGROUP', 'GROUP', this.group, consumer, 'COUNT', per,
        ...(blockMs === undefined ? [] : ['BLOCK', blockMs]),
        'STREAMS', ...this.shards.map((s) => s.stream), ...this.shards.map(() => '>'),
      )) as [string, Raw[]][] | null;
      if (!res) return [];
      const index = new Map(this.shards.map((s) => [s.stream, s.index]));
      return res.flatMap(([stream, raws]) => raws.map((raw) => parseEntry(raw, 1, index.get(stream)!)));
    }
    const block = blockMs === undefined ? undefined : Math.min(blockMs, CLUSTER_BLOCK_MS);
    return this.settled(await Promise.allSettled(this.shards.map((s) => s.read(redis, consumer, per, block))));
  }

  /**
   * Takes over pending entries idle for at least `minIdleMs`, about `count`
   * in all, shared by the shards as in read(): this consumer's own
   * (`ownOnly`: left by a crash of this instance's persister) or anyone's (a
   * dead consumer's). XCLAIM counts the delivery and resets the idle time,
   * so two persisters do not take the same entry at once. `full`: some shard
   * may hold more.
   */
  async recover(consumer: string, count: number, minIdleMs: number, ownOnly: boolean): Promise<{ entries: Entry[]; full: boolean }> {
    const per = Math.max(1, Math.ceil(count / this.shards.length));
    const got = await Promise.allSettled(this.shards.map((s) => s.recover(consumer, per, minIdleMs, ownOnly)));
    const entries = this.settled(got);
    return { entries, full: got.some((g) => g.status === 'fulfilled' && g.value.length >= per) };
  }

  /** Acknowledges persisted entries (one round trip per shard), lowers the backlogs, trims what is older than the resume window. */
  async ack(entries: { id: string; shard: number; n: number }[]): Promise<void> {
    await Promise.all([...byShard(entries)].map(([i, list]) => this.shards[i].ack(list)));
  }

  /** Moves an entry to its shard's dead-letter stream with its error; false if it was no longer pending. */
  kill(entry: Entry, error: string): Promise<boolean> {
    return this.shards[entry.shard].kill(entry, error);
  }

  /** The first entry ID of each shard's stream (undefined: empty). */
  firstIds(): Promise<(string | undefined)[]> {
    return Promise.all(this.shards.map((s) => s.firstId()));
  }

  /** Dead-letter entries, oldest first per shard. */
  async deadList(count: number): Promise<DeadLetter[]> {
    const lists = await Promise.all(this.shards.map(async (s) => {
      const raw = await this.redis.xrange(s.deadStream, '-', '+', 'COUNT', count);
      return raw.map(([id, fields]): DeadLetter => {
        const f: Record<string, string> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
        return {
          id: this.sharded ? `${s.index}/${id}` : id,
          entry: f.entry, error: f.error, failedAt: new Date(Number(f.failed_at) * 1000).toISOString(), logs: Number(f.n) || 0, rows: f.r,
        };
      });
    }));
    return lists.flat().slice(0, count);
  }

  /** Re-queues a dead-letter entry (an ID deadList gave); resolves to the new stream entry ID. */
  async replay(deadId: string): Promise<string> {
    const m = /^(\d+)\/(.*)$/.exec(deadId);
    const shard = this.sharded && m ? this.shards[Number(m[1])] : this.sharded ? undefined : this.shards[0];
    if (!shard) throw new Error('LOGDNOENTRY');
    return this.redis.logdReplay(shard.stream, shard.backlogKey, shard.deadStream, this.sharded ? m![2] : deadId);
  }

  /** Entries in the dead-letter streams. */
  async deadLetters(): Promise<number> {
    return sum(await Promise.all(this.shards.map((s) => this.redis.xlen(s.deadStream))));
  }

  /** The entries of the shards that answered; the first error when none did. */
  private settled(got: PromiseSettledResult<Entry[]>[]): Entry[] {
    const ok = got.filter((g): g is PromiseFulfilledResult<Entry[]> => g.status === 'fulfilled');
    const failed = got.findIndex((g) => g.status === 'rejected');
    this.shardError = failed < 0 ? undefined : `shard ${failed} (${this.shards[failed].stream}): ${((got[failed] as PromiseRejectedResult).reason as Error).message}`;
    if (!ok.length && got.length) throw (got[failed] as PromiseRejectedResult).reason;
    return ok.flatMap((g) => g.value);
  }

  /** Logs accepted and not yet persisted, over every shard. */
  async backlog(): Promise<number> {
    return sum(await Promise.all(this.shards.map((s) => s.backlog())));
  }
}

/** A cluster's answer to a command it did not run: the slot moved, is moving, or has no master yet. */
const REDIRECTED = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/;
/** Tries of a replicated write the cluster redirects, and the pause before each retry (times the try), in ms. */
const REDIRECTED_ATTEMPTS = 5;
const REDIRECTED_PAUSE_MS = 50;

const refreshSlots = (c: Cluster): Promise<void> =>
  new Promise((resolve) => c.refreshSlotsCache(() => resolve()));

/** Longest a persister's read blocks on one shard of a cluster, in ms. */
const CLUSTER_BLOCK_MS = 50;

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
