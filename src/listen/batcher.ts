/**
 * Groups the messages of one syslog connection (or of one worker's UDP
 * socket) into frames: one frame per few milliseconds or rows, so the
 * persister gets frames as full as a batch request's. Frames of a batcher
 * are appended one at a time, in order, so acknowledgements (RELP) go out in
 * order. While the stream refuses, a source that can wait (TCP, TLS, RELP)
 * is paused and the frame retried with backoff: the sender's window fills
 * instead of logs being dropped; a source that cannot (UDP) drops and counts.
 */
import { LogdError } from '../errors';
import { listenerDropped, logsAccepted } from '../metrics';
import type { Accepted } from '../model/entry';
import { encodeFrame, type EncodedFrame } from '../queue/frame';

/** A frame is sent this long after its first message at the latest, in ms. */
const FLUSH_MS = 5;
/** ... or once it holds this many messages or bytes. */
const FLUSH_ROWS = 1000;
const FLUSH_BYTES = 1 << 20;
/** Messages held beyond the frame being appended before the source is paused (or, for UDP, messages are dropped). */
const HOLD_ROWS = 4 * FLUSH_ROWS;
const HOLD_BYTES = 4 * FLUSH_BYTES;
/** Backoff between attempts to append a refused frame, in ms. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;

export interface BatcherOptions<T> {
  listener: string;
  append(frame: EncodedFrame): Promise<unknown>;
  /** the messages tagged `tags` are in the stream */
  stored?(tags: T[]): void;
  /** stop (true) or resume (false) reading the source; absent: the source cannot wait, so refused messages are dropped */
  pause?(paused: boolean): void;
  /** an append failed (called once per streak of failures) */
  failed?(err: LogdError): void;
}

export class Batcher<T = undefined> {
  private entries: Accepted[] = [];
  private tags: T[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private paused = false;
  private retryMs = RETRY_MIN_MS;
  /** the last append failed (failed() is called once per streak) */
  private failing = false;
  private idle: (() => void)[] = [];

  constructor(private readonly o: BatcherOptions<T>) {}

  /** Adds a message of `bytes` raw bytes; false when it was dropped (a source that cannot wait, holding too much). */
  add(e: Accepted, tag: T, bytes: number): boolean {
    if (!this.o.pause && (this.entries.length >= HOLD_ROWS || this.bytes >= HOLD_BYTES)) {
      listenerDropped.inc({ listener: this.o.listener, reason: 'overloaded' });
      return false;
    }
    this.entries.push(e);
    this.tags.push(tag);
    this.bytes += bytes;
    if (this.entries.length >= FLUSH_ROWS || this.bytes >= FLUSH_BYTES) this.send();
    else this.timer ??= setTimeout(() => this.send(), FLUSH_MS);
    if (this.o.pause && !this.paused && (this.entries.length >= HOLD_ROWS || this.bytes >= HOLD_BYTES)) this.setPaused(true);
    return true;
  }

  /** Resolves once every message added so far is stored (or dropped). */
  drain(): Promise<void> {
    this.send();
    if (!this.sending && !this.entries.length) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private setPaused(p: boolean): void {
    this.paused = p;
    this.o.pause?.(p);
  }

  private send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending || !this.entries.length) return;
    const tags = this.tags;
    const frame = encodeFrame(this.entries, Date.now());
    this.entries = [];
    this.tags = [];
    this.bytes = 0;
    this.sending = true;
    this.attempt(frame, tags);
  }

  private attempt(frame: EncodedFrame, tags: T[]): void {
    this.o.append(frame).then(
      () => {
        logsAccepted.inc(frame.n);
        this.retryMs = RETRY_MIN_MS;
        this.failing = false;
        this.o.stored?.(tags);
        this.done();
      },
      (err) => {
        const e = err instanceof LogdError ? err : new LogdError('LOGD_INTERNAL', undefined, { cause: err });
        if (!this.failing) this.o.failed?.(e);
        this.failing = true;
        if (!this.o.pause) {
          listenerDropped.inc({ listener: this.o.listener, reason: e.code === 'LOGD_BACKLOG_FULL' ? 'backlog' : 'unavailable' }, frame.n);
          this.done();
          return;
        }
        if (!this.paused) this.setPaused(true);
        setTimeout(() => this.attempt(frame, tags), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      },
    );
  }

  private done(): void {
    this.sending = false;
    if (this.paused && this.entries.length < HOLD_ROWS && this.bytes < HOLD_BYTES) this.setPaused(false);
    if (this.entries.length >= FLUSH_ROWS || this.bytes >= FLUSH_BYTES || (this.idle.length && this.entries.length)) this.send();
    else if (this.entries.length) this.timer ??= setTimeout(() => this.send(), FLUSH_MS);
    if (!this.sending && !this.entries.length) for (const resolve of this.idle.splice(0)) resolve();
  }
}
