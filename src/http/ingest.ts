/**
 * POST /api/log and POST /api/logs/batch: read, decode, parse, validate,
 * encode the frame, append it to the stream, answer. The 200 is sent
 * only after Redis has the frame.
 */
import { isUtf8 } from 'node:buffer';
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { LogdError } from '../errors';
import { logsAccepted, logsRefused } from '../metrics';
import { encodeFrame, type EncodedFrame } from '../queue/frame';
import type { Queue } from '../queue/stream';
import { acceptWindow } from '../storage/layout';
import { readBody } from './body';
import { fail, sendError, sendJson, type Exchange } from './respond';
import { validateBody } from './validate';

export type Kind = 'single' | 'batch';

const JSON_TYPE = /^application\/json\s*(;|$)/i;

function answer(kind: Kind, entryId: string, count: number, receivedAt: string): string {
  if (kind === 'single') return `{"status":"received","message_id":"${entryId}:0","received_at":"${receivedAt}"}`;
  let ids = '';
  for (let i = 0; i < count; i++) ids += i ? `,"${entryId}:${i}"` : `"${entryId}:${i}"`;
  return `{"status":"received","count":${count},"message_ids":[${ids}],"received_at":"${receivedAt}"}`;
}

/** Logs in a parsed body that failed validation (a batch's array length, else one). */
function countLogs(kind: Kind, body: unknown): number {
  const logs = kind === 'batch' ? (body as { logs?: unknown } | null)?.logs : undefined;
  return Array.isArray(logs) ? Math.max(1, logs.length) : 1;
}

/** Handles one ingest request (synchronously up to the append). */
export function ingest(kind: Kind, cfg: Config, queue: Queue, x: Exchange, req: HttpRequest): void {
  const contentType = req.getHeader('content-type');
  const declared = Number(req.getHeader('content-length') || 0);
  const limit = kind === 'single' ? cfg.server.body_limit_single : cfg.server.body_limit_batch;
  if (!JSON_TYPE.test(contentType)) {
    fail(x, 'LOGD_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json, got ${contentType ? `"${contentType}"` : 'none'}`);
    return;
  }
  readBody(x, limit, declared, (buf) => {
    if (!isUtf8(buf)) return fail(x, 'LOGD_INVALID_UTF8');
    const text = buf.toString('utf8');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      return fail(x, 'LOGD_INVALID_JSON', `request body is not valid JSON: ${(err as Error).message}`);
    }
    const verdict = validateBody(kind, body, text.includes('\\u'), acceptWindow(cfg, Date.now()));
    if (!verdict.ok) {
      logsRefused.inc({ reason: 'invalid' }, countLogs(kind, body));
      return fail(x, 'LOGD_VALIDATION_FAILED', verdict.issues);
    }
    const received = Date.now();
    const receivedAt = new Date(received).toISOString();
    const frame = encodeFrame(verdict.entries, received);
    // uWS aborts a request when the next one is pipelined behind it on the same connection, in the same read: by
    // the check phase it has parsed the whole read, so a request it aborted is never appended (stored, unanswered).
    setImmediate(() => {
      if (!x.ended) append(kind, cfg, queue, x, frame, receivedAt);
    });
  });
}

function append(kind: Kind, cfg: Config, queue: Queue, x: Exchange, frame: EncodedFrame, receivedAt: string): void {
  const { n } = frame;
  queue.append(cfg.queue.max_backlog, frame).then(
    (id) => {
      logsAccepted.inc(n);
      sendJson(x, 200, answer(kind, id, n, receivedAt));
    },
    (err) => {
      const e = err instanceof LogdError ? err : new LogdError('LOGD_INTERNAL', undefined, { cause: err });
      logsRefused.inc({ reason: e.code === 'LOGD_BACKLOG_FULL' ? 'backlog' : 'unavailable' }, n);
      sendError(x, e);
    },
  );
}
