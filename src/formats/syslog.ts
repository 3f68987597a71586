/**
 * One syslog message as a Draft: RFC 5424, and RFC 3164 as rsyslog and
 * syslog-ng send it (BSD timestamp `Mmm dd hh:mm:ss`, optionally with a year
 * or fractional seconds, or an ISO-8601 timestamp as in rsyslog's
 * RSYSLOG_ForwardFormat). Never throws: what does not parse is kept as text
 * and named in log_data.parse_error.
 *
 * RFC 3164 timestamps carry neither zone nor year. logd reads them as UTC:
 * rsyslog and syslog-ng write the sender's local time, which is UTC on
 * servers commonly kept on UTC; a sender on another zone shows up shifted by
 * its offset (an ISO-8601 timestamp keeps its offset). The year is the one,
 * of the receive time's year and the years before and after it, that puts
 * the time closest to the receive time: a Dec 31 message received on Jan 1
 * is of the previous year, a Jan 1 message received on Dec 31 of the next,
 * and one more than half a year ahead of the receive time is of the previous
 * year. A Feb 29 that none of the three years has is a bad timestamp.
 */
import { isUtf8 } from 'node:buffer';
import type { Draft } from '../model/entry';
import type { LogLevel } from '../model/levels';
import { utcMinute } from '../model/time';

/** RFC 5424 6.2.1 facility codes 0..23, named as rsyslog names them. */
const FACILITIES = [
  'kern', 'user', 'mail', 'daemon', 'auth', 'syslog', 'lpr', 'news', 'uucp', 'cron', 'authpriv', 'ftp',
  'ntp', 'audit', 'alert', 'clock', 'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7',
];
const SEVERITIES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
const LEVELS: LogLevel[] = ['CRITICAL', 'CRITICAL', 'CRITICAL', 'ERROR', 'WARNING', 'INFO', 'INFO', 'DEBUG'];
/** RFC 3164 4.3.3: a message without PRI is user.notice. */
const DEFAULT_PRI = 13;

const PRI = /^<(\d{1,3})>/;
const ISO_TIME = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?/i;
const BSD_TIME = /^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d\d?) (?:(\d{4}) )?(\d\d):(\d\d):(\d\d)(\.\d+)?/i;
const MONTHS = 'janfebmaraprmayjunjulaugsepoctnovdec';
/** TAG, TAG[PID]: or TAG[PID] at the start of an RFC 3164 MSG, and the SP after it. */
const TAG = /^([^\s:[\]]+)(?:\[([^\]]*)\](?::|(?= |$))|:) ?/;

export function parseSyslog(msg: Buffer, receivedMs: number, opts?: { truncated?: boolean }): Draft {
  let end = msg.length;
  // the LF of LF-terminated framing, if still there, and the CR of a CRLF
  if (msg[end - 1] === 0x0a) end--;
  if (msg[end - 1] === 0x0d) end--;
  if (opts?.truncated) end = completeUtf8(msg, end);
  const bytes = msg.subarray(0, end);
  const flags: Record<string, unknown> = {};
  if (!isUtf8(bytes)) flags.invalid_utf8 = true;
  if (opts?.truncated) flags.truncated = true;
  const line = bytes.toString('utf8');

  const pri = PRI.exec(line);
  const value = pri === null ? DEFAULT_PRI : Number(pri[1]);
  const d = draft(value > 191 ? DEFAULT_PRI : value);
  if (pri === null || value > 191) {
    d.message = line;
    d.data.parse_error = line === '' ? 'empty message' : pri === null && line[0] !== '<' ? 'no PRI' : 'bad PRI';
  } else {
    const rest = line.slice(pri[0].length);
    if (rest.startsWith('1 ')) rfc5424(d, rest.slice(2), line);
    else rfc3164(d, rest, line, receivedMs);
  }
  Object.assign(d.data, flags);
  return d;
}

/** Adds `reason` to log_data.parse_error ("bad timestamp, missing fields"). */
function problem(d: Draft, reason: string): void {
  d.data.parse_error = d.data.parse_error === undefined ? reason : `${d.data.parse_error as string}, ${reason}`;
}

function draft(pri: number): Draft {
  const severity = pri & 7;
  return {
    device_id: '',
    log_level: LEVELS[severity],
    message: '',
    data: { facility: FACILITIES[pri >> 3], severity: SEVERITIES[severity] },
  };
}

