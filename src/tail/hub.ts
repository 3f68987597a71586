/**
 * Live tails of one HTTP worker: one shared reader of the queue's streams
 * (one per shard) and the fan-out of each frame to the tails whose filter
 * takes some of its logs.
 *
 *   logs:stream, or logs:stream:{0} .. {n-1} --XREAD BLOCK (own connection, only while someone tails)--> reader
 *     -> per frame: its summary (when short) says whether any filter can match, else the frame is skipped
 *     -> only the rows of followed devices decoded (all of them when a tail follows every device), once;
 *        one "logs" message serialized per distinct filter
 *     -> each tail of that filter: sent, or counted as skipped while its socket
 *        holds more than tail.max_buffer_bytes unsent
 *
 * On one Redis, one XREAD reads every shard's stream. On a Redis Cluster the
 * shards' streams are on different slots, which no command spans: each shard
 * has its own XREAD loop (a lane) on the reader's client, which holds one
 * connection per node, so the blocked reads of one node's shards wait for
 * each other: each blocks CLUSTER_BLOCK_MS at most. A lane that fails retries
 * on its own while the others read on; tails learn that the queue is
 * unavailable only when no lane can read.
 *
 * Positions (position.ts): the reader's is the last entry read of each
 * shard, and a live tail's messages carry it. A tail that resumes (`after`
 * older than the reader's position on some shard) first reads the entries of
 * every shard after it with XRANGE on the worker's own connection, merged in
 * ID order and paced by its socket, while the reader queues that tail's live
 * messages; then it takes the queue and the live messages, each entry once:
 * until the reader has passed what it read on every shard, the tail keeps
 * those IDs (its floor), drops the entries at or before them, and its
 * messages carry the later ID of each shard.
 */
import type { Config } from '../config';
import { connectRedis, redisClient, type RedisClient } from '../connections';
import type { Logger } from '../log';
import { tailLogsSent, tailLogsSkipped, tailSubscribers } from '../metrics';
import { frameLogs, isFrame, parseEntry, parseSummary, summarizeRows, type Frame, type FrameLog, type Raw } from '../queue/frame';
import { shardKeys } from '../queue/keys';
import type { TailFilter } from './filter';
import { errorMessage, logsMessage, readyMessage, repositioned, skippedMessage, statusMessage } from './messages';
import { compareIds, formatPosition, justBefore } from './position';

/** test/tail.test.ts compares positions with it. */
export { compareIds } from './position';

/** Longest XREAD BLOCK on one Redis: how soon a stopped reader notices, not a latency (XREAD returns as soon as an entry arrives). */
const BLOCK_MS = 1000;
/**
 * Longest XREAD BLOCK of one shard on a Redis Cluster: a log waits at most
 * this times the shards on its node (while the others' reads block first);
 * idle, each node gets 1000 / CLUSTER_BLOCK_MS reads a second per worker.
 */
const CLUSTER_BLOCK_MS = 50;
/** Entries per XREAD (per stream) and per XRANGE page of a catch-up. */
const READ_COUNT = 256;
/** Live messages queued for one tail while it catches up; beyond, their logs are counted as skipped. */
const MAX_QUEUED = 1024;
/**
 * A frame's summary (a tally per device, level and hour) is read to skip the
 * frame when it is this many times shorter than its rows; a longer one (a
 * frame of many devices) costs about what reading the rows' device fields
 * does, and those are read instead.
 */
const SUMMARY_RATIO = 8;
/** Backoff between reads while Redis is unreachable, in ms. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

/** The connection name of the reader (CLIENT LIST shows it while someone tails). */
export const READER_NAME = 'logd:tail';

/** Where a tail sends: a WebSocket, as src/http/tail.ts adapts it. */
export interface TailSink {
  /** false: the message was dropped, not queued */
  send(text: string): boolean;
  /** bytes queued and not yet written to the socket */
  buffered(): number;
  end(code: number, reason: string): void;
  /** runs `fn`, whose sends go out in one write */
  cork(fn: () => void): void;
}

