/**
 * The journal export format (https://systemd.io/JOURNAL_EXPORT_FORMATS/),
 * the body systemd-journal-upload POSTs, and its mapping to the log model.
 *
 * An entry is a run of fields ended by an empty line. A field is a text line
 * `NAME=value\n`, or a binary one: `NAME\n`, the value's length as a 64-bit
 * little-endian integer, the value, `\n`. A name is 1..64 of A-Z, 0-9 and
 * `_`, not starting with a digit (systemd's journal_field_valid()); names
 * starting with `__` are address fields (__CURSOR, __REALTIME_TIMESTAMP, ...).
 *
 * JournalParser reads a body in chunks split anywhere and keeps at most the
 * current entry plus one value: a value longer than maxFieldBytes is skipped
 * as it arrives and its name listed in `omitted`. Everything it keeps is a
 * copy, so a chunk may be reused once push() returns.
 *
 * journalDraft() maps an entry:
 *   MESSAGE              -> message (non-UTF-8 bytes replaced, data.invalid_utf8)
 *   PRIORITY 0-2/3/4/5-6/7 -> CRITICAL/ERROR/WARNING/INFO/DEBUG; missing -> INFO
 *   _HOSTNAME            -> device_id
 *   __REALTIME_TIMESTAMP -> time, microseconds since the epoch, exact
 *   __CURSOR, __SEQNUM, __SEQNUM_ID -> returned beside the draft for dedup
 *   other `__` fields    -> dropped (__MONOTONIC_TIMESTAMP means little off its boot)
 *   any other field      -> data under its journal name, as the text the
 *                           journal holds; non-UTF-8 bytes as { base64 }
 * Only the first MESSAGE, PRIORITY, _HOSTNAME and __REALTIME_TIMESTAMP are
 * mapped: a repeat, a PRIORITY other than 0..7 and a __REALTIME_TIMESTAMP
 * that is not a microsecond count Date can show go to data like any other
 * field (a repeated __REALTIME_TIMESTAMP is dropped).
 * A name sent more than once holds an array of its values in data.
 * data.fields_omitted lists the names of values longer than maxFieldBytes.
 */
import { isUtf8 } from 'node:buffer';
import type { Draft } from '../model/entry';
import type { LogLevel } from '../model/levels';

/** A text value as a string; binary-framed and non-UTF-8 text values as bytes. */
export type JournalValue = string | Buffer;

export interface JournalEntry {
  /** Field names in the order sent; a name repeated in the entry appears again. */
  names: string[];
  /** values[i] is the value of names[i]. */
  values: JournalValue[];
  /** Names of the fields whose values were longer than maxFieldBytes, dropped unread. */
  omitted: string[];
}

/** A breach of the export format at byte `offset` of the whole body. */
export class JournalFormatError extends Error {
  constructor(readonly offset: number, readonly reason: string) {
    super(`journal export format: ${reason} at byte ${offset}`);
    this.name = 'JournalFormatError';
  }
}

/** What a push() made of a chunk: the entries it completed, then the error that stopped it, if any. */
export interface JournalBatch {
  entries: JournalEntry[];
  error: JournalFormatError | null;
}

const LF = 0x0a;
const EQ = 0x3d;
const LFLF = Buffer.from('\n\n');
const MAX_NAME = 64;
/** Longest binary value systemd's own importer takes (DATA_SIZE_MAX, 768 MiB). */
const MAX_DATA = 768 * 1024 * 1024;

const enum State {
  Line,
  SkipLine,
  BinLength,
  BinData,
  SkipBinData,
  BinEnd,
  Failed,
}

export class JournalParser {
  private state = State.Line;
  /** Bytes of the body before the current chunk. */
  private base = 0;
  /** Index in the current chunk before which decodeEntry() is not tried again. */
  private slowUntil = 0;
  /** Copies of the current line's start, left at the ends of earlier chunks. */
  private carry: Buffer[] = [];
  private carried = 0;
  /** Body offset of the current line, or of the current binary length. */
  private at = 0;
  private readonly length = Buffer.alloc(8);
  private lengthHave = 0;
  private binName = '';
  private bin = Buffer.alloc(0);
  private binHave = 0;
  /** Bytes of the current binary value still to read or skip. */
  private remain = 0;
  private error: JournalFormatError | null = null;
  private names: string[] = [];
  private values: JournalValue[] = [];
  private omitted: string[] = [];

  constructor(private readonly maxFieldBytes: number) {}

