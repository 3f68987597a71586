/**
 * DELETE /api/logs: erases a device's logs, or those created before `until`
 * (src/storage/purge.ts), chunk by chunk on the worker's read pool, and
 * answers how many went. Everything needed from the request is read before
 * the first await (uWS invalidates it when the callback returns).
 */
import type { HttpRequest } from 'uWebSockets.js';
import { log } from '../log';
import { purge } from '../storage/purge';
import { parseTime, queryParser } from './query';
import { purgeQuerySchema } from './query-schemas';
import { fail, sendError, sendJson, type Exchange } from './respond';
import type { Context } from './routes';

const parsePurgeQuery = queryParser<{ device_id: string; until?: string }>(purgeQuerySchema);

export function purgeLogsRoute(x: Exchange, req: HttpRequest, ctx: Context): void {
  const query = parsePurgeQuery(req.getQuery());
  if (!query.ok) return fail(x, 'LOGD_VALIDATION_FAILED', query.issues);
  const { device_id: device, until } = query.value;
  purge(ctx.reads.pool, device, until === undefined ? undefined : parseTime(until), { versions: ctx.versions }).then(
    (deleted) => {
      log().info({ device, until, deleted }, 'purged logs');
      sendJson(x, 200, JSON.stringify({ device_id: device, until: until ?? null, deleted }));
    },
    (err) => sendError(x, ctx.reads.failure(err)),
  );
}