interface Group {
  filter: TailFilter;
  subs: Set<Subscriber>;
}

/** A logs message of one entry for the tails of a filter. */
interface Message {
  shard: number;
  id: string;
  /** the reader's position when it read the entry, which `text` carries */
  at: string;
  text: string;
  count: number;
}

/** A message on its way to a socket (count 0: a skipped message). */
interface Outgoing {
  text: string;
  count: number;
}

export class Subscriber {
  /** the position of the last message it was given or whose logs were counted as skipped */
  position = '';
  /** per shard, the entries it was given up to, while some is after the reader's position (it resumed) */
  floor: string[] | undefined;
  /** matching logs not sent since the last skipped message */
  skipped = 0;
  /** while it reads the entries after `after`: the live messages for it, and what did not fit */
  catchup: { queue: Message[]; overflow: number; last: Message | undefined } | undefined;
  /** messages of the frames being fanned out, sent together once they all are */
  outbox: Outgoing[] = [];
  outboxBytes = 0;
  closed = false;
  live = false;
  wake: (() => void) | undefined;

  /** `after`: one entry ID per shard */
  constructor(readonly sink: TailSink, readonly filter: TailFilter, readonly after: string[] | undefined) {}
}

/**
 * When entries after `after` may have been trimmed: the position to read on
 * from, else undefined. Trimming removes the oldest entries, so nothing after
 * `after` is gone while the stream still holds an entry at or before it, or
 * while it never lost an entry (entries-added = length). Otherwise the
 * entries between `after` and the first one left are gone, if there were any
 * (the stream keeps no trace of their IDs).
 */
async function trimmedAfter(redis: RedisClient, stream: string, after: string): Promise<string | undefined> {
  let info: unknown[];
  try {
    info = (await redis.call('XINFO', 'STREAM', stream)) as unknown[];
  } catch (err) {
    if (/no such key/i.test((err as Error).message)) return undefined;
    throw err;
  }
  const field = (name: string): unknown => info[info.indexOf(name) + 1];
  if (Number(field('entries-added')) === Number(field('length'))) return undefined;
  const first = (field('first-entry') as Raw | null)?.[0];
  if (first === undefined) {
    const last = String(field('last-generated-id'));
    return compareIds(last, after) > 0 ? last : undefined;
  }
  return compareIds(first, after) > 0 ? justBefore(first) : undefined;
}

/** The tallies of a frame, from its summary or else its rows. */
const talliesOf = (f: Frame) => parseSummary(f.summary, f.n) ?? summarizeRows(f.rows);

class Reader {
  readonly conn: RedisClient;
  /** per shard, the last entry read: every tail is live after it */
  readonly position: string[];
  stopped = false;
  /** lanes that cannot read */
  down = 0;
  /** the tails were told that the queue is unavailable */
  reported = false;
  private text: string | undefined;

  constructor(cfg: Config) {
    this.conn = redisClient(cfg, READER_NAME, { blocking: true });
    this.conn.on('error', () => undefined); // a failed read says it
    this.position = new Array<string>(cfg.queue.shards).fill('0-0');
  }

  /** The position as a tail receives it. */
  get at(): string {
    this.text ??= formatPosition(this.position);
    return this.text;
  }

  read(shard: number, id: string): void {
    this.position[shard] = id;
    this.text = undefined;
  }
}

export class TailHub {
  /** tails this worker admits: its share of tail.max_subscribers */
  readonly capacity: number;
  /** the stream of each shard */
  private readonly streams: string[];
  private readonly shardOfStream: Map<string, number>;
  /** the shards each XREAD reads: all of them on one Redis, one on a Redis Cluster */
  private readonly lanes: number[][];
  private readonly blockMs: number;
  private readonly maxBuffer: number;
  private readonly subscribers = new Set<Subscriber>();
  /** live tails by filter: one serialized message per filter and frame */
  private readonly groups = new Map<string, Group>();
  /** the groups that follow one device, by device, and the others: a frame's devices find the groups it concerns */
  private readonly byDevice = new Map<string, Group[]>();
  private readonly anyDevice = new Set<Group>();
  private readonly followed = (device: string): boolean => this.byDevice.has(device);
  private reader: Reader | undefined;
  private started: Promise<void> | undefined;
  /** tails with messages in their outbox, while a read's frames are fanned out */
  private readonly corked = new Set<Subscriber>();
  private batching = false;

