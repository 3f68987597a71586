/**
 * The persister: reads frames with the consumer group, loads their rows into
 * `logs` with one COPY per batch, and acknowledges only after COMMIT.
 *
 *   XREADGROUP / XCLAIM (recovery) -> batch (rows / wait bounded)
 *     -> BEGIN; record entry IDs (skip those already recorded); COPY;
 *        add the loaded frames' counts to the statistics rollups; COMMIT
 *     -> bump.lua (cached reads of the batch's devices and stats go stale)
 *     -> ack.lua (XACK + backlog + XTRIM MINID)
 *
 * PostgreSQL is the bottleneck, so it is kept busy: while a batch is being
 * loaded, the next one is read (on a connection of its own: XREADGROUP BLOCK
 * holds it) and its counts are merged, ready for the next transaction.
 *
 * A PostgreSQL outage is retried forever with capped backoff. A frame
 * PostgreSQL refuses as data (class 22/23) is isolated by loading the batch
 * frame by frame, and only the refused frames go to the dead-letter stream.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { PartialBump, Versions } from '../cache/versions';
import type { Config } from '../config';
import { pgConfig, type RedisClient } from '../connections';
import type { Logger } from '../log';
import { batchDuration, batchSize, deadLettered, rowsPersisted } from '../metrics';
import { SQL } from '../sql';
import { COPY_COLUMNS, isFrame, parseSummary, summarizeRows, type BadEntry, type Frame, type Tally } from '../queue/frame';
import { byShard, type Queue } from '../queue/stream';
import { HOUR_MS } from '../storage/layout';
import { Partitions } from '../storage/partitions';
import { countParams, type CountParams } from './summary';

const COPY_SQL = `COPY logs (${COPY_COLUMNS.join(', ')}) FROM STDIN`;
/** Most frames asked for per XREADGROUP or XCLAIM. */
const READ_COUNT = 500;
/**
 * Logs asked for per XREADGROUP (in frames, by the size of the frames read
 * last): a big reply blocks Redis, and every append with it, while it is
 * built, and a batch should not overshoot batch_max_rows by a whole read.
 */
const READ_ROWS = 5000;
/** Longest XREADGROUP BLOCK while idle, so a stop request is noticed promptly. */
const IDLE_BLOCK_MS = 500;
const PRUNE_EVERY_MS = 30_000;
/** How long invalidation waits for a Redis Cluster master that does not answer (PartialBump). */
const INVALIDATE_FOR_MS = 30_000;

/** PostgreSQL refused the data itself: retrying cannot help. */
const isDataError = (err: unknown): boolean => /^2[23]/.test(String((err as { code?: string }).code ?? ''));

const splitId = (id: string): [string, string] => id.split('-') as [string, string];

/** An entry's identity across shards, as the ledger's rows give it back. */
const entryKey = (shard: number | string, id: string): string => `${shard}/${id}`;

/** COPY routed a row to no partition: one was dropped (or never made) after ensure() looked. */
const isNoPartition = (err: unknown): boolean =>
  (err as { code?: string }).code === '23514' && /no partition of relation/.test((err as Error).message);

/** The times (epoch ms, one per hour) the rows of these tallies fall in. */
function hoursOf(tallies: Iterable<Tally>): number[] {
  const hours = new Set<number>();
  for (const t of tallies) {
    const ms = typeof t[2] === 'number' ? t[2] * HOUR_MS : Date.parse(t[2]);
    if (Number.isFinite(ms)) hours.add(Math.floor(ms / HOUR_MS) * HOUR_MS);
  }
  return [...hours];
}

/** Runs a ledger statement ($1 shards, $2 entry ms parts, $3 seq parts) for these frames; the entryKeys it returns. */
async function ledger(db: pg.Pool | pg.PoolClient, sql: string, frames: Frame[]): Promise<Set<string>> {
  const shards: number[] = [];
  const ms: string[] = [];
  const seq: string[] = [];
  for (const f of frames) {
    const [a, b] = splitId(f.id);
    shards.push(f.shard);
    ms.push(a);
    seq.push(b);
  }
  const { rows } = await db.query<{ shard: number; entry_ms: string; entry_seq: string }>(sql, [shards, ms, seq]);
  return new Set(rows.map((r) => entryKey(r.shard, `${r.entry_ms}-${r.entry_seq}`)));
}

const keyOf = (f: Frame): string => entryKey(f.shard, f.id);

const tallyCache = new WeakMap<Frame, Tally[]>();

/** A frame's counts: from the summary the door wrote, or from its rows when it has none (older or hand-written frames). */
function talliesOf(f: Frame): Tally[] {
  let tallies = tallyCache.get(f);
  if (!tallies) tallyCache.set(f, (tallies = parseSummary(f.summary, f.n) ?? summarizeRows(f.rows)));
  return tallies;
}

