/**
 * The messages a live tail sends (GET /api/tail), each one JSON text frame.
 * The protocol has no client messages.
 *
 *   {"type":"ready","position":ID}                       once, first: live from after ID
 *   {"type":"logs","position":ID,"logs":[...]}           the matching logs of the stream entry ID
 *   {"type":"skipped","reason":"slow","count":N,"position":ID}      N matching logs up to ID not sent
 *   {"type":"skipped","reason":"expired","count":null,"position":ID} the entries after `after` were trimmed
 *   {"type":"status","queue":"unavailable"|"available"}  the worker lost Redis / has it again
 *   {"type":"error","code":CODE,"detail":TEXT}           right before the server closes
 */
import type { ErrorCode } from '../errors';
import type { FrameLog } from '../queue/frame';

export const readyMessage = (position: string): string => `{"type":"ready","position":"${position}"}`;

/** log_data is JSON text logd wrote into the row; anything else (a frame written by hand) becomes {}. */
const dataText = (json: string): string => (json.startsWith('{') && json.endsWith('}') ? json : '{}');

export function logsMessage(position: string, logs: FrameLog[]): string {
  let out = `{"type":"logs","position":"${position}","logs":[`;
  for (let i = 0; i < logs.length; i++) {
    const l = logs[i];
    out += `${i ? ',' : ''}{"device_id":${JSON.stringify(l.device_id)},"log_level":${JSON.stringify(l.log_level)},"message":${JSON.stringify(l.message)},`
      + `"log_data":${dataText(l.log_data)},"created_at":${JSON.stringify(l.created_at)}}`;
  }
  return `${out}]}`;
}

export const skippedMessage = (reason: 'slow' | 'expired', count: number | null, position: string): string =>
  `{"type":"skipped","reason":"${reason}","count":${count},"position":"${position}"}`;

export const statusMessage = (available: boolean): string => `{"type":"status","queue":"${available ? 'available' : 'unavailable'}"}`;

export const errorMessage = (code: ErrorCode, detail: string): string => JSON.stringify({ type: 'error', code, detail });
