import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import type { Queue } from '../queue/stream';
import { fail, type Exchange } from './respond';

export function ndjson(_cfg: Config, _queue: Queue, x: Exchange, _req: HttpRequest): void {
  fail(x, 'LOGD_UNSUPPORTED_MEDIA_TYPE', 'not yet');
}
