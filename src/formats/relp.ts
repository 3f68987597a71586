/**
 * RELP, the Reliable Event Logging Protocol of rsyslog's omrelp/imrelp
 * (librelp doc/relp.md; the wire format as librelp's src/relpframe.c reads
 * and writes it), server side, without I/O:
 *
 *   FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] LF
 *   TXNR    = 1*9DIGIT    0 for hints (serverclose); else 1, 2, ... per session,
 *                         wrapping to 1 after 999999999
 *   COMMAND = 1*32ALPHA   open, syslog, close (client); rsp, serverclose (server)
 *   DATALEN = 1*9DIGIT    octets of DATA; 0 = no SP and no DATA
 *   rsp DATA = 3DIGIT SP HUMANMSG [LF offers]   HUMANMSG: at most 80 octets, no LF
 *
 * Like librelp, any framing error ends the session: RelpParser.push throws a
 * RelpProtocolError and every later push throws it again.
 *
 * A frame's data may be a view of the chunk it ended in; nothing else of a
 * chunk is kept past push(), so the caller may reuse a chunk's memory once it
 * is done with the frames push() returned.
 */

export interface RelpFrame {
  txnr: number;
  command: string;
  /** DATA, at most the parser's maxData octets */
  data: Buffer;
  /** DATALEN was over maxData: `data` is its first maxData octets, the rest was read and dropped */
  truncated: boolean;
}

/** librelp's default max data size (RELP_DFLT_MAX_DATA_SIZE), which imrelp's maxDataSize defaults to. */
export const RELP_MAX_DATA = 128 * 1024; // 128 KiB

/** A RELP framing error; `frames` are the complete frames of the same push before it, for the caller to process before closing. */
export class RelpProtocolError extends Error {
  constructor(
    readonly reason: string,
    readonly frames: RelpFrame[],
  ) {
    super(`RELP protocol violation: ${reason}`);
    this.name = 'RelpProtocolError';
  }
}

const LF = 0x0a;
const SP = 0x20;
const MAX_DIGITS = 9;
const MAX_COMMAND = 32;
const MAX_TXNR = 999_999_999;

const enum State {
  Txnr,
  Command,
  Datalen,
  Data,
  Trailer,
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number): boolean => (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a;

/**
 * Frames of one RELP session, from the client's bytes in any chunking. The
 * TXNR of every non-hint frame must be the one after the previous frame's
 * (librelp's server refuses anything else), starting at 1.
 */
export class RelpParser {
  private state = State.Txnr;
  private digits = 0;
  private txnr = 0;
  private command = '';
  private datalen = 0;
  private remain = 0;
  private pieces: Buffer[] = [];
  private size = 0;
  private nextTxnr = 1;
  private failure: string | undefined;

  constructor(private readonly maxData = RELP_MAX_DATA) {}

  push(chunk: Buffer): RelpFrame[] {
    if (this.failure !== undefined) throw new RelpProtocolError(this.failure, []);
    const out: RelpFrame[] = [];
    const len = chunk.length;
    let i = 0;
    while (i < len) {
      const c = chunk[i];
      switch (this.state) {
        case State.Txnr:
          if (isDigit(c) && this.digits < MAX_DIGITS) {
            this.txnr = this.txnr * 10 + c - 0x30;
            this.digits++;
          } else if (c === SP && this.digits > 0) {
            this.state = State.Command;
          } else {
            this.fail('TXNR is not 1 to 9 digits', out);
          }
          i++;
          break;
        case State.Command:
          if (isAlpha(c) && this.command.length < MAX_COMMAND) {
            this.command += String.fromCharCode(c);
          } else if (c === SP && this.command.length > 0) {
            this.state = State.Datalen;
            this.digits = 0;
          } else {
            this.fail('COMMAND is not 1 to 32 letters', out);
          }
          i++;
          break;
        case State.Datalen:
          if (isDigit(c)) {
            if (this.digits === MAX_DIGITS) this.fail('DATALEN is not 1 to 9 digits', out);
            this.datalen = this.datalen * 10 + c - 0x30;
            this.digits++;
            i++;
          } else if (this.digits === 0) {
            this.fail('DATALEN is not 1 to 9 digits', out);
          } else if (this.datalen === 0) {
            this.state = State.Trailer;
          } else if (c === SP) {
            this.remain = this.datalen;
            this.state = State.Data;
            i++;
          } else {
            this.fail('DATALEN is not followed by SP', out);
          }
          break;
        case State.Data: {
          const n = Math.min(this.remain, len - i);
          const room = this.maxData - this.size;
          // a view only when the trailer, and so the frame, completes in this chunk
          const ends = this.remain === n && i + n < len;
          if (room > 0) {
            const part = chunk.subarray(i, i + Math.min(n, room));
            this.pieces.push(ends ? part : Buffer.from(part));
            this.size += part.length;
          }
          i += n;
          this.remain -= n;
          if (this.remain === 0) this.state = State.Trailer;
          break;
        }
        case State.Trailer:
          if (c !== LF) this.fail('frame does not end with LF after DATALEN octets', out);
          i++;
          out.push(this.complete(out));
          break;
      }
    }
    return out;
  }

  private complete(out: RelpFrame[]): RelpFrame {
    if (this.txnr !== 0) {
      if (this.txnr !== this.nextTxnr) this.fail(`TXNR ${this.txnr} where ${this.nextTxnr} was due`, out);
      this.nextTxnr = this.txnr === MAX_TXNR ? 1 : this.txnr + 1;
    }
    const data = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.size);
    const frame = { txnr: this.txnr, command: this.command, data, truncated: this.datalen > this.maxData };
    this.state = State.Txnr;
    this.digits = 0;
    this.txnr = 0;
    this.command = '';
    this.datalen = 0;
    this.pieces = [];
    this.size = 0;
    return frame;
  }

  private fail(reason: string, frames: RelpFrame[]): never {
    this.failure = reason;
    throw new RelpProtocolError(reason, frames);
  }
}

/** The offers logd answers `open` with: librelp's protocol version (0; doc/relp.md's "1" was never used), syslog only. */
export const RELP_OPEN_OFFERS = 'relp_version=0\nrelp_software=logd\ncommands=syslog';

/**
 * An `rsp` frame answering `txnr`: `2 rsp 6 200 OK\n`; `extra` follows the
 * text after an LF (the offers of an `open`'s answer). `code` is 3 digits
 * (librelp's client reads 200 as success, anything else as failure) and
 * `text` at most 80 octets without LF, as librelp's client reads them.
 */
export function relpResponse(txnr: number, code: number, text: string, extra?: string): Buffer {
  const data = extra === undefined ? `${code} ${text}` : `${code} ${text}\n${extra}`;
  return Buffer.from(`${txnr} rsp ${Buffer.byteLength(data)} ${data}\n`);
}

/** The hint a server sends before it closes the session (TXNR 0, no answer expected). */
export const RELP_SERVERCLOSE: Buffer = Buffer.from('0 serverclose 0\n');
