/**
 * The read routes: GET /api/logs/{device_id} and GET /api/stats (through the
 * cache), GET /api/logs (search, straight from PostgreSQL: in the scans pool
 * when a filter is applied along the scan, see src/read/db.ts), GET
 * /api/histogram and GET /api/devices (from the rollups). Everything
 * the handler needs from the request is read before the first await (uWS
 * invalidates it when the callback returns).
 */
import type { HttpRequest } from 'uWebSockets.js';
import { cacheKeys } from '../cache/versions';
import type { Answer } from '../cache/cache';
import { LogdError } from '../errors';
import { log } from '../log';
import { searches } from '../metrics';
import { deviceLogs, filtersAlongScan, scansEverywhere, searchLogs, type Search } from '../read/logs';
import { devices } from '../read/devices';
import { stats } from '../read/stats';
import { bucketCount, defaultStep, histogram, HISTOGRAM_STEPS, MAX_BUCKETS } from '../read/histogram';
import { decodeCursor, encodeCursor, parseDataParam, parseSearchText, parseTime, pathParser, queryParser } from './query';
import { deviceIdParamSchema, deviceLogsQuerySchema, devicesQuerySchema, histogramQuerySchema, searchQuerySchema, statsQuerySchema } from './query-schemas';
import { fail, sendError, sendJson, type Exchange } from './respond';
import type { Context } from './routes';
import type { Issue } from './validate';

const parseDeviceId = pathParser('device_id', deviceIdParamSchema);
const parseDeviceQuery = queryParser<{ limit: number }>(deviceLogsQuerySchema);
const parseSearchQuery = queryParser<{
  device_id?: string; level?: string[]; since?: string; until?: string; q?: string; data?: string; limit: number; cursor?: string;
}>(searchQuerySchema);
const parseDevicesQuery = queryParser<{ prefix: string; limit: number }>(devicesQuerySchema);
const parseStatsQuery = queryParser<{ since?: string }>(statsQuerySchema);
const parseHistogramQuery = queryParser<{ since: string; until?: string; step?: string; device_id?: string }>(histogramQuerySchema);

function failed(x: Exchange, err: unknown): void {
  const e = err instanceof LogdError ? err : new LogdError('LOGD_INTERNAL', undefined, { cause: err });
  if (e.code === 'LOGD_INTERNAL') log().error({ err: e.cause ?? e }, 'read failed');
  else log().warn({ err: (e.cause as Error | undefined)?.message, code: e.code }, 'read failed');
  sendError(x, e);
}

/** 200 with the JSON text `p` gives, or the read's failure. */
function sendBody(x: Exchange, p: Promise<string>): void {
  p.then((body) => sendJson(x, 200, body), (err) => failed(x, err));
}

/** `{"source":...}` first, then the answer's own fields. */
function sendAnswer(x: Exchange, p: Promise<Answer>): void {
  sendBody(x, p.then(({ payload, source }) => `{"source":"${source}",${payload.slice(1)}`));
}

export function getDeviceLogs(x: Exchange, req: HttpRequest, ctx: Context): void {
  const id = parseDeviceId(req.getParameter(0) ?? '');
  const query = parseDeviceQuery(req.getQuery());
  if (!id.ok || !query.ok) return fail(x, 'LOGD_VALIDATION_FAILED', [...(id.ok ? [] : id.issues), ...(query.ok ? [] : query.issues)]);
  const device = id.value;
  const { limit } = query.value;
  sendAnswer(x, ctx.cache.through('logs', cacheKeys.deviceLogs(device, limit), cacheKeys.deviceVersion(device), ctx.cfg.cache.device_ttl_s,
    () => deviceLogs(ctx.reads, device, limit)));
}

export function getDevices(x: Exchange, req: HttpRequest, ctx: Context): void {
  const query = parseDevicesQuery(req.getQuery());
  if (!query.ok) return fail(x, 'LOGD_VALIDATION_FAILED', query.issues);
  sendBody(x, devices(ctx.reads, query.value.prefix, query.value.limit));
}

export function getStats(x: Exchange, req: HttpRequest, ctx: Context): void {
  const query = parseStatsQuery(req.getQuery());
  if (!query.ok) return fail(x, 'LOGD_VALIDATION_FAILED', query.issues);
  const since = query.value.since === undefined ? undefined : parseTime(query.value.since);
  sendAnswer(x, ctx.cache.through('stats', cacheKeys.stats(since), cacheKeys.statsVersion, ctx.cfg.cache.stats_ttl_s, () => stats(ctx.reads, since)));
}

export function searchLogsRoute(x: Exchange, req: HttpRequest, ctx: Context): void {
  const query = parseSearchQuery(req.getQuery());
  if (!query.ok) return fail(x, 'LOGD_VALIDATION_FAILED', query.issues);
  const q = query.value;
  const search: Search = {
    deviceId: q.device_id, levels: q.level, limit: q.limit,
    since: q.since === undefined ? undefined : parseTime(q.since),
    until: q.until === undefined ? undefined : parseTime(q.until),
  };
  const issues: Issue[] = [];
  if (q.q !== undefined) {
    const terms = parseSearchText(q.q);
    if (terms.ok) search.terms = terms.value;
    else issues.push(...terms.issues);
  }
  if (q.data !== undefined) {
    const data = parseDataParam(q.data);
    if (data.ok) search.data = data.value;
    else issues.push(...data.issues);
  }
  if (q.cursor !== undefined) {
    const after = decodeCursor(q.cursor);
    if (after.ok) search.after = after.value;
    else issues.push(...after.issues);
  }
  if (issues.length) return fail(x, 'LOGD_VALIDATION_FAILED', issues);
  searches.inc({ reads: scansEverywhere(search) ? 'scan' : 'index' });
  sendBody(x, searchLogs(filtersAlongScan(search) ? ctx.scans : ctx.reads, search, encodeCursor));
}

export function getHistogram(x: Exchange, req: HttpRequest, ctx: Context): void {
  const query = parseHistogramQuery(req.getQuery());
  if (!query.ok) return fail(x, 'LOGD_VALIDATION_FAILED', query.issues);
  const q = query.value;
  const since = parseTime(q.since)!;
  const until = q.until === undefined ? new Date().toISOString() : parseTime(q.until)!;
  const [from, to] = [Date.parse(since), Date.parse(until)];
  if (from >= to) return fail(x, 'LOGD_VALIDATION_FAILED', [{ loc: ['query', 'until'], msg: 'until should be after since', type: 'range_empty' }]);
  const step = q.step ?? defaultStep(from, to);
  const n = bucketCount(from, to, HISTOGRAM_STEPS[step]);
  if (n > MAX_BUCKETS) {
    return fail(x, 'LOGD_VALIDATION_FAILED', [{ loc: ['query', 'step'], msg: `the range holds ${n} buckets of ${step}, more than ${MAX_BUCKETS}: give a wider step or a shorter range`, type: 'too_many_buckets' }]);
  }
  sendBody(x, histogram(ctx.reads, { since, until, step, deviceId: q.device_id }));
}