  /** Parses the next chunk; after an error the parser stays failed and returns that error. */
  push(chunk: Buffer): JournalBatch {
    const entries: JournalEntry[] = [];
    const len = chunk.length;
    let i = 0;
    this.slowUntil = 0;
    while (i < len && this.state !== State.Failed) {
      switch (this.state) {
        case State.Line: {
          if (this.carried === 0 && i >= this.slowUntil && chunk[i] !== LF) {
            i = this.decodeEntry(chunk, i, entries);
            break;
          }
          const lf = chunk.indexOf(LF, i);
          const end = lf < 0 ? len : lf;
          if (this.carried === 0 && lf >= 0) {
            this.line(chunk, i, lf, this.base + i, entries);
          } else {
            if (this.carried === 0) this.at = this.base + i;
            const total = this.carried + end - i;
            if (total > MAX_NAME + 1 + this.maxFieldBytes) {
              this.skipLine(chunk, i, total);
              if (lf < 0 && this.state === State.Line) this.state = State.SkipLine;
            } else if (lf < 0) {
              this.carry.push(Buffer.from(chunk.subarray(i)));
              this.carried = total;
            } else {
              this.carry.push(chunk.subarray(i, lf));
              const line = Buffer.concat(this.carry, total);
              this.carry = [];
              this.carried = 0;
              this.line(line, 0, total, this.at, entries);
            }
          }
          i = lf < 0 ? len : lf + 1;
          break;
        }
        case State.SkipLine: {
          const lf = chunk.indexOf(LF, i);
          if (lf >= 0) this.state = State.Line;
          i = lf < 0 ? len : lf + 1;
          break;
        }
        case State.BinLength: {
          const n = Math.min(8 - this.lengthHave, len - i);
          chunk.copy(this.length, this.lengthHave, i, i + n);
          this.lengthHave += n;
          i += n;
          if (this.lengthHave === 8) this.startBinary();
          break;
        }
        case State.BinData: {
          const n = Math.min(this.remain, len - i);
          chunk.copy(this.bin, this.binHave, i, i + n);
          this.binHave += n;
          this.remain -= n;
          i += n;
          if (this.remain === 0) this.endBinary();
          break;
        }
        case State.SkipBinData: {
          const n = Math.min(this.remain, len - i);
          this.remain -= n;
          i += n;
          if (this.remain === 0) this.state = State.BinEnd;
          break;
        }
        case State.BinEnd:
          if (chunk[i] === LF) this.state = State.Line;
          else this.fail(this.base + i, `expected LF after binary value of ${this.binName}, got 0x${hex(chunk[i])}`);
          i++;
          break;
      }
    }
    this.base += len;
    return { entries, error: this.error };
  }

  /** The error of a body that ends here: inside an entry, or the one push() reported; null if it ended between entries. */
  end(): JournalFormatError | null {
    if (this.state === State.Line && this.carried === 0 && this.names.length === 0 && this.omitted.length === 0) return this.error;
    if (this.state !== State.Failed) this.fail(this.base, 'body ends inside an entry');
    return this.error;
  }

  /**
   * The fast path: the text lines from chunk[i] to the end of their entry,
   * when that end is in the chunk, read from one decoded string (two native
   * calls per entry instead of two per field). The values are slices of that
   * string and keep all of it alive, so it is taken only for entries no
   * longer than maxFieldBytes, which hold no value to omit. It stops before
   * a line the byte path must read (a binary field, a bad name) and does not
   * start on text with U+FFFD, whose bytes may not be UTF-8. Returns where
   * to go on.
   */
  private decodeEntry(chunk: Buffer, i: number, entries: JournalEntry[]): number {
    const e = chunk.indexOf(LFLF, i);
    if (e < 0) {
      this.slowUntil = chunk.length;
      return i;
    }
    const s = e + 1 - i <= this.maxFieldBytes ? chunk.toString('utf8', i, e + 1) : undefined;
    if (s === undefined || s.includes('\uFFFD')) {
      this.slowUntil = e + 2;
      return i;
    }
    const ascii = s.length === e + 1 - i;
    let a = 0;
    while (a < s.length) {
      const lf = s.indexOf('\n', a);
      const stop = Math.min(lf, a + MAX_NAME);
      let p = a;
      while (p < stop && nameChar(s.charCodeAt(p))) p++;
      if (p === a || p === lf || s.charCodeAt(p) !== EQ || s.charCodeAt(a) <= 0x39) {
        const at = ascii ? i + a : i + Buffer.byteLength(s.slice(0, a));
        this.slowUntil = at + 1;
        return at;
      }
      this.names.push(s.slice(a, p));
      this.values.push(s.slice(p + 1, lf));
      a = lf + 1;
    }
    this.endEntry(entries);
    return e + 2;
  }

