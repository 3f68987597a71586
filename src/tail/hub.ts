/**
 * Live tails of one HTTP worker: one shared reader of the stream and the
 * fan-out of each frame to the tails whose filter takes some of its logs.
 *
 *   logs:stream --XREAD BLOCK (own connection, only while someone tails)--> reader
 *     -> per frame: its summary (when short) says whether any filter can match, else the frame is skipped
 *     -> only the rows of followed devices decoded (all of them when a tail follows every device), once;
 *        one "logs" message serialized per distinct filter
 *     -> each tail of that filter: sent, or counted as skipped while its socket
 *        holds more than tail.max_buffer_bytes unsent
 *
 * A tail that resumes (`after` older than the reader's position) first reads
 * the entries after it with XRANGE on the worker's own connection, paced by
 * its socket, while the reader queues that tail's live messages; then it
 * takes the queue and the live messages, each entry once (positions only
 * grow).
 */
import type Redis from 'ioredis';
import type { Config } from '../config';
import { redisClient } from '../connections';
import type { Logger } from '../log';
import { tailLogsSent, tailLogsSkipped, tailSubscribers } from '../metrics';
import { frameLogs, isFrame, parseEntry, parseSummary, summarizeRows, type Frame, type FrameLog, type Raw } from '../queue/frame';
import type { TailFilter } from './filter';
import { errorMessage, logsMessage, readyMessage, skippedMessage, statusMessage } from './messages';

/** Longest XREAD BLOCK: how soon a stopped reader notices, not a latency (XREAD returns as soon as an entry arrives). */
const BLOCK_MS = 1000;
/** Entries per XREAD and per XRANGE page of a catch-up. */
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

/** A stream entry ID compared with another: <0, 0, >0. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-');
  const [bm, bs] = b.split('-');
  if (am !== bm) return Number(am) - Number(bm);
  return as.length !== bs.length ? as.length - bs.length : as < bs ? -1 : as > bs ? 1 : 0;
}

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

interface Queued {
  id: string;
  text: string;
  count: number;
}

export class Subscriber {
  /** the last entry whose logs it was given or counted as skipped */
  position = '0-0';
  /** matching logs not sent since the last skipped message */
  skipped = 0;
  /** while it reads the entries after `after`: the live messages for it, and what did not fit */
  catchup: { queue: Queued[]; overflow: number; overflowId: string } | undefined;
  /** messages of the frames being fanned out, sent together once they all are */
  outbox: Queued[] = [];
  outboxBytes = 0;
  closed = false;
  live = false;
  wake: (() => void) | undefined;

  constructor(readonly sink: TailSink, readonly filter: TailFilter, readonly after: string | undefined) {}
}

/** The position just before entry `id`: an exclusive start that reads `id` first. */
function justBefore(id: string): string {
  const [ms, seq] = id.split('-');
  if (seq !== '0') return `${ms}-${BigInt(seq) - 1n}`;
  return `${Number(ms) - 1}-18446744073709551615`;
}

/**
 * When entries after `after` may have been trimmed: the position to read on
 * from, else undefined. Trimming removes the oldest entries, so nothing after
 * `after` is gone while the stream still holds an entry at or before it, or
 * while it never lost an entry (entries-added = length). Otherwise the
 * entries between `after` and the first one left are gone, if there were any
 * (the stream keeps no trace of their IDs).
 */
async function trimmedAfter(redis: Redis, stream: string, after: string): Promise<string | undefined> {
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
  readonly conn: Redis;
  /** the last entry read: every tail is live after it */
  position = '0-0';
  stopped = false;
  unavailable = false;

  constructor(cfg: Config) {
    this.conn = redisClient(cfg, READER_NAME, true);
    this.conn.on('error', () => undefined); // a failed read says it
  }
}

export class TailHub {
  /** tails this worker admits: its share of tail.max_subscribers */
  readonly capacity: number;
  private readonly stream: string;
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