const isEmpty = (b: Batch): boolean => !b.bad.length && !b.overDelivered.length && !b.load;

function devicesIn(tallies: Iterable<Tally[]>): Set<string> {
  const devices = new Set<string>();
  for (const list of tallies) for (const t of list) devices.add(t[0]);
  return devices;
}

/**
 * Frames to load, with their counts merged and the hours their rows fall in
 * (the partitions they need) found before the transaction starts (each
 * frame's tallies are in talliesOf).
 */
interface Load {
  frames: Frame[];
  counts: CountParams;
  hours: number[];
}

function prepare(frames: Frame[]): Load {
  const tallies = frames.flatMap(talliesOf);
  return { frames, counts: countParams(tallies), hours: hoursOf(tallies) };
}

/** Entries read from the stream, sorted by what becomes of them. */
interface Batch {
  /** entries that are not frames: dead-lettered */
  bad: BadEntry[];
  /** frames delivered more than queue.max_deliveries times */
  overDelivered: Frame[];
  load?: Load;
}

export interface PersistStats {
  batches: number;
  rows: number;
  dead: number;
  lastError?: string;
}

export class Persister {
  private running = true;
  /** epoch ms of stop(): a drain ends at entries added later */
  private stoppedAt = Infinity;
  private readonly pool: pg.Pool;
  private readonly versions: Versions;
  private readonly partitions: Partitions;
  /** a load found no partition for a row: take the next loads' hours from their rows, not their summaries */
  private distrustSummaries = false;
  private lastPrune = 0;
  /** logs per frame in the last read, to size the next */
  private logsPerFrame = 1;
  /** invalidation and acknowledgement of the batches committed so far (acknowledge()), per shard */
  private readonly acking = new Map<number, Promise<void>>();
  readonly stats: PersistStats = { batches: 0, rows: 0, dead: 0 };

  /**
   * `queue` serves every command but the reads of new entries, which go
   * through `reader`: XREADGROUP BLOCK holds its connection while the batch
   * before is acknowledged.
   */
  constructor(
    private readonly cfg: Config,
    private readonly queue: Queue,
    private readonly reader: RedisClient,
    private readonly consumer: string,
    private readonly log: Logger,
  ) {
    this.pool = new pg.Pool({ ...pgConfig(cfg), max: 1 });
    this.pool.on('error', (err) => this.log.warn({ err }, 'idle PostgreSQL connection failed'));
    this.versions = new Versions(queue.redis, cfg);
    this.partitions = new Partitions(cfg);
  }

  /** Asks the loop to finish its current batch and return. */
  stop(): void {
    this.running = false;
    this.stoppedAt = Date.now();
  }

  /** Whether a batch holds entries added after stop() (by other nodes, which still ingest). */
  private addedSinceStop(b: Batch): boolean {
    const ids = [...b.bad, ...b.overDelivered, ...(b.load?.frames ?? [])].map((e) => e.id);
    return ids.some((id) => Number(splitId(id)[0]) > this.stoppedAt);
  }

  /**
   * Runs until stop(); then drains what the stream still holds (this node's
   * ingest has stopped by then) and returns: when the queue is empty, or
   * after the first batch holding entries added after stop() (other nodes
   * sharing the queue still ingest, and their persisters load those). Recovery first: entries this consumer had
   * taken before a crash; then, every claim_idle_ms / 2, entries a dead
   * consumer left idle for claim_idle_ms. While a batch of new entries is
   * persisted, the next one is read (`ahead`), unless a claim is due.
   */
  async run(): Promise<void> {
    const { claim_idle_ms: claimIdle } = this.cfg.queue;
    const claimEvery = Math.max(100, claimIdle / 2);
    await this.retry('create consumer groups', () => this.queue.ensureGroups());
    let recovering: 'own' | 'others' | undefined = 'own';
    let lastClaim = Date.now();
    // A read that failed may still have been delivered (its reply lost with the connection, e.g. a
    // Redis restart): those entries sit in our pending list, so take it back before reading on.
    const readNew = (draining: boolean): Promise<Batch> =>
      this.retry('read stream', () => this.fill(draining), false, () => { recovering = 'own'; }).then((e) => this.sort(e));
    let ahead: Promise<Batch> | undefined;
    for (;;) {
      let batch: Batch;
      if (ahead) {
        batch = await ahead;
        ahead = undefined;
      } else {
        const draining = !this.running;
        if (!recovering && Date.now() - lastClaim >= claimEvery) recovering = 'others';
        if (recovering) {
          const own = recovering === 'own';
          // the pending list must not still hold batches already committed
          await this.acked();
          const { entries, full } = await this.retry('recover pending entries', () => this.queue.recover(this.consumer, READ_COUNT, own ? 0 : claimIdle, own));
          if (!full) {
            recovering = undefined;
            lastClaim = Date.now();
          }
          if (entries.length) this.log.info({ entries: entries.length, from: own ? 'own crash' : 'idle consumers' }, 'recovered pending entries');
          batch = this.sort(entries);
        } else {
          batch = await readNew(draining);
          if (isEmpty(batch) && draining) break;
        }
      }
      const last = !this.running && this.addedSinceStop(batch);
      if (!isEmpty(batch)) {
        if (!last && !recovering && Date.now() - lastClaim < claimEvery) ahead = readNew(!this.running);
        await this.settle(batch);
      }
      if (last) break;
      await this.maybePrune();
    }
    await this.acked();
    await this.pool.end();
  }