/** `HEADER SP STRUCTURED-DATA [SP MSG]` after `<PRI>1 `. */
function rfc5424(d: Draft, s: string, line: string): void {
  const fields: string[] = [];
  let p = 0;
  while (fields.length < 5) {
    const sp = s.indexOf(' ', p);
    if (sp < 0) break;
    fields.push(s.slice(p, sp));
    p = sp + 1;
  }
  const [timestamp, hostname, app, procid, msgid] = fields;
  if (timestamp !== undefined && timestamp !== '-') {
    const t = ISO_TIME.exec(timestamp);
    const time = t !== null && t[0].length === timestamp.length && t[8] !== undefined ? isoTime(t) : undefined;
    if (time === undefined) problem(d, 'bad timestamp');
    else d.time = time;
  }
  if (hostname !== undefined && hostname !== '-') d.device_id = hostname;
  if (app !== undefined && app !== '-' && app !== '') d.data.app_name = app;
  if (procid !== undefined && procid !== '-' && procid !== '') d.data.procid = procid;
  if (msgid !== undefined && msgid !== '-' && msgid !== '') d.data.msgid = msgid;
  if (fields.length < 5 || p === s.length) {
    problem(d, 'missing fields');
    d.message = line;
    return;
  }
  const sd = structuredData(s, p);
  if (sd.elements !== undefined) d.data.sd = sd.elements;
  if (sd.end < 0) {
    problem(d, 'bad structured data');
    d.message = s.slice(p);
    return;
  }
  const text = s.slice(sd.end + 1);
  // rsyslog's %msg% (in its RSYSLOG_SyslogProtocol23Format) keeps the space that followed an RFC 3164 tag's
  // colon, so its MSG starts with one more space than the sender wrote: that one space is dropped.
  const first = text.charCodeAt(0) === 0xfeff || text.charCodeAt(0) === 0x20 ? 1 : 0;
  d.message = text.slice(first);
}

type Params = Record<string, string | string[]>;

/**
 * STRUCTURED-DATA from `p`: `-` or `[SD-ID *(SP PARAM="VALUE")]...`, with
 * `\"`, `\\` and `\]` unescaped in values (a backslash before any other
 * character is kept). A repeated PARAM gives an array of its values. `end` is
 * the index after it, which must be the string's end or an SP, or -1 when
 * it is malformed (`elements` then holds those before the error).
 */
function structuredData(s: string, p: number): { elements?: Record<string, Params>; end: number } {
  if (s[p] === '-') return { end: p + 1 === s.length || s[p + 1] === ' ' ? p + 1 : -1 };
  if (s[p] !== '[') return { end: -1 };
  const elements: Record<string, Params> = Object.create(null);
  // the next backslash at or after p, -1 when there is none: searched again only once passed, so one scan in all
  let backslash = s.indexOf('\\', p);
  const fail = (): { elements?: Record<string, Params>; end: number } => ({ elements: Object.keys(elements).length > 0 ? elements : undefined, end: -1 });
  while (s[p] === '[') {
    const id = sdName(s, p + 1);
    if (id === '') return fail();
    p += 1 + id.length;
    const params: Params = elements[id] ?? Object.create(null);
    while (s[p] === ' ') {
      const name = sdName(s, p + 1);
      p += 1 + name.length;
      if (name === '' || s[p] !== '=' || s[p + 1] !== '"') return fail();
      let value = '';
      p += 2;
      let quote = s.indexOf('"', p);
      for (;;) {
        if (quote < 0) return fail();
        if (backslash < 0 || backslash > quote) {
          value += s.slice(p, quote);
          p = quote + 1;
          break;
        }
        const next = s[backslash + 1];
        value += s.slice(p, backslash) + (next === '"' || next === '\\' || next === ']' ? next : `\\${next ?? ''}`);
        p = backslash + 2;
        if (quote < p) quote = s.indexOf('"', p);
        backslash = s.indexOf('\\', p);
      }
      const prev = params[name];
      if (prev === undefined) params[name] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else params[name] = [prev, value];
    }
    if (s[p] !== ']') return fail();
    elements[id] = params;
    p++;
  }
  if (p < s.length && s[p] !== ' ') return fail();
  return { elements, end: p };
}

/** SD-NAME at `p`: up to 32 printable US-ASCII characters other than `=`, SP, `]` and `"`. */
function sdName(s: string, p: number): string {
  let e = p;
  while (e - p < 32) {
    const c = s.charCodeAt(e);
    if (c < 0x21 || c > 0x7e || c === 0x3d || c === 0x5d || c === 0x22) break;
    e++;
  }
  return s.slice(p, e);
}