  constructor(private readonly cfg: Config, private readonly redis: Redis, private readonly log: Logger) {
    this.capacity = Math.ceil(cfg.tail.max_subscribers / cfg.server.workers);
    this.stream = cfg.redis.stream;
    this.maxBuffer = cfg.tail.max_buffer_bytes;
  }

  get size(): number {
    return this.subscribers.size;
  }

  /** Starts a tail: ready, then (after a catch-up when it resumes) every matching log. */
  subscribe(sink: TailSink, filter: TailFilter, after: string | undefined): Subscriber {
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
    const resumes = sub.after !== undefined && compareIds(sub.after, live) < 0;
    sub.position = sub.after ?? live;
    sub.sink.send(readyMessage(sub.position));
    if (resumes) sub.catchup = { queue: [], overflow: 0, overflowId: '' };
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

  /** Reads the entries between the tail's `after` and the live messages queued for it, then takes the queue. */
  private async catchUp(sub: Subscriber): Promise<void> {
    const expired = await trimmedAfter(this.redis, this.stream, sub.position);
    if (expired !== undefined) {
      sub.position = expired;
      sub.sink.send(skippedMessage('expired', null, expired));
    }
    for (;;) {
      const page = await this.redis.xrange(this.stream, `(${sub.position}`, '+', 'COUNT', READ_COUNT) as Raw[];
      for (const raw of page) {
        if (sub.closed) return;
        const e = parseEntry(raw, 1);
        const device = sub.filter.device;
        const logs = isFrame(e) && sub.filter.wants(talliesOf(e)) ? frameLogs(e.rows, device === undefined ? undefined : (d) => d === device).filter((l) => sub.filter.matches(l)) : [];
        if (logs.length) {
          while (!sub.closed && sub.sink.buffered() > this.maxBuffer) await new Promise<void>((resolve) => { sub.wake = resolve; });
          this.send(sub, raw[0], logsMessage(raw[0], logs), logs.length);
        }
        sub.position = raw[0];
      }
      if (page.length < READ_COUNT) break;
    }
    const { queue, overflow, overflowId } = sub.catchup!;
    sub.catchup = undefined;
    for (const q of queue) this.offer(sub, q.id, q.text, q.count);
    if (overflow) {
      sub.skipped += overflow;
      if (compareIds(overflowId, sub.position) > 0) sub.position = overflowId;
      tailLogsSkipped.inc({ reason: 'slow' }, overflow);
    }
    this.flushSkipped(sub);
  }

  /** Gives a live message to a tail: queued while it catches up, else sent unless it holds too much. */
  private offer(sub: Subscriber, id: string, text: string, count: number): void {
    const c = sub.catchup;
    if (c) {
      if (c.queue.length < MAX_QUEUED) c.queue.push({ id, text, count });
      else {
        c.overflow += count;
        c.overflowId = id;
      }
      return;
    }
    if (compareIds(id, sub.position) <= 0) return;
    this.flushSkipped(sub);
    sub.position = id;
    if (sub.skipped || this.held(sub) > this.maxBuffer) {
      sub.skipped += count;
      tailLogsSkipped.inc({ reason: 'slow' }, count);
      return;
    }
    this.post(sub, id, text, count);
  }

  /** Bytes a tail holds: unsent on its socket, and in its outbox. */
  private held(sub: Subscriber): number {
    return sub.sink.buffered() + sub.outboxBytes;
  }

  /** Sends, or while a read's frames are fanned out, puts in the tail's outbox (count 0: a skipped message). */
  private post(sub: Subscriber, id: string, text: string, count: number): void {
    if (!this.batching) {
      if (count) this.send(sub, id, text, count);
      else sub.sink.send(text);
      return;
    }
    sub.outbox.push({ id, text, count });
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
        for (const q of out) {
          if (q.count) this.send(sub, q.id, q.text, q.count);
          else sub.sink.send(q.text);
        }
      });
    }
    this.corked.clear();
  }

  private send(sub: Subscriber, id: string, text: string, count: number): void {
    if (sub.sink.send(text)) {
      tailLogsSent.inc(count);
      return;
    }
    sub.skipped += count;
    tailLogsSkipped.inc({ reason: 'slow' }, count);
    if (compareIds(id, sub.position) > 0) sub.position = id;
  }

  /** Says how many logs were skipped, once the socket holds less than the limit. */
  private flushSkipped(sub: Subscriber): void {
    if (!sub.skipped || sub.closed || this.held(sub) > this.maxBuffer) return;
    const text = skippedMessage('slow', sub.skipped, sub.position);
    if (this.batching) {
      this.post(sub, '', text, 0);
      sub.skipped = 0;
    } else if (sub.sink.send(text)) sub.skipped = 0;
  }

  /** The reader, started by the first tail: its position is the stream's last entry. */
  private startReader(): Promise<Reader> {
    if (this.reader && this.started) return this.started.then(() => this.reader!);
    const reader = new Reader(this.cfg);
    this.reader = reader;
    this.started = (async () => {
      await reader.conn.connect();
      const [last] = (await reader.conn.xrevrange(this.stream, '+', '-', 'COUNT', 1)) as Raw[];
      reader.position = last?.[0] ?? '0-0';
      void this.run(reader);
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

  private async run(reader: Reader): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!reader.stopped) {
      try {
        // Right after an outage, one read without BLOCK tells the tails at once that the queue is back.
        const res = (await reader.conn.call(
          'XREAD', ...(reader.unavailable ? [] : ['BLOCK', BLOCK_MS]), 'COUNT', READ_COUNT, 'STREAMS', this.stream, reader.position,
        )) as [string, Raw[]][] | null;
        if (reader.stopped) return;
        if (reader.unavailable) await this.recovered(reader);
        backoff = RETRY_MIN_MS;
        if (res) this.fanOut(reader, res[0][1]);
      } catch (err) {
        if (reader.stopped) return;
        if (!reader.unavailable) {
          reader.unavailable = true;
          this.log.warn({ err: (err as Error).message }, 'live tails lost the stream; retrying');
          this.broadcast(statusMessage(false));
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, RETRY_MAX_MS);
      }
    }
  }

  /** Back after an outage: tails read on from the reader's position, or learn that what followed it was trimmed. */
  private async recovered(reader: Reader): Promise<void> {
    const expired = await trimmedAfter(reader.conn, this.stream, reader.position);
    reader.unavailable = false;
    this.log.info('live tails read the stream again');
    this.broadcast(statusMessage(true));
    if (expired === undefined) return;
    reader.position = expired;
    for (const sub of this.subscribers) {
      if (!sub.live || sub.closed) continue;
      sub.position = expired;
      sub.sink.send(skippedMessage('expired', null, expired));
    }
  }

  private broadcast(text: string): void {
    for (const sub of this.subscribers) if (sub.live || sub.catchup) sub.sink.send(text);
  }

  private fanOut(reader: Reader, entries: Raw[]): void {
    this.batching = true;
    try {
      this.fanOutFrames(reader, entries);
    } finally {
      this.batching = false;
      this.flushOutboxes();
    }
  }

  private fanOutFrames(reader: Reader, entries: Raw[]): void {
    for (const raw of entries) {
      const id = raw[0];
      reader.position = id;
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
      for (const [device, list] of byDevice) for (const g of this.byDevice.get(device) ?? []) this.publish(g, id, list);
      for (const g of all) this.publish(g, id, logs);
    }
  }

  /** The logs a group takes of these, serialized once for all its tails. */
  private publish(g: Group, id: string, logs: FrameLog[]): void {
    const matched = logs.filter((l) => g.filter.matches(l));
    if (!matched.length) return;
    const text = logsMessage(id, matched);
    for (const sub of g.subs) this.offer(sub, id, text, matched.length);
  }

}
