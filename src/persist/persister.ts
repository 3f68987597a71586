/**
 * The persister: reads frames with the consumer group, loads their rows into
 * `logs` with one COPY per batch, and acknowledges only after COMMIT.
 *
 *   XREADGROUP (own pending first, then new) -> batch (rows / wait bounded)
 *     -> BEGIN; record entry IDs (skip those already recorded); COPY; COMMIT
 *     -> ack.lua (XACK + backlog + XTRIM MINID)
 *
 * A PostgreSQL outage is retried forever with capped backoff. A frame
 * PostgreSQL refuses as data (class 22/23) is isolated by loading the batch
 * frame by frame, and only the refused frames go to the dead-letter stream.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Config } from '../config';
import { pgConfig } from '../connections';
import type { Logger } from '../log';
import { SQL } from '../sql';
import { isFrame, type BadEntry, type Frame, type Queue } from '../queue/stream';
import { COPY_COLUMNS } from './copy';

const COPY_SQL = `COPY logs (${COPY_COLUMNS.join(', ')}) FROM STDIN`;
/** Frames asked for per XREADGROUP. */
const READ_COUNT = 500;
/** Longest XREADGROUP BLOCK while idle, so a stop request is noticed promptly. */
const IDLE_BLOCK_MS = 500;
const PRUNE_EVERY_MS = 30_000;

/** PostgreSQL refused the data itself: retrying cannot help. */
const isDataError = (err: unknown): boolean => /^2[23]/.test(String((err as { code?: string }).code ?? ''));

const splitId = (id: string): [string, string] => id.split('-') as [string, string];

export interface PersistStats {
  batches: number;
  rows: number;
  dead: number;
  lastError?: string;
}

export class Persister {
  private running = true;
  private readonly pool: pg.Pool;
  private lastPrune = 0;
  readonly stats: PersistStats = { batches: 0, rows: 0, dead: 0 };

  constructor(
    private readonly cfg: Config,
    private readonly queue: Queue,
    private readonly consumer: string,
    private readonly log: Logger,
  ) {
    this.pool = new pg.Pool({ ...pgConfig(cfg), max: 1 });
    this.pool.on('error', (err) => this.log.warn({ err }, 'idle PostgreSQL connection failed'));
  }

  /** Asks the loop to finish its current batch and return. */
  stop(): void {
    this.running = false;
  }

  /** Runs until stop(); then drains what the stream still holds (ingest has stopped by then) and returns. */
  async run(): Promise<void> {
    await this.retry('create consumer group', () => this.queue.ensureGroup());
    // Entries this consumer took before a crash come first.
    let pendingFirst = true;
    for (;;) {
      const draining = !this.running;
      const batch = await this.retry('read stream', () => this.fill(pendingFirst, draining));
      if (pendingFirst && batch.length === 0) {
        pendingFirst = false;
        continue;
      }
      if (batch.length) await this.settle(batch);
      else if (draining) break;
      await this.maybePrune();
    }
    await this.pool.end();
  }

  /**
   * Collects frames until batch_max_rows logs or batch_max_wait_ms after the
   * first. Pending entries are read once per batch (re-reading '0' returns
   * the same ones); a draining persister never blocks.
   */
  private async fill(pendingOnly: boolean, draining: boolean): Promise<(Frame | BadEntry)[]> {
    const { batch_max_rows: maxRows, batch_max_wait_ms: maxWait } = this.cfg.persister;
    if (pendingOnly) return this.queue.read(this.consumer, READ_COUNT, undefined, true);
    const batch: (Frame | BadEntry)[] = [];
    let rows = 0;
    let deadline = Infinity;
    while (rows < maxRows) {
      const left = deadline - Date.now();
      if (batch.length && left <= 0) break;
      const block = draining ? undefined : batch.length ? Math.max(1, Math.ceil(left)) : IDLE_BLOCK_MS;
      const got = await this.queue.read(this.consumer, READ_COUNT, block, false);
      if (!got.length) {
        if (batch.length || draining || !this.running) break;
        continue;
      }
      if (!batch.length) deadline = Date.now() + maxWait;
      for (const e of got) {
        batch.push(e);
        if (isFrame(e)) rows += e.n;
      }
    }
    return batch;
  }

