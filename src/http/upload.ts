/**
 * POST /upload: what systemd-journal-upload sends, the journal export
 * format (src/formats/journal.ts) in one chunked body per run. The body is
 * parsed as it streams in and appended in frames of up to FRAME_ENTRIES
 * entries, one at a time; reading pauses while two frames wait.
 *
 * journal-upload sends no token, so the route needs none: the source address
 * must be in journal.allow. It saves its cursor only after a 2xx and resends
 * from it after a failure, so a failed upload may have been stored in part:
 * the highest __SEQNUM stored per __SEQNUM_ID is kept with the frames
 * (Queue.appendOnce) and a resent entry is skipped, never stored twice.
 * Entries without a __SEQNUM_ID are stored as sent. A body that breaks the
 * format gets 400 naming the byte offset; the entries before it are stored.
 */
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { LogdError } from '../errors';
import { JournalParser, journalDraft, type JournalEntry, type JournalFormatError } from '../formats/journal';
import { SourceFilter } from '../listen/allow';
import { listenerDropped, listenerMessages, listenerRefused, logsAccepted, logsRefused } from '../metrics';
import { accept, type Accepted } from '../model/entry';
import { encodeFrame } from '../queue/frame';
import { Stale, type Queue, type Shard, type SourceRange } from '../queue/stream';
import { acceptWindow } from '../storage/layout';
import { fail, send, sendError, type Exchange } from './respond';

const JOURNAL_TYPE = /^application\/vnd\.fdo\.journal\s*(;|$)/i;
/** Entries per frame. */
const FRAME_ENTRIES = 1000;
/** Frames waiting to be appended before reading pauses. */
const MAX_WAITING = 2;

/** An entry of the model and, when its journal numbers it, its place there. */
interface Numbered {
  entry: Accepted;
  source?: string;
  seqnum?: bigint;
}

export interface Upload {
  filter: SourceFilter;
  /** journal.fields as a set, or null for "*" */
  fields: ReadonlySet<string> | null;
}

export const uploadOptions = (cfg: Config): Upload => ({
  filter: new SourceFilter(cfg.journal.allow),
  fields: cfg.journal.fields.includes('*') ? null : new Set(cfg.journal.fields),
});

export function upload(cfg: Config, queue: Queue, up: Upload, x: Exchange, req: HttpRequest): void {
  const peer = Buffer.from(x.res.getRemoteAddressAsText()).toString();
  if (!up.filter.allows(peer)) {
    listenerRefused.inc({ listener: 'journal', reason: 'allow' });
    return fail(x, 'LOGD_SOURCE_NOT_ALLOWED', `source address ${peer} is not in journal.allow`);
  }
  const contentType = req.getHeader('content-type');
  if (!JOURNAL_TYPE.test(contentType)) {
    return fail(x, 'LOGD_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/vnd.fdo.journal, got ${contentType ? `"${contentType}"` : 'none'}`);
  }
  const parser = new JournalParser(cfg.journal.max_field_bytes);
  const window = acceptWindow(cfg, Date.now());
  let batch: Numbered[] = [];
  let waiting = 0;
  let paused = false;
  let chain = Promise.resolve();
  let failure: LogdError | undefined;
  let stored = 0;
  let duplicates = 0;

  const enqueue = (): void => {
    if (!batch.length) return;
    const frame = batch;
    batch = [];
    waiting++;
    chain = chain.then(async () => {
      if (!failure) {
        try {
          const r = await appendNumbered(queue, frame);
          stored += r.stored;
          duplicates += r.duplicates;
        } catch (err) {
          failure = err instanceof LogdError ? err : new LogdError('LOGD_INTERNAL', undefined, { cause: err });
        }
      }
      waiting--;
      if (paused && waiting < MAX_WAITING && !x.ended) {
        paused = false;
        x.res.resume();
      }
    });
  };
  const take = (entries: JournalEntry[]): void => {
    if (!entries.length) return;
    listenerMessages.inc({ listener: 'journal' }, entries.length);
    for (const e of entries) {
      const d = journalDraft(e, up.fields);
      batch.push({ entry: accept(d.draft, window, peer), source: d.seqnumId, seqnum: d.seqnum });
      if (batch.length >= FRAME_ENTRIES) enqueue();
    }
  };
  const finish = (error: JournalFormatError | null): void => {
    enqueue();
    void chain.then(() => {
      if (x.ended) return;
      if (failure) {
        logsRefused.inc({ reason: failure.code === 'LOGD_BACKLOG_FULL' ? 'backlog' : 'unavailable' });
        return sendError(x, failure);
      }
      if (error) {
        return fail(x, 'LOGD_JOURNAL_INVALID', `${error.message}; the ${stored} entries before it are stored (${duplicates} were stored before)`);
      }
      send(x, 200, 'text/plain; charset=utf-8', `OK: ${stored} entries stored, ${duplicates} already stored\n`);
    });
  };

  let done = false;
  x.res.onData((chunk, isLast) => {
    if (done || x.ended) return;
    // uWS reuses the chunk's memory after this callback: the parser keeps copies of what it holds
    const { entries, error } = parser.push(Buffer.from(chunk));
    take(entries);
    if (error || isLast) {
      done = true;
      if (error) x.close = true; // the rest of the body is not read
      return finish(error ?? parser.end());
    }
    if (waiting >= MAX_WAITING && !paused) {
      paused = true;
      x.res.pause();
    }
  });
}

/**
 * Appends the entries not stored before (per source, those numbered above
 * the highest stored), one frame per queue shard: a source's marks live in
 * its own shard (entries without a source go with their device's).
 */
async function appendNumbered(queue: Queue, batch: Numbered[]): Promise<{ stored: number; duplicates: number }> {
  const groups = new Map<Shard, Numbered[]>();
  for (const b of batch) {
    const shard = queue.shardOf(b.source ?? b.entry.device_id);
    const list = groups.get(shard);
    if (list) list.push(b);
    else groups.set(shard, [b]);
  }
  let stored = 0;
  let duplicates = 0;
  for (const [shard, list] of groups) {
    const r = await appendToShard(shard, list);
    stored += r.stored;
    duplicates += r.duplicates;
  }
  return { stored, duplicates };
}

/** appendNumbered for one shard; when another upload stored some meanwhile (Stale), looks again. */
async function appendToShard(shard: Shard, batch: Numbered[]): Promise<{ stored: number; duplicates: number }> {
  for (;;) {
    const sources = [...new Set(batch.flatMap((b) => (b.source === undefined ? [] : [b.source])))];
    const marks = new Map((await shard.marks(sources)).map((m, i) => [sources[i], m]));
    const ranges = new Map<string, SourceRange>();
    const entries: Accepted[] = [];
    for (const b of batch) {
      if (b.source !== undefined && b.seqnum !== undefined) {
        const mark = ranges.get(b.source)?.last ?? marks.get(b.source);
        if (mark !== undefined && b.seqnum <= mark) continue;
        const r = ranges.get(b.source);
        if (r) r.last = b.seqnum;
        else ranges.set(b.source, { source: b.source, first: b.seqnum, last: b.seqnum });
      }
      entries.push(b.entry);
    }
    const duplicates = batch.length - entries.length;
    if (entries.length) {
      try {
        await shard.appendOnce(encodeFrame(entries, Date.now()), [...ranges.values()]);
      } catch (err) {
        if (err instanceof Stale) continue;
        throw err;
      }
      logsAccepted.inc(entries.length);
    }
    if (duplicates) listenerDropped.inc({ listener: 'journal', reason: 'duplicate' }, duplicates);
    return { stored: entries.length, duplicates };
  }
}
