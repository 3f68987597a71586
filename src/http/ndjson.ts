/**
 * POST /api/logs/batch with Content-Type application/x-ndjson (or
 * application/ndjson): one log entry of the JSON API per line, each under
 * the rules of POST /api/log (validateBody 'single'), as Vector's `http`
 * sink (codec json, framing newline_delimited) and Fluent Bit's `http`
 * output (format json_lines) send them. Blank lines are skipped; the body
 * has no bound on lines but body_limit_batch.
 *
 * A line that breaks the rules (not UTF-8, not JSON, not a valid entry) is
 * that line's error, as an item of the bulk API is: the valid lines are
 * appended as one stream entry and the 200 lists the failed lines
 * (`errors`, `rejected`, `items`). A request none of whose lines is stored
 * is 422 LOGD_VALIDATION_FAILED naming the lines, as the JSON API refuses
 * an invalid batch; errors of the whole request keep logd's error shape.
 */
import { isUtf8 } from 'node:buffer';
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { logsRefused, protocolRecords } from '../metrics';
import type { Accepted } from '../model/entry';
import type { Queue } from '../queue/stream';
import { acceptWindow, type AcceptWindow } from '../storage/layout';
import { readRequest } from './body';
import { appendEntries, batchAnswer } from './ingest';
import { fail, sendJson, type Exchange } from './respond';
import { validateBody, type Issue } from './validate';

/** At most this many failed lines are listed in a 200 (`rejected` counts them all). */
const MAX_ITEMS = 100;

/** A failed line: its number (from 1, blank lines counted) and why. */
interface LineError {
  line: number;
  status: number;
  detail: Issue[];
}

interface Parsed {
  entries: Accepted[];
  failed: LineError[];
}

/** The lines of `body` as text, undefined for a line that is not UTF-8. */
function splitLines(body: Buffer): (string | undefined)[] {
  if (isUtf8(body)) return body.toString('utf8').split('\n');
  const out: (string | undefined)[] = [];
  for (let start = 0; start <= body.length;) {
    const at = body.indexOf(0x0a, start);
    const end = at < 0 ? body.length : at;
    const line = body.subarray(start, end);
    out.push(isUtf8(line) ? line.toString('utf8') : undefined);
    start = end + 1;
  }
  return out;
}

const lineIssue = (n: number, msg: string, type: string): Issue => ({ loc: ['line', n], msg, type });

/** One line's entry, or its error. */
function parseLine(text: string | undefined, n: number, window: AcceptWindow): Accepted | LineError {
  if (text === undefined) return { line: n, status: 400, detail: [lineIssue(n, 'Line is not valid UTF-8', 'utf8_invalid')] };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { line: n, status: 400, detail: [lineIssue(n, `Line is not valid JSON: ${(err as Error).message}`, 'json_invalid')] };
  }
  const verdict = validateBody('single', value, text.includes('\\u'), window);
  if (verdict.ok) return verdict.entries[0];
  return { line: n, status: 422, detail: verdict.issues.map((i) => ({ ...i, loc: ['line', n, ...i.loc.slice(1)] })) };
}

function parseNdjson(body: Buffer, window: AcceptWindow): Parsed {
  const parsed: Parsed = { entries: [], failed: [] };
  const lines = splitLines(body);
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i];
    if (text !== undefined && text.trim() === '') continue;
    const r = parseLine(text, i + 1, window);
    if ('line' in r) parsed.failed.push(r);
    else parsed.entries.push(r);
  }
  return parsed;
}

/** The batch route's answer, and the failed lines. */
const answer = (p: Parsed, entryId: string, receivedAt: string): string => batchAnswer(entryId, p.entries.length, receivedAt,
  `,"errors":${p.failed.length > 0},"rejected":${p.failed.length},"items":${JSON.stringify(p.failed.slice(0, MAX_ITEMS))}`);

export function ndjson(cfg: Config, queue: Queue, x: Exchange, req: HttpRequest): void {
  readRequest(x, req, cfg.server.body_limit_batch, (buf) => {
    const p = parseNdjson(buf, acceptWindow(cfg, Date.now()));
    if (p.failed.length) {
      protocolRecords.inc({ protocol: 'ndjson', outcome: 'rejected' }, p.failed.length);
      logsRefused.inc({ reason: 'invalid' }, p.failed.length);
    }
    if (!p.entries.length) {
      const detail = p.failed.length ? p.failed.flatMap((f) => f.detail) : [{ loc: ['body'], msg: 'The body holds no log line', type: 'too_short' }];
      return fail(x, 'LOGD_VALIDATION_FAILED', detail);
    }
    appendEntries(queue, x, p.entries, (id, receivedAt) => {
      protocolRecords.inc({ protocol: 'ndjson', outcome: 'stored' }, p.entries.length);
      sendJson(x, 200, answer(p, id, receivedAt));
    });
  });
}