  constructor(private readonly cfg: Config, private readonly redis: RedisClient, private readonly log: Logger) {
    this.capacity = Math.ceil(cfg.tail.max_subscribers / cfg.server.workers);
    const shards = [...Array(cfg.queue.shards).keys()];
    this.streams = shards.map((i) => shardKeys(cfg, i).stream);
    this.shardOfStream = new Map(this.streams.map((s, i) => [s, i]));
    const cluster = cfg.redis.cluster.length > 0;
    this.lanes = cluster ? shards.map((i) => [i]) : [shards];
    this.blockMs = cluster ? CLUSTER_BLOCK_MS : BLOCK_MS;
    this.maxBuffer = cfg.tail.max_buffer_bytes;
  }

  get size(): number {
    return this.subscribers.size;
  }

  /** Starts a tail: ready, then (after a catch-up when it resumes) every matching log; `after` has one entry ID per shard. */
  subscribe(sink: TailSink, filter: TailFilter, after: string[] | undefined): Subscriber {
    const sub = new Subscriber(sink, filter, after);
    this.subscribers.add(sub);
    tailSubscribers.inc();
    void this.begin(sub).catch((err) => {
      this.log.warn({ err: (err as Error).message }, 'a live tail cannot read the stream');
      this.close(sub, 1013, 'LOGD_QUEUE_UNAVAILABLE', 'the queue (Redis) is unavailable; retry later');
    });
    return sub;
  }

  /** The tail's socket closed. */
  unsubscribe(sub: Subscriber): void {
    if (!this.subscribers.delete(sub)) return;
    sub.closed = true;
    sub.wake?.();
    tailSubscribers.dec();
    const g = this.groups.get(sub.filter.key);
    g?.subs.delete(sub);
    if (g && !g.subs.size) this.dropGroup(g);
    if (!this.subscribers.size) this.stopReader();
  }

  /** The tail's socket wrote some of what it held. */
  drained(sub: Subscriber): void {
    sub.wake?.();
    if (sub.live) this.flushSkipped(sub);
  }

  /** Closes every tail (the worker stops). */
  closeAll(code: number, reason: string): void {
    for (const sub of [...this.subscribers]) sub.sink.end(code, reason);
  }

  /** Sends an error message and closes. */
  private close(sub: Subscriber, code: number, error: 'LOGD_QUEUE_UNAVAILABLE', detail: string): void {
    if (sub.closed) return;
    sub.sink.send(errorMessage(error, detail));
    sub.sink.end(code, detail);
  }

  private async begin(sub: Subscriber): Promise<void> {
    const reader = await this.startReader();
    if (sub.closed) return;
    const live = reader.position;
    const after = sub.after;
    const resumes = after !== undefined && after.some((id, i) => compareIds(id, live[i]) < 0);
    if (after !== undefined && after.some((id, i) => compareIds(id, live[i]) !== 0)) sub.floor = [...after];
    sub.position = after === undefined ? reader.at : formatPosition(after);
    sub.sink.send(readyMessage(sub.position));
    if (resumes) sub.catchup = { queue: [], overflow: 0, last: undefined };
    (this.groups.get(sub.filter.key) ?? this.addGroup(sub.filter)).subs.add(sub);
    if (resumes) await this.catchUp(sub);
    sub.live = true;
  }

  private addGroup(filter: TailFilter): Group {
    const g: Group = { filter, subs: new Set() };
    this.groups.set(filter.key, g);
    if (filter.device === undefined) this.anyDevice.add(g);
    else this.byDevice.set(filter.device, [...(this.byDevice.get(filter.device) ?? []), g]);
    return g;
  }