  /**
   * Collects new frames until batch_max_rows logs or batch_max_wait_ms after
   * the first; a draining persister never blocks.
   */
  private async fill(draining: boolean): Promise<(Frame | BadEntry)[]> {
    const { batch_max_rows: maxRows, batch_max_wait_ms: maxWait } = this.cfg.persister;
    const batch: (Frame | BadEntry)[] = [];
    let rows = 0;
    let deadline = Infinity;
    while (rows < maxRows) {
      const left = deadline - Date.now();
      if (batch.length && left <= 0) break;
      const block = draining ? undefined : batch.length ? Math.max(1, Math.ceil(left)) : IDLE_BLOCK_MS;
      const count = Math.min(READ_COUNT, Math.max(1, Math.ceil(Math.min(READ_ROWS, maxRows - rows) / this.logsPerFrame)));
      const got = await this.queue.read(this.reader, this.consumer, count, block);
      // Nothing new: return, even empty, so that run() gets to its periodic
      // claim of a dead consumer's entries while no traffic arrives.
      if (!got.length) break;
      if (!batch.length) deadline = Date.now() + maxWait;
      let gotRows = 0;
      for (const e of got) {
        batch.push(e);
        if (!isFrame(e)) continue;
        gotRows += e.n;
        // counted now, a read at a time, rather than all at once when the batch is done:
        // the event loop then never keeps PostgreSQL waiting for long
        talliesOf(e);
      }
      rows += gotRows;
      this.logsPerFrame = Math.max(1, gotRows / got.length);
    }
    return batch;
  }

  private sort(entries: (Frame | BadEntry)[]): Batch {
    const batch: Batch = { bad: [], overDelivered: [] };
    const frames: Frame[] = [];
    for (const e of entries) {
      if (!isFrame(e)) batch.bad.push(e);
      else if (e.deliveries > this.cfg.queue.max_deliveries) batch.overDelivered.push(e);
      else frames.push(e);
    }
    if (frames.length) batch.load = prepare(frames);
    return batch;
  }

  /** Persists a batch, acknowledges it, and dead-letters what cannot be stored. */
  private async settle(batch: Batch): Promise<void> {
    for (const e of batch.bad) await this.deadLetter(e, e.why);
    if (batch.overDelivered.length) await this.retireOverDelivered(batch.overDelivered);
    if (!batch.load) return;
    const { load } = batch;
    try {
      await this.retry('persist batch', () => this.load(load), true);
    } catch (err) {
      if (!isDataError(err)) throw err;
      // Some frame holds data PostgreSQL refuses: load one by one to find it.
      for (const f of load.frames) {
        try {
          await this.retry('persist frame', () => this.load(prepare([f])), true);
        } catch (e) {
          if (!isDataError(e)) throw e;
          await this.deadLetter(f, `PostgreSQL refused the rows: ${(e as Error).message}`);
        }
      }
    }
  }

  /**
   * Frames delivered more than queue.max_deliveries times (each delivery
   * ended in a crash): those already committed are only acknowledged; the
   * others go to the dead-letter stream, so one entry cannot stall the
   * persister forever.
   */
  private async retireOverDelivered(frames: Frame[]): Promise<void> {
    const done = await this.retry('look up the ledger', () => ledger(this.pool, SQL.findIngested, frames));
    const committed = frames.filter((f) => done.has(keyOf(f)));
    if (committed.length) this.acknowledge(committed);
    for (const f of frames) {
      if (!done.has(keyOf(f))) await this.deadLetter(f, `delivered ${f.deliveries} times without being persisted (queue.max_deliveries = ${this.cfg.queue.max_deliveries})`);
    }
  }

  private async deadLetter(entry: Frame | BadEntry, why: string): Promise<void> {
    this.log.error({ entry: entry.id, why }, 'moving stream entry to the dead-letter stream');
    if (await this.retry('dead-letter entry', () => this.queue.kill(entry, why))) {
      this.stats.dead++;
      deadLettered.inc();
    }
  }

