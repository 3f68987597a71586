/**
 * Syslog over a byte stream (RFC 6587), framing detected per message as
 * rsyslog's imtcp does: a message that starts with a digit 1-9 is
 * octet-counted (`LEN SP MSG`), any other is non-transparent, ended by LF.
 * Digits that turn out not to be a count (a non-SP after them, or more than
 * MAX_LEN_DIGITS of them) are the start of an LF-ended message.
 *
 * At most `maxBytes` of one message are kept: the rest of a longer message
 * is dropped as it arrives and the kept part is flagged truncated. A message
 * that lies within one chunk is returned as a view of that chunk, without a
 * copy; only the part of a message left over at the end of a chunk is copied,
 * so the caller may reuse a chunk's memory once it is done with what push()
 * returned.
 */

export interface Framed {
  msg: Buffer;
  truncated: boolean;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
/** 10 digits count up to 9 999 999 999 octets, far beyond any maxBytes. */
const MAX_LEN_DIGITS = 10;

const enum State {
  Start,
  Count,
  Octets,
  Line,
  SkipLine,
}

export class SyslogFraming {
  private state = State.Start;
  /** Kept bytes of the current message (copies), `size` of them in all. */
  private pieces: Buffer[] = [];
  private size = 0;
  private count = 0;
  private digits = 0;
  /** Octets of the current octet-counted message not yet read (kept or dropped). */
  private remain = 0;

  /** `maxBytes`: at least MAX_LEN_DIGITS, so that digits read as a possible count fit. */
  constructor(private readonly maxBytes: number) {
    if (!(maxBytes >= MAX_LEN_DIGITS)) throw new RangeError(`maxBytes must be at least ${MAX_LEN_DIGITS}, not ${maxBytes}`);
  }

  push(chunk: Buffer): Framed[] {
    const out: Framed[] = [];
    const len = chunk.length;
    let i = 0;
    while (i < len) {
      switch (this.state) {
        case State.Start: {
          const c = chunk[i];
          if (c > 0x30 && c <= 0x39) {
            this.state = State.Count;
            this.count = 0;
            this.digits = 0;
          } else {
            this.state = State.Line;
          }
          break;
        }
        case State.Count: {
          let c = chunk[i];
          while (c >= 0x30 && c <= 0x39 && this.digits < MAX_LEN_DIGITS) {
            this.count = this.count * 10 + c - 0x30;
            this.digits++;
            c = chunk[++i];
          }
          if (i === len) break;
          if (c === SP) {
            i++;
            this.remain = this.count;
            this.state = State.Octets;
          } else {
            this.keep(Buffer.from(String(this.count), 'latin1'));
            this.state = State.Line;
          }
          break;
        }
        case State.Octets: {
          const n = Math.min(this.remain, len - i);
          const room = this.maxBytes - this.size;
          if (this.remain === n && this.size === 0 && n <= room) {
            out.push({ msg: chunk.subarray(i, i + n), truncated: false });
          } else {
            if (room > 0) this.keep(chunk.subarray(i, i + Math.min(n, room)), this.remain !== n);
            if (this.remain === n) out.push(this.flush(this.count > this.maxBytes));
          }
          i += n;
          this.remain -= n;
          if (this.remain === 0) this.state = State.Start;
          break;
        }
        case State.Line: {
          const lf = chunk.indexOf(LF, i);
          const end = lf < 0 ? len : lf;
          const room = this.maxBytes - this.size;
          if (end - i > room) {
            if (room > 0) this.keep(chunk.subarray(i, i + room), true);
            out.push(this.flush(true));
            this.state = lf < 0 ? State.SkipLine : State.Start;
          } else if (lf < 0) {
            this.keep(chunk.subarray(i, end), true);
          } else {
            const msg = this.size === 0 ? chunk.subarray(i, end) : this.flush(false, chunk.subarray(i, end)).msg;
            if (!blank(msg)) out.push({ msg, truncated: false });
            this.state = State.Start;
          }
          i = lf < 0 ? len : lf + 1;
          break;
        }
        case State.SkipLine: {
          const lf = chunk.indexOf(LF, i);
          if (lf < 0) return out;
          i = lf + 1;
          this.state = State.Start;
          break;
        }
      }
    }
    return out;
  }

  /**
   * What the stream ended inside of: the kept part of an LF-ended message
   * (or digits that were not followed by a count's SP), and of an
   * octet-counted message, flagged truncated since octets it announced are
   * missing.
   */
  end(): Framed[] {
    const state = this.state;
    this.state = State.Start;
    if (state === State.Count) return [{ msg: Buffer.from(String(this.count), 'latin1'), truncated: false }];
    if (state === State.Octets) return this.size > 0 ? [this.flush(true)] : [];
    if (state !== State.Line) return [];
    const last = this.flush(false);
    return blank(last.msg) ? [] : [last];
  }

  /** Appends to the current message; `copy` when `part` is a view of a chunk that will outlive this call. */
  private keep(part: Buffer, copy = false): void {
    if (part.length === 0) return;
    this.pieces.push(copy ? Buffer.from(part) : part);
    this.size += part.length;
  }

  private flush(truncated: boolean, tail?: Buffer): Framed {
    if (tail !== undefined) {
      this.pieces.push(tail);
      this.size += tail.length;
    }
    const msg = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.size);
    this.pieces = [];
    this.size = 0;
    return { msg, truncated };
  }
}

/** An empty line, or one holding only the CR of a CRLF. */
function blank(msg: Buffer): boolean {
  return msg.length === 0 || (msg.length === 1 && msg[0] === CR);
}
