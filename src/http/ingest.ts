/**
 * POST /api/log and POST /api/logs/batch: read, decode, parse, validate,
 * encode the frame, append it to the stream, answer. The 200 is sent
 * only after Redis has the frame. appendEntries() does the last steps for
 * every HTTP ingest route.
 */
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { LogdError, type ErrorCode } from '../errors';
import { logsAccepted, logsRefused } from '../metrics';
import type { Accepted } from '../model/entry';
import { encodeFrame, type EncodedFrame } from '../queue/frame';
import type { Queue } from '../queue/stream';
import { acceptWindow } from '../storage/layout';
import { parseJson, readRequest, type Reply } from './body';
import { ndjson } from './ndjson';
import { fail, sendError, sendJson, type Exchange } from './respond';
import { validateBody } from './validate';

/** What every ingest route may answer: body, encoding and backpressure errors. */
export const INGEST_ERRORS: ErrorCode[] = [
  'LOGD_INVALID_JSON', 'LOGD_INVALID_UTF8', 'LOGD_INVALID_ENCODING', 'LOGD_BODY_TOO_LARGE', 'LOGD_UNSUPPORTED_MEDIA_TYPE',
  'LOGD_UNSUPPORTED_ENCODING', 'LOGD_VALIDATION_FAILED', 'LOGD_OVERLOADED', 'LOGD_QUEUE_UNAVAILABLE', 'LOGD_BACKLOG_FULL',
];

export type Kind = 'single' | 'batch';

const JSON_TYPE = /^application\/json\s*(;|$)/i;
const NDJSON_TYPE = /^application\/(x-)?ndjson\s*(;|$)/i;

/** The batch route's answer for `count` logs in stream entry `entryId`; `more`: further members, each after a comma. */
export function batchAnswer(entryId: string, count: number, receivedAt: string, more = ''): string {
  let ids = '';
  for (let i = 0; i < count; i++) ids += i ? `,"${entryId}:${i}"` : `"${entryId}:${i}"`;
  return `{"status":"received","count":${count},"message_ids":[${ids}],"received_at":"${receivedAt}"${more}}`;
}

function answer(kind: Kind, entryId: string, count: number, receivedAt: string): string {
  if (kind === 'single') return `{"status":"received","message_id":"${entryId}:0","received_at":"${receivedAt}"}`;
  return batchAnswer(entryId, count, receivedAt);
}

/** Logs in a parsed body that failed validation (a batch's array length, else one). */
function countLogs(kind: Kind, body: unknown): number {
  const logs = kind === 'batch' ? (body as { logs?: unknown } | null)?.logs : undefined;
  return Array.isArray(logs) ? Math.max(1, logs.length) : 1;
}

/** Handles one ingest request (synchronously up to the append). */
export function ingest(kind: Kind, cfg: Config, queue: Queue, x: Exchange, req: HttpRequest): void {
  const contentType = req.getHeader('content-type');
  const limit = kind === 'single' ? cfg.server.body_limit_single : cfg.server.body_limit_batch;
  if (kind === 'batch' && NDJSON_TYPE.test(contentType)) return ndjson(cfg, queue, x, req);
  if (!JSON_TYPE.test(contentType)) {
    const also = kind === 'batch' ? ' or application/x-ndjson' : '';
    fail(x, 'LOGD_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json${also}, got ${contentType ? `"${contentType}"` : 'none'}`);
    return;
  }
  readRequest(x, req, limit, (buf) => {
    const parsed = parseJson(buf);
    if (parsed instanceof LogdError) return sendError(x, parsed);
    const { text, value: body } = parsed;
    const verdict = validateBody(kind, body, text.includes('\\u'), acceptWindow(cfg, Date.now()));
    if (!verdict.ok) {
      logsRefused.inc({ reason: 'invalid' }, countLogs(kind, body));
      return fail(x, 'LOGD_VALIDATION_FAILED', verdict.issues);
    }
    appendEntries(queue, x, verdict.entries, (id, receivedAt) => sendJson(x, 200, answer(kind, id, verdict.entries.length, receivedAt)));
  });
}

/**
 * Appends `entries` as one stream entry (all or nothing: a client that
 * retries after a refusal stores them once) and calls `ok` with its id and
 * the receive time once Redis has it; a refusal (503 LOGD_BACKLOG_FULL or
 * LOGD_QUEUE_UNAVAILABLE) is answered with `reply`. No entries: `ok` at once,
 * with an empty id. Call it from the body's callback.
 */
export function appendEntries(
  queue: Queue, x: Exchange, entries: Accepted[],
  ok: (id: string, receivedAt: string) => void, reply: Reply = sendError,
): void {
  const received = Date.now();
  const receivedAt = new Date(received).toISOString();
  if (!entries.length) return ok('', receivedAt);
  const frame = encodeFrame(entries, received);
  // uWS aborts a request when the next one is pipelined behind it on the same connection, in the same read: by
  // the check phase it has parsed the whole read, so a request it aborted is never appended (stored, unanswered).
  setImmediate(() => {
    if (!x.ended) append(queue, x, frame, receivedAt, ok, reply);
  });
}

function append(
  queue: Queue, x: Exchange, frame: EncodedFrame, receivedAt: string,
  ok: (id: string, receivedAt: string) => void, reply: Reply,
): void {
  const { n } = frame;
  queue.append(frame).then(
    (id) => {
      logsAccepted.inc(n);
      ok(id, receivedAt);
    },
    (err) => {
      const e = err instanceof LogdError ? err : new LogdError('LOGD_INTERNAL', undefined, { cause: err });
      logsRefused.inc({ reason: e.code === 'LOGD_BACKLOG_FULL' ? 'backlog' : 'unavailable' }, n);
      reply(x, e);
    },
  );
}