  /** Persists a batch, acknowledges it, and dead-letters what cannot be stored. */
  private async settle(batch: (Frame | BadEntry)[]): Promise<void> {
    const frames = batch.filter(isFrame);
    for (const bad of batch.filter((e): e is BadEntry => !isFrame(e))) await this.deadLetter(bad, bad.why);
    if (!frames.length) return;
    try {
      await this.retry('persist batch', () => this.load(frames), true);
    } catch (err) {
      if (!isDataError(err)) throw err;
      // Some frame holds data PostgreSQL refuses: load one by one to find it.
      for (const f of frames) {
        try {
          await this.retry('persist frame', () => this.load([f]), true);
        } catch (e) {
          if (!isDataError(e)) throw e;
          await this.deadLetter(f, `PostgreSQL refused the rows: ${(e as Error).message}`);
        }
      }
    }
  }

  private async deadLetter(entry: Frame | BadEntry, why: string): Promise<void> {
    this.log.error({ entry: entry.id, why }, 'moving stream entry to the dead-letter stream');
    if (await this.retry('dead-letter entry', () => this.queue.kill(entry, why))) this.stats.dead++;
  }

  /** One transaction: record entry IDs, COPY the new ones' rows, COMMIT; then ack. */
  private async load(frames: Frame[]): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    let loaded = 0;
    try {
      await client.query('BEGIN');
      const ms: string[] = [], seq: string[] = [];
      for (const f of frames) {
        const [a, b] = splitId(f.id);
        ms.push(a);
        seq.push(b);
      }
      const fresh = new Set((await client.query<{ entry_ms: string; entry_seq: string }>(SQL.claimEntries, [ms, seq]))
        .rows.map((r) => `${r.entry_ms}-${r.entry_seq}`));
      const todo = fresh.size === frames.length ? frames : frames.filter((f) => fresh.has(f.id));
      if (todo.length) {
        await pipeline(Readable.from(todo.map((f) => f.rows)), client.query(copyFrom(COPY_SQL)));
        for (const f of todo) loaded += f.n;
      }
      await client.query('COMMIT');
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release(broken && !isDataError(broken) ? broken : undefined);
    }
    await this.retry('acknowledge batch', () => this.queue.ack(frames));
    this.stats.batches++;
    this.stats.rows += loaded;
    this.log.debug({ frames: frames.length, rows: loaded }, 'batch persisted');
  }

  /** Forgets recorded entry IDs that can no longer be redelivered. */
  private async maybePrune(): Promise<void> {
    if (Date.now() - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = Date.now();
    try {
      const first = await this.queue.firstId();
      if (first) await this.pool.query(SQL.pruneIngested, splitId(first));
    } catch (err) {
      this.log.warn({ err }, 'pruning the ingested-entries ledger failed; will retry');
    }
  }

  /**
   * Runs `fn` until it succeeds, backing off exponentially up to
   * persister.retry_max_backoff_ms. Data errors are thrown at once when
   * `dataErrorsFinal` (they would fail the same way forever).
   */
  private async retry<T>(what: string, fn: () => Promise<T>, dataErrorsFinal = false): Promise<T> {
    let delay = 100;
    for (;;) {
      try {
        const v = await fn();
        if (this.stats.lastError) {
          this.log.info({ what }, 'recovered');
          delete this.stats.lastError;
        }
        return v;
      } catch (err) {
        if (dataErrorsFinal && isDataError(err)) throw err;
        this.stats.lastError = `${what}: ${(err as Error).message}`;
        this.log.warn({ err, what, retryInMs: delay }, 'persister step failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, this.cfg.persister.retry_max_backoff_ms);
      }
    }
  }
}
