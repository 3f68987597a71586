/**
 * The messages a live tail sends (GET /api/tail), each one JSON text frame.
 * The protocol has no client messages. A position P is an entry ID, or
 * sharded one ID per shard joined by "," (position.ts).
 *
 *   {"type":"ready","position":P}                        once, first: live from after P
 *   {"type":"logs","position":P,"logs":[...]}            the matching logs of one stream entry; P covers it
 *   {"type":"skipped","reason":"slow","count":N,"position":P}       N matching logs up to P not sent
 *   {"type":"skipped","reason":"expired","count":null,"position":P} the entries after `after` were trimmed
 *   {"type":"status","queue":"unavailable"|"available"}  the worker lost Redis / has it again
 *   {"type":"error","code":CODE,"detail":TEXT}           right before the server closes
 */
import type { ErrorCode } from '../errors';
import type { FrameLog } from '../queue/frame';

export const readyMessage = (position: string): string => `{"type":"ready","position":"${position}"}`;

/** log_data is JSON text logd wrote into the row; anything else (a frame written by hand) becomes {}. */
const dataText = (json: string): string => (json.startsWith('{') && json.endsWith('}') ? json : '{}');

const LOGS_HEAD = '{"type":"logs","position":"';

export function logsMessage(position: string, logs: FrameLog[]): string {
  let out = `${LOGS_HEAD}${position}","logs":[`;
  for (let i = 0; i < logs.length; i++) {
    const l = logs[i];
    out += `${i ? ',' : ''}{"device_id":${JSON.stringify(l.device_id)},"log_level":${JSON.stringify(l.log_level)},"message":${JSON.stringify(l.message)},`
      + `"log_data":${dataText(l.log_data)},"created_at":${JSON.stringify(l.created_at)}}`;
  }
  return `${out}]}`;
}

/** A logs message of `position` made a message of another position, the logs as they were serialized. */
export const repositioned = (text: string, position: string, other: string): string =>
  `${LOGS_HEAD}${other}${text.slice(LOGS_HEAD.length + position.length)}`;

export const skippedMessage = (reason: 'slow' | 'expired', count: number | null, position: string): string =>
  `{"type":"skipped","reason":"${reason}","count":${count},"position":"${position}"}`;

export const statusMessage = (available: boolean): string => `{"type":"status","queue":"${available ? 'available' : 'unavailable'}"}`;

export const errorMessage = (code: ErrorCode, detail: string): string => JSON.stringify({ type: 'error', code, detail });