  /** One complete line, buf[start, end) without its LF, at body offset `at`. */
  private line(buf: Buffer, start: number, end: number, at: number, entries: JournalEntry[]): void {
    if (start === end) {
      this.endEntry(entries);
      return;
    }
    const eq = this.nameEnd(buf, start, end, at);
    if (eq < 0) return;
    const name = buf.toString('latin1', start, eq);
    if (eq === end) {
      this.binName = name;
      this.at = at + eq - start + 1;
      this.lengthHave = 0;
      this.state = State.BinLength;
    } else if (end - eq - 1 > this.maxFieldBytes) {
      this.omitted.push(name);
    } else {
      this.names.push(name);
      this.values.push(text(buf, eq + 1, end));
    }
  }

  private endEntry(entries: JournalEntry[]): void {
    if (this.names.length === 0 && this.omitted.length === 0) return;
    entries.push({ names: this.names, values: this.values, omitted: this.omitted });
    this.names = [];
    this.values = [];
    this.omitted = [];
  }

  /**
   * Where the name that starts the line at buf[start] ends: the index of its
   * `=`, or `end` for a binary field's name; -1 after failing on a bad name.
   */
  private nameEnd(buf: Buffer, start: number, end: number, at: number): number {
    const stop = Math.min(end, start + MAX_NAME + 1);
    let p = start;
    while (p < stop && nameChar(buf[p])) p++;
    if (p - start > MAX_NAME) return this.fail(at + MAX_NAME, `field name longer than ${MAX_NAME} bytes`);
    if (p < end && buf[p] !== EQ) return this.fail(at + p - start, `byte 0x${hex(buf[p])} in a field name`);
    if (p === start) return this.fail(at, 'empty field name');
    if (buf[start] <= 0x39) return this.fail(at, 'field name starts with a digit');
    return p;
  }

  /**
   * Drops the current line, `total` bytes from its start (carried, then
   * chunk[i..]), too long for its value to be kept: a field named in
   * `omitted`, or a failure on a bad name.
   */
  private skipLine(chunk: Buffer, i: number, total: number): void {
    this.carry.push(chunk.subarray(i, i + Math.max(0, MAX_NAME + 1 - this.carried)));
    const head = Buffer.concat(this.carry, MAX_NAME + 1);
    this.carry = [];
    this.carried = 0;
    const eq = this.nameEnd(head, 0, Math.min(total, head.length), this.at);
    if (eq >= 0) this.omitted.push(head.toString('latin1', 0, eq));
  }

  private startBinary(): void {
    const n = this.length.readUInt32LE(0);
    if (this.length.readUInt32LE(4) !== 0 || n > MAX_DATA) {
      this.fail(this.at, `binary value of ${this.binName} declared ${this.length.readBigUInt64LE(0)} bytes, more than ${MAX_DATA}`);
    } else if (n > this.maxFieldBytes) {
      this.omitted.push(this.binName);
      this.remain = n;
      this.state = State.SkipBinData;
    } else {
      this.bin = Buffer.allocUnsafe(n);
      this.binHave = 0;
      this.remain = n;
      if (n === 0) this.endBinary();
      else this.state = State.BinData;
    }
  }

  private endBinary(): void {
    this.names.push(this.binName);
    this.values.push(this.bin);
    this.state = State.BinEnd;
  }

  private fail(offset: number, reason: string): -1 {
    this.error = new JournalFormatError(offset, reason);
    this.state = State.Failed;
    return -1;
  }
}

/** A-Z, 0-9 and _, the characters of a field name. */
function nameChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f;
}