  private dropGroup(g: Group): void {
    this.groups.delete(g.filter.key);
    this.anyDevice.delete(g);
    const d = g.filter.device;
    if (d === undefined) return;
    const left = this.byDevice.get(d)!.filter((x) => x !== g);
    if (left.length) this.byDevice.set(d, left);
    else this.byDevice.delete(d);
  }

  /** Reads every shard's entries between the tail's floor and the live messages queued for it, then takes the queue. */
  private async catchUp(sub: Subscriber): Promise<void> {
    const floor = sub.floor!;
    const gone = await Promise.all(this.streams.map((stream, i) => trimmedAfter(this.redis, stream, floor[i])));
    if (gone.some((id) => id !== undefined)) {
      gone.forEach((id, i) => { if (id !== undefined) floor[i] = id; });
      sub.position = formatPosition(floor);
      sub.sink.send(skippedMessage('expired', null, sub.position));
    }
    for await (const [shard, raw] of this.entriesAfter(floor)) {
      if (sub.closed) return;
      floor[shard] = raw[0];
      const e = parseEntry(raw, 1);
      const device = sub.filter.device;
      const logs = isFrame(e) && sub.filter.wants(talliesOf(e)) ? frameLogs(e.rows, device === undefined ? undefined : (d) => d === device).filter((l) => sub.filter.matches(l)) : [];
      if (logs.length) {
        while (!sub.closed && sub.sink.buffered() > this.maxBuffer) await new Promise<void>((resolve) => { sub.wake = resolve; });
        sub.position = formatPosition(floor);
        this.send(sub, logsMessage(sub.position, logs), logs.length);
      }
    }
    sub.position = formatPosition(floor);
    const { queue, overflow, last } = sub.catchup!;
    sub.catchup = undefined;
    for (const m of queue) this.offer(sub, m, m.at.split(','));
    if (last) {
      sub.skipped += overflow;
      sub.position = this.advance(sub, last.at.split(','), last.at);
      tailLogsSkipped.inc({ reason: 'slow' }, overflow);
    }
    this.flushSkipped(sub);
  }

  /** Every shard's entries after `from` (one ID per shard), oldest first across the shards, read a page per shard at a time. */
  private async *entriesAfter(from: readonly string[]): AsyncGenerator<[number, Raw]> {
    const page = (shard: number, after: string) => this.redis.xrange(this.streams[shard], `(${after}`, '+', 'COUNT', READ_COUNT) as Promise<Raw[]>;
    const pages = await Promise.all(from.map((id, i) => page(i, id)));
    const next = pages.map(() => 0);
    for (;;) {
      let shard = -1;
      for (let i = 0; i < pages.length; i++) {
        if (next[i] < pages[i].length && (shard < 0 || compareIds(pages[i][next[i]][0], pages[shard][next[shard]][0]) < 0)) shard = i;
      }
      if (shard < 0) return;
      const raw = pages[shard][next[shard]++];
      if (next[shard] === READ_COUNT) {
        pages[shard] = await page(shard, raw[0]);
        next[shard] = 0;
      }
      yield [shard, raw];
    }
  }

  /**
   * A tail's position once it holds every entry up to `at` (a message's
   * reader position, as IDs and as text): `at`, or while the tail has a
   * floor, the later ID of each shard. The floor goes once `at` reaches it
   * on every shard.
   */
  private advance(sub: Subscriber, at: readonly string[], text: string): string {
    const floor = sub.floor;
    if (!floor) return text;
    let ahead = false;
    for (let i = 0; i < floor.length; i++) {
      if (compareIds(floor[i], at[i]) > 0) ahead = true;
      else floor[i] = at[i];
    }
    if (ahead) return formatPosition(floor);
    sub.floor = undefined;
    return text;
  }