  /**
   * One transaction: record entry IDs, COPY the new ones' rows, add their
   * counts to the rollups, COMMIT; then invalidate cached reads and ack.
   * Rollups count only the frames loaded here (exactly once, like the rows);
   * invalidation covers every frame of the batch, in case a crash came
   * between an earlier COMMIT and its invalidation.
   */
  private async load({ frames, counts, hours }: Load): Promise<void> {
    const t0 = performance.now();
    const client = await this.pool.connect();
    let broken: Error | undefined;
    let loaded = 0;
    try {
      await this.partitions.ensure(client, this.distrustSummaries ? hoursOf(frames.flatMap((f) => summarizeRows(f.rows))) : hours);
      await client.query('BEGIN');
      const fresh = await ledger(client, SQL.claimEntries, frames);
      const todo = fresh.size === frames.length ? frames : frames.filter((f) => fresh.has(keyOf(f)));
      if (todo.length) {
        await pipeline(Readable.from(todo.map((f) => f.rows)), client.query(copyFrom(COPY_SQL)));
        for (const f of todo) loaded += f.n;
        const todoCounts = todo === frames ? counts : countParams(todo.flatMap(talliesOf));
        await client.query(SQL.addCounts, todoCounts);
      }
      await client.query('COMMIT');
      this.distrustSummaries = false;
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      if (isNoPartition(err)) {
        // not the data's fault: retried once the partitions are made again
        this.partitions.forget();
        this.distrustSummaries = true;
        throw new Error(`a row had no partition (retention dropped it while loading, or the frame's summary is wrong): ${broken.message}`);
      }
      throw err;
    } finally {
      client.release(broken && !isDataError(broken) ? broken : undefined);
    }
    this.acknowledge(frames);
    this.stats.batches++;
    this.stats.rows += loaded;
    rowsPersisted.inc(loaded);
    batchSize.observe(loaded);
    batchDuration.observe((performance.now() - t0) / 1000);
    this.log.debug({ frames: frames.length, rows: loaded }, 'batch persisted');
  }

  /**
   * Invalidates the cached reads of committed frames and acknowledges them,
   * while the persister goes on (in order, one batch after another, per
   * shard: a shard whose Redis is failing over holds back only its own); a
   * crash before the ack only means a redelivery, which the ledger turns
   * into an ack.
   */
  private acknowledge(frames: Frame[]): void {
    for (const [shard, list] of byShard(frames)) {
      this.acking.set(shard, (this.acking.get(shard) ?? Promise.resolve()).then(async () => {
        await this.invalidate(list);
        await this.retry(`acknowledge batch (shard ${shard})`, () => this.queue.ack(list));
      }));
    }
  }

  /**
   * Invalidates the cached reads of these frames' devices, retried until it
   * succeeds, except that a Redis Cluster master that stays down (its
   * version keys not set while the others were) is given up after
   * INVALIDATE_FOR_MS, longer than a failover takes: the acknowledgements
   * of every shard must not wait for it, and its cached answers cannot be
   * read while it is down.
   */
  private async invalidate(frames: Frame[]): Promise<void> {
    const since = Date.now();
    const giveUp = (err: unknown): boolean => err instanceof PartialBump && Date.now() - since > INVALIDATE_FOR_MS;
    try {
      await this.retry('invalidate cached reads', () => this.versions.bump(devicesIn(frames.map(talliesOf))), false, undefined, giveUp);
    } catch (err) {
      this.log.error({ err }, 'cached reads of some devices not invalidated: their Redis master does not answer');
    }
  }

  /** Resolves once every batch committed so far is acknowledged. */
  private async acked(): Promise<void> {
    await Promise.all(this.acking.values());
  }

  /** Forgets recorded entry IDs that can no longer be redelivered. */
  private async maybePrune(): Promise<void> {
    if (Date.now() - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = Date.now();
    try {
      const firsts = await this.queue.firstIds();
      for (const [shard, first] of firsts.entries()) if (first) await this.pool.query(SQL.pruneIngested, [shard, ...splitId(first)]);
    } catch (err) {
      this.log.warn({ err }, 'pruning the ingested-entries ledger failed; will retry');
    }
  }

  /**
   * Runs `fn` until it succeeds, backing off exponentially up to
   * persister.retry_max_backoff_ms. Data errors are thrown at once when
   * `dataErrorsFinal` (they would fail the same way forever), and errors
   * `giveUp` says to. `onFailure` runs after each failed attempt.
   */
  private async retry<T>(what: string, fn: () => Promise<T>, dataErrorsFinal = false, onFailure?: () => void, giveUp?: (err: unknown) => boolean): Promise<T> {
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
        if ((dataErrorsFinal && isDataError(err)) || giveUp?.(err)) throw err;
        onFailure?.();
        this.stats.lastError = `${what}: ${(err as Error).message}`;
        this.log.warn({ err, what, retryInMs: delay }, 'persister step failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, this.cfg.persister.retry_max_backoff_ms);
      }
    }
  }
}