/** A text value: a string, or a copy of its bytes when they are not UTF-8. */
function text(buf: Buffer, start: number, end: number): JournalValue {
  const s = buf.toString('utf8', start, end);
  // U+FFFD is either sent as such or stands for bytes that are not UTF-8.
  if (!s.includes('\uFFFD')) return s;
  const bytes = buf.subarray(start, end);
  return isUtf8(bytes) ? s : Buffer.from(bytes);
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

/** The log model's level of each syslog severity, PRIORITY 0..7. */
const LEVELS: readonly LogLevel[] = ['CRITICAL', 'CRITICAL', 'CRITICAL', 'ERROR', 'WARNING', 'INFO', 'INFO', 'DEBUG'];

/** A journal entry as a Draft, with what identifies it in its journal. */
export interface JournalDraft {
  draft: Draft;
  /** __SEQNUM_ID, or the `s=` of __CURSOR: 32 hex digits naming a sequence of seqnums. */
  seqnumId?: string;
  /** __SEQNUM, or the `i=` of __CURSOR. */
  seqnum?: bigint;
  cursor?: string;
}

/** Fields mapped to the Draft itself, reported when omitted whatever `allow` holds. */
const MAPPED = new Set(['MESSAGE', 'PRIORITY', '_HOSTNAME']);
const SEQNUM_ID = /^[0-9a-f]{32}$/;
const DECIMAL = /^[0-9]{1,20}$/;
const CURSOR_ID = /(?:^|;)s=([0-9a-f]{32})(?:;|$)/;
const CURSOR_SEQNUM = /(?:^|;)i=([0-9a-f]{1,16})(?:;|$)/;

/**
 * The Draft of an entry. `allow`, when not null, names the fields that go to
 * data; the mapped and the `__` fields are handled whatever it holds.
 */
export function journalDraft(entry: JournalEntry, allow: ReadonlySet<string> | null): JournalDraft {
  const { names, values } = entry;
  const data: Record<string, unknown> = {};
  const draft: Draft = { device_id: '', log_level: 'INFO', message: '', data };
  const out: JournalDraft = { draft };
  let message = false;
  let level = false;
  let host = false;
  let time = false;
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    const v = values[i];
    if (name.charCodeAt(0) === 0x5f && name.charCodeAt(1) === 0x5f) {
      if (name !== '__REALTIME_TIMESTAMP') {
        if (name === '__CURSOR') out.cursor ??= str(v);
        else if (name === '__SEQNUM' && DECIMAL.test(str(v))) out.seqnum ??= BigInt(str(v));
        else if (name === '__SEQNUM_ID' && SEQNUM_ID.test(str(v))) out.seqnumId ??= str(v);
        continue;
      }
      if (time) continue;
      time = true;
      draft.time = realtime(str(v));
      if (draft.time !== undefined) continue;
    } else if (name === 'MESSAGE' && !message) {
      message = true;
      draft.message = str(v);
      if (typeof v !== 'string' && !isUtf8(v)) data.invalid_utf8 = true;
      continue;
    } else if (name === 'PRIORITY' && !level) {
      level = true;
      const severity = typeof v === 'string' && v.length === 1 ? v.charCodeAt(0) - 0x30 : -1;
      if (severity >= 0 && severity <= 7) {
        draft.log_level = LEVELS[severity];
        continue;
      }
    } else if (name === '_HOSTNAME' && !host) {
      host = true;
      draft.device_id = str(v);
      continue;
    }
    if (allow !== null && !allow.has(name)) continue;
    const value = typeof v === 'string' ? v : isUtf8(v) ? v.toString('utf8') : { base64: v.toString('base64') };
    const prev = data[name];
    if (prev === undefined) data[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else data[name] = [prev, value];
  }
  if (out.cursor !== undefined) {
    const id = CURSOR_ID.exec(out.cursor);
    if (id !== null) out.seqnumId ??= id[1];
    const seqnum = CURSOR_SEQNUM.exec(out.cursor);
    if (seqnum !== null) out.seqnum ??= BigInt(`0x${seqnum[1]}`);
  }
  if (entry.omitted.length > 0) {
    const omitted = entry.omitted.filter((name) => allow === null || allow.has(name) || MAPPED.has(name) || name.startsWith('__'));
    if (omitted.length > 0) data.fields_omitted = omitted;
  }
  return out;
}

function str(v: JournalValue): string {
  return typeof v === 'string' ? v : v.toString('utf8');
}

/** The last second realtime() formatted and its text: entries of one upload mostly share seconds. */
let lastSecond = '';
let lastPrefix = '';

/**
 * ISO-8601 text of a count of microseconds since the epoch, with all six
 * fractional digits; undefined if it is not such a count or Date cannot show
 * it. Text arithmetic keeps every digit, which a float would not.
 */
function realtime(us: string): string | undefined {
  if (!DECIMAL.test(us)) return undefined;
  const second = us.length > 6 ? us.slice(0, -6) : '0';
  if (second !== lastSecond) {
    const ms = Number(second) * 1000;
    if (ms > 8.64e15) return undefined;
    lastPrefix = new Date(ms).toISOString().slice(0, -5);
    lastSecond = second;
  }
  return `${lastPrefix}.${us.length > 6 ? us.slice(-6) : us.padStart(6, '0')}Z`;
}