  /** Gives a live message to a tail: queued while it catches up, else sent unless it holds too much; `at` is m.at as IDs. */
  private offer(sub: Subscriber, m: Message, at: readonly string[]): void {
    const c = sub.catchup;
    if (c) {
      if (c.queue.length < MAX_QUEUED) c.queue.push(m);
      else {
        c.overflow += m.count;
        c.last = m;
      }
      return;
    }
    if (sub.floor && compareIds(m.id, sub.floor[m.shard]) <= 0) return;
    this.flushSkipped(sub);
    sub.position = this.advance(sub, at, m.at);
    if (sub.skipped || this.held(sub) > this.maxBuffer) {
      sub.skipped += m.count;
      tailLogsSkipped.inc({ reason: 'slow' }, m.count);
      return;
    }
    this.post(sub, sub.position === m.at ? m.text : repositioned(m.text, m.at, sub.position), m.count);
  }

  /** Bytes a tail holds: unsent on its socket, and in its outbox. */
  private held(sub: Subscriber): number {
    return sub.sink.buffered() + sub.outboxBytes;
  }

  /** Sends, or while a read's frames are fanned out, puts in the tail's outbox (count 0: a skipped message). */
  private post(sub: Subscriber, text: string, count: number): void {
    if (!this.batching) {
      if (count) this.send(sub, text, count);
      else sub.sink.send(text);
      return;
    }
    sub.outbox.push({ text, count });
    sub.outboxBytes += text.length;
    this.corked.add(sub);
  }

  /** Sends each tail's outbox in one write: a syscall per tail and read, not per message. */
  private flushOutboxes(): void {
    for (const sub of this.corked) {
      const out = sub.outbox;
      sub.outbox = [];
      sub.outboxBytes = 0;
      if (sub.closed) continue;
      sub.sink.cork(() => {
        for (const o of out) {
          if (o.count) this.send(sub, o.text, o.count);
          else sub.sink.send(o.text);
        }
      });
    }
    this.corked.clear();
  }

  /** Sends a logs message; one the socket drops is counted as skipped (the tail's position already covers it). */
  private send(sub: Subscriber, text: string, count: number): void {
    if (sub.sink.send(text)) {
      tailLogsSent.inc(count);
      return;
    }
    sub.skipped += count;
    tailLogsSkipped.inc({ reason: 'slow' }, count);
  }

  /** Says how many logs were skipped, once the socket holds less than the limit. */
  private flushSkipped(sub: Subscriber): void {
    if (!sub.skipped || sub.closed || this.held(sub) > this.maxBuffer) return;
    const text = skippedMessage('slow', sub.skipped, sub.position);
    if (this.batching) {
      this.post(sub, text, 0);
      sub.skipped = 0;
    } else if (sub.sink.send(text)) sub.skipped = 0;
  }

  /** The reader, started by the first tail: its position is each stream's last entry. */
  private startReader(): Promise<Reader> {
    if (this.reader && this.started) return this.started.then(() => this.reader!);
    const reader = new Reader(this.cfg);
    this.reader = reader;
    this.started = (async () => {
      await connectRedis(reader.conn);
      const lasts = await Promise.all(this.streams.map((stream) => reader.conn.xrevrange(stream, '+', '-', 'COUNT', 1) as Promise<Raw[]>));
      lasts.forEach(([last], i) => reader.read(i, last?.[0] ?? '0-0'));
      for (const lane of this.lanes) void this.run(reader, lane);
    })();
    this.started.catch(() => {
      if (this.reader === reader) this.stopReader();
    });
    return this.started.then(() => reader);
  }

  private stopReader(): void {
    const reader = this.reader;
    this.reader = undefined;
    this.started = undefined;
    if (!reader) return;
    reader.stopped = true;
    reader.conn.disconnect();
  }

  /** Reads the streams of some shards (a lane) until the reader stops; a failing lane retries with backoff. */
  private async run(reader: Reader, lane: number[]): Promise<void> {
    const streams = lane.map((i) => this.streams[i]);
    let failing = false;
    let backoff = RETRY_MIN_MS;
    while (!reader.stopped) {
      try {
        // Right after an outage, one read without BLOCK tells the tails at once that the queue is back.
        const res = (await reader.conn.call(
          'XREAD', ...(failing ? [] : ['BLOCK', this.blockMs]), 'COUNT', READ_COUNT, 'STREAMS', ...streams, ...lane.map((i) => reader.position[i]),
        )) as [string, Raw[]][] | null;
        if (reader.stopped) return;
        if (failing) {
          failing = false;
          await this.recovered(reader, lane);
        }
        backoff = RETRY_MIN_MS;
        if (res) this.fanOut(reader, res);
      } catch (err) {
        if (reader.stopped) return;
        if (!failing) {
          failing = true;
          this.lost(reader, lane, err as Error);
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, RETRY_MAX_MS);
      }
    }
  }