/** `TIMESTAMP SP HOSTNAME SP MSG` after `<PRI>`, MSG starting with an optional TAG. */
function rfc3164(d: Draft, s: string, line: string, receivedMs: number): void {
  let time: string | undefined;
  let length: number;
  const iso = ISO_TIME.exec(s);
  const bsd = iso === null ? BSD_TIME.exec(s) : null;
  if (iso !== null) {
    time = isoTime(iso);
    length = iso[0].length;
  } else if (bsd !== null) {
    time = bsdTime(bsd, receivedMs);
    length = bsd[0].length;
  } else {
    problem(d, s === '' ? 'empty message' : 'no timestamp');
    d.message = s;
    return;
  }
  if (s.length > length && s[length] !== ' ') {
    problem(d, 'bad timestamp');
    d.message = s;
    return;
  }
  if (time === undefined) problem(d, 'bad timestamp');
  else d.time = time;
  if (s.length <= length + 1) {
    problem(d, 'missing fields');
    d.message = line;
    return;
  }
  let content = s.slice(length + 1);
  const sp = content.indexOf(' ');
  const host = sp < 0 ? content : content.slice(0, sp);
  // a TAG where HOSTNAME belongs: the sender left the hostname out
  if (!host.endsWith(':') && !host.includes('[') && !host.includes(']')) {
    d.device_id = host;
    content = sp < 0 ? '' : content.slice(sp + 1);
  }
  const tag = TAG.exec(content);
  if (tag !== null) {
    d.data.tag = tag[2] === undefined ? tag[1] : `${tag[1]}[${tag[2]}]`;
    d.data.app_name = tag[1];
    if (tag[2] !== undefined && tag[2] !== '') d.data.procid = tag[2];
    content = content.slice(tag[0].length);
  }
  d.message = content;
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** ISO_TIME's match as the model's text (no offset = UTC, at most 6 fractional digits), or undefined if not a real time. */
function isoTime(m: RegExpExecArray): string | undefined {
  const [, y, mo, d, h, mi, s, frac = '', zone = 'Z'] = m;
  if (!validTime(Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(s))) return undefined;
  if (zone.length === 1) return `${y}-${mo}-${d}T${h}:${mi}:${s}${frac.slice(0, 7)}Z`;
  const hours = zone.slice(1, 3), minutes = zone.slice(-2);
  if (Number(hours) > 23 || Number(minutes) > 59) return undefined;
  return `${y}-${mo}-${d}T${h}:${mi}:${s}${frac.slice(0, 7)}${zone[0]}${hours}:${minutes}`;
}

/** BSD_TIME's match in UTC, of its year or else the year that puts it closest to `receivedMs`. */
function bsdTime(m: RegExpExecArray, receivedMs: number): string | undefined {
  const [, mon, d, y, h, mi, s, frac = ''] = m;
  const month = MONTHS.indexOf(mon.toLowerCase()) / 3 + 1;
  const day = Number(d), hh = Number(h), mm = Number(mi), ss = Number(s);
  let year: number | undefined;
  if (y !== undefined) {
    year = Number(y);
  } else {
    const now = new Date(receivedMs).getUTCFullYear();
    let best = Infinity;
    for (const candidate of [now - 1, now, now + 1]) {
      if (!validTime(candidate, month, day, hh, mm, ss)) continue;
      const distance = Math.abs(utcMinute(candidate, month, day, hh, mm, 0) * 60_000 + ss * 1000 - receivedMs);
      if (distance < best) {
        best = distance;
        year = candidate;
      }
    }
  }
  if (year === undefined || !validTime(year, month, day, hh, mm, ss)) return undefined;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${h}:${mi}:${s}${frac.slice(0, 7)}Z`;
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A real date and time (no leap second: RFC 5424 6.2.3 forbids it), of year 1 to 9999 as the model stores. */
function validTime(y: number, mo: number, d: number, h: number, mi: number, s: number): boolean {
  if (y < 1 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return false;
  const leap = mo === 2 && y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  return d <= DAYS[mo - 1] + (leap ? 1 : 0);
}

/** `end`, moved back before a UTF-8 sequence that truncation cut short. */
function completeUtf8(b: Buffer, end: number): number {
  let lead = end - 1;
  while (lead > end - 4 && lead >= 0 && (b[lead] & 0xc0) === 0x80) lead--;
  if (lead < 0) return end;
  const c = b[lead];
  const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
  return end - lead < need ? lead : end;
}