  /** A lane cannot read: the tails hear of it once no lane can. */
  private lost(reader: Reader, lane: number[], err: Error): void {
    reader.down++;
    this.log.warn({ err: err.message, shards: lane }, 'live tails lost the stream; retrying');
    if (reader.down < this.lanes.length || reader.reported) return;
    reader.reported = true;
    this.broadcast(statusMessage(false));
  }

  /** A lane reads again: its shards read on from the reader's position, or the tails learn that what followed it was trimmed. */
  private async recovered(reader: Reader, lane: number[]): Promise<void> {
    const gone = await Promise.all(lane.map((i) => trimmedAfter(reader.conn, this.streams[i], reader.position[i])));
    reader.down--;
    this.log.info({ shards: lane }, 'live tails read the stream again');
    if (reader.reported) {
      reader.reported = false;
      this.broadcast(statusMessage(true));
    }
    if (gone.every((id) => id === undefined)) return;
    gone.forEach((id, i) => { if (id !== undefined) reader.read(lane[i], id); });
    for (const sub of this.subscribers) {
      if (!sub.live || sub.closed) continue;
      sub.position = this.advance(sub, reader.position, reader.at);
      sub.sink.send(skippedMessage('expired', null, sub.position));
    }
  }

  private broadcast(text: string): void {
    for (const sub of this.subscribers) if (sub.live || sub.catchup) sub.sink.send(text);
  }

  /** The entries of one XREAD, stream by stream. */
  private fanOut(reader: Reader, res: [string, Raw[]][]): void {
    this.batching = true;
    try {
      for (const [stream, entries] of res) this.fanOutFrames(reader, this.shardOfStream.get(stream)!, entries);
    } finally {
      this.batching = false;
      this.flushOutboxes();
    }
  }

  private fanOutFrames(reader: Reader, shard: number, entries: Raw[]): void {
    for (const raw of entries) {
      const id = raw[0];
      reader.read(shard, id);
      const e = parseEntry(raw, 1);
      if (!isFrame(e)) continue;
      // The tails that follow every device, of those the frame can concern.
      let all = [...this.anyDevice];
      if (e.summary !== undefined && e.summary.length * SUMMARY_RATIO < e.rows.length) {
        const tallies = talliesOf(e);
        all = all.filter((g) => g.filter.wants(tallies));
        if (!all.length && !tallies.some((t) => this.byDevice.get(t[0])?.some((g) => g.filter.takesLevel(t[1])))) continue;
      }
      // Only the rows of followed devices are decoded, unless a tail follows every device.
      const logs = frameLogs(e.rows, all.length ? undefined : this.followed);
      const byDevice = new Map<string, FrameLog[]>();
      for (const l of logs) {
        const list = byDevice.get(l.device_id);
        if (list) list.push(l);
        else byDevice.set(l.device_id, [l]);
      }
      for (const [device, list] of byDevice) for (const g of this.byDevice.get(device) ?? []) this.publish(reader, g, shard, id, list);
      for (const g of all) this.publish(reader, g, shard, id, logs);
    }
  }

  /** The logs a group takes of these, serialized once for all its tails. */
  private publish(reader: Reader, g: Group, shard: number, id: string, logs: FrameLog[]): void {
    const matched = logs.filter((l) => g.filter.matches(l));
    if (!matched.length) return;
    const at = reader.at;
    const m: Message = { shard, id, at, text: logsMessage(at, matched), count: matched.length };
    for (const sub of g.subs) this.offer(sub, m, reader.position);
  }
}
