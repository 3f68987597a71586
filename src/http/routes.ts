/**
 * The route table: every endpoint with its method, path (uWS pattern), the
 * token scope it needs, and its handler. server.ts registers them; the
 * OpenAPI document and authentication read the same table.
 */
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import type { Cache } from '../cache/cache';
import type { Versions } from '../cache/versions';
import type { Queue } from '../queue/stream';
import type { ReadPool } from '../read/db';
import type { Authenticator } from './auth';
import { health } from './health';
import { ingest, INGEST_ERRORS } from './ingest';
import { upload, type Upload } from './upload';
import { ELASTIC_ROUTES } from './elastic';
import { LOKI_ROUTES } from './loki';
import { OTLP_ROUTES } from './otlp';
import { LogdError, type ErrorCode } from '../errors';
import { clusterMetrics, METRICS_CONTENT_TYPE } from '../metrics';
import { VERSION } from '../version';
import { CONSOLE_ASSETS, sendConsolePage } from './console';
import { DOCS_ASSETS, REDOC_CSP, REDOC_PAGE, SWAGGER_CSP, SWAGGER_PAGE } from './docs';
import { openApiDocument } from './openapi';
import { purgeLogsRoute } from './purge';
import { TAIL_PATH, tailQuerySchema } from './tail';
import {
  deviceLogsAnswerSchema, deviceLogsQuerySchema, purgeAnswerSchema, purgeQuerySchema, searchAnswerSchema, searchQuerySchema, statsAnswerSchema, statsQuerySchema,
  histogramAnswerSchema, histogramQuerySchema, devicesAnswerSchema, devicesQuerySchema,
} from './query-schemas';
import { getDeviceLogs, getDevices, getHistogram, getStats, searchLogsRoute } from './read';
import type { Reply } from './body';
import { fail, send, sendError, sendJson, type Exchange } from './respond';
import { batchReceivedSchema, healthSchema, logReceivedSchema, ndjsonReceivedSchema } from './schemas';

/** What handlers share in one worker. */
export interface Context {
  cfg: Config;
  queue: Queue;
  /** device queries, statistics, searches an index bounds, and /health */
  reads: ReadPool;
  /** searches with a filter applied along the scan (q, data, level): postgres.search_concurrency connections */
  scans: ReadPool;
  auth: Authenticator;
  cache: Cache;
  /** invalidates cached reads (a purge) */
  versions: Versions;
  /** POST /upload's allow list and journal fields */
  upload: Upload;
}

export type Scope = 'ingest' | 'read' | 'admin' | 'public';

export interface Route {
  method: 'get' | 'post' | 'delete';
  /** uWS pattern: `:name` is a path parameter */
  path: string;
  scope: Scope;
  /** one line for the OpenAPI document */
  summary: string;
  description?: string;
  /** JSON Schema (type object) of the query parameters, as the handler validates them */
  query?: object;
  /** JSON Schema of the body */
  body?: object;
  /** the body's media type, when not application/json */
  bodyType?: string;
  /** further media types the body may have, with their JSON Schemas */
  otherBodies?: Record<string, object>;
  /** the success answer (status 200 unless given) */
  ok: { description: string; schema?: object; contentType?: string; status?: number };
  /** catalogue errors the route answers (auth, header and LOGD_INTERNAL errors are added for every route) */
  errors: ErrorCode[];
  /** left out of the OpenAPI document (the docs' own assets) */
  hidden?: boolean;
  /** answers instead, with its own scope, a request whose Accept names text/html: a browser navigating to the path */
  html?: Route;
  /** answers errors found before the handler runs (headers, authentication) in the route's protocol shape; default sendError */
  reply?: Reply;
  /** the media types and JSON Schemas of its error answers, when not logd's JSON Error (a protocol's own shape) */
  errorSchemas?: Record<string, object>;
  /** served only when this holds (a protocol switched off in the configuration is 404) */
  enabled?: (cfg: Config) => boolean;
  /** Runs synchronously in the uWS callback (req is valid only until it returns). */
  handle(x: Exchange, req: HttpRequest, ctx: Context): void;
}

/** GET / for a browser: the console's page (it holds no data; the console reads the API with the user's token). */
const CONSOLE_PAGE: Route = {
  method: 'get', path: '/', scope: 'public', hidden: true,
  summary: 'The console',
  ok: { description: 'HTML page', contentType: 'text/html; charset=utf-8' },
  errors: [],
  handle: sendConsolePage,
};

/** Elasticsearch's root probe, and the console for a browser whether or not the Elasticsearch routes are served. */
function withConsole(root: Route): Route {
  return {
    ...root,
    enabled: undefined,
    description: 'A request whose Accept header names text/html (a browser) gets the console, an HTML page, without a token.',
    html: CONSOLE_PAGE,
    handle: (x, req, ctx) => (root.enabled && !root.enabled(ctx.cfg) ? fail(x, 'LOGD_NOT_FOUND', 'no route for GET /') : root.handle(x, req, ctx)),
  };
}

const READ_ERRORS: ErrorCode[] = ['LOGD_VALIDATION_FAILED', 'LOGD_DATABASE_UNAVAILABLE', 'LOGD_BUSY', 'LOGD_QUERY_TIMEOUT'];
const PAGE = 'text/html; charset=utf-8';

export const ROUTES: Route[] = [
  {
    method: 'post', path: '/api/log', scope: 'ingest',
    summary: 'Send one log',
    description: 'Answers once the log is in the Redis stream; it is in PostgreSQL within one persist batch.',
    body: { $ref: 'LogEntry' },
    ok: { description: 'accepted', schema: logReceivedSchema },
    errors: INGEST_ERRORS,
    handle: (x, req, ctx) => ingest('single', ctx.cfg, ctx.queue, x, req),
  },
  {
    method: 'post', path: '/api/logs/batch', scope: 'ingest',
    summary: 'Send 1 to 1000 logs (JSON), or any number as NDJSON',
    description: 'JSON ({"logs": [...]}) is all or nothing: one invalid entry refuses the whole batch, naming it. '
      + 'NDJSON (application/x-ndjson: one log entry per line, up to server.body_limit_batch) stores every valid line and answers which lines were rejected; '
      + '422 only when no line is valid.',
    body: { $ref: 'LogBatch' },
    otherBodies: { 'application/x-ndjson': { type: 'string', description: 'one JSON log entry (LogEntry) per line' } },
    ok: { description: 'accepted: the JSON answer, or for NDJSON the lines stored and the rejected ones', schema: { oneOf: [batchReceivedSchema, ndjsonReceivedSchema] } },
    errors: INGEST_ERRORS,
    handle: (x, req, ctx) => ingest('batch', ctx.cfg, ctx.queue, x, req),
  },
  {
    method: 'post', path: '/upload', scope: 'public',
    summary: 'Upload journal entries (systemd-journal-upload)',
    description: 'The journal export format, as systemd-journal-upload sends it (chunked). No token: the source address must be in journal.allow (behind nginx, restrict /upload there). '
      + 'An entry resent after a failed upload (same __SEQNUM_ID, a __SEQNUM already stored) is skipped. A body that breaks the format gets 400 naming the byte offset; the entries before it are stored.',
    body: { type: 'string', format: 'binary' },
    bodyType: 'application/vnd.fdo.journal',
    ok: { description: 'stored: "OK: N entries stored, M already stored"', contentType: 'text/plain; charset=utf-8' },
    errors: ['LOGD_SOURCE_NOT_ALLOWED', 'LOGD_UNSUPPORTED_MEDIA_TYPE', 'LOGD_JOURNAL_INVALID', 'LOGD_QUEUE_UNAVAILABLE', 'LOGD_BACKLOG_FULL'],
    handle: (x, req, ctx) => upload(ctx.cfg, ctx.queue, ctx.upload, x, req),
  },
  ...OTLP_ROUTES,
  ...LOKI_ROUTES,
  ...ELASTIC_ROUTES.map((r) => (r.path === '/' ? withConsole(r) : r)),
  {
    method: 'get', path: '/api/logs/:device_id', scope: 'read',
    summary: "A device's newest logs",
    description: 'Newest first. Served from the Redis cache when it holds a current answer (source: "cache"): '
      + 'persisting a log of the device invalidates it, so a log is visible once its persist batch is committed.',
    query: deviceLogsQuerySchema,
    ok: { description: 'the logs', schema: deviceLogsAnswerSchema },
    errors: READ_ERRORS,
    handle: getDeviceLogs,
  },
  {
    method: 'get', path: '/api/logs', scope: 'read',
    summary: 'Search logs',
    description: 'Filters combine with AND. Newest first (created_at, then id); pages follow next_cursor (keyset, stable under inserts).',
    query: searchQuerySchema,
    ok: { description: 'one page of logs', schema: searchAnswerSchema },
    errors: READ_ERRORS,
    handle: searchLogsRoute,
  },
  {
    method: 'delete', path: '/api/logs', scope: 'admin',
    summary: "Delete a device's logs",
    description: 'Deletes the logs of device_id created before until (all of them without it) in chunks of one transaction each, '
      + 'takes them out of the statistics rollups in the same transactions, and invalidates the cached reads of the device and the statistics. '
      + 'A device with no logs answers deleted 0. Logs of the device still in the stream are persisted afterwards.',
    query: purgeQuerySchema,
    ok: { description: 'the logs are deleted', schema: purgeAnswerSchema },
    errors: [...READ_ERRORS, 'LOGD_QUEUE_UNAVAILABLE'],
    handle: purgeLogsRoute,
  },
  {
    method: 'get', path: TAIL_PATH, scope: 'read',
    summary: 'Live tail of new logs (WebSocket)',
    description: 'A WebSocket (GET with Upgrade: websocket) that sends, as JSON text frames, {"type":"ready","position"} first, then '
      + '{"type":"logs","position","logs":[...]} with the matching logs of each stream entry accepted after it (position: pass it as after= to resume; '
      + 'an entry ID, or with a sharded queue one entry ID per shard joined by commas: opaque to clients), '
      + '{"type":"skipped","reason":"slow"|"expired","count","position"}, {"type":"status","queue":"unavailable"|"available"} and {"type":"error","code","detail"} before a close. '
      + 'Filters as in search. Token: Authorization, or the subprotocols "logd.v1, logd.token.<token>" (the server selects logd.v1). The client sends nothing.',
    query: tailQuerySchema,
    // server.ts registers the upgrade itself (tail.ts); this route answers a GET without one.
    ok: { description: 'Switching Protocols: the WebSocket is open', status: 101 },
    errors: ['LOGD_VALIDATION_FAILED', 'LOGD_UPGRADE_REQUIRED', 'LOGD_TAIL_FULL'],
    handle: (x) => fail(x, 'LOGD_UPGRADE_REQUIRED', `${TAIL_PATH} is a WebSocket: send Upgrade: websocket`),
  },
  {
    method: 'get', path: '/api/stats', scope: 'read',
    summary: 'Log counts: in total, per level, top devices',
    description: 'From rollups the persister keeps in the transaction of each batch: exact for committed logs, never a scan of the logs table. '
      + 'With since: the same over created_at >= since, exact to the microsecond.',
    query: statsQuerySchema,
    ok: { description: 'the counts', schema: statsAnswerSchema },
    errors: READ_ERRORS,
    handle: getStats,
  },
  {
    method: 'get', path: '/api/histogram', scope: 'read',
    summary: 'Log volume over time, per level',
    description: 'Logs per bucket of step over [since, until), per level (or in total for one device_id): the whole hours from the rollups '
      + 'the persister keeps, at most half an hour of logs at each end counted from the logs, exact to the microsecond; never a scan of the logs table.',
    query: histogramQuerySchema,
    ok: { description: 'the buckets', schema: histogramAnswerSchema },
    errors: READ_ERRORS,
    handle: getHistogram,
  },
  {
    method: 'get', path: '/api/devices', scope: 'read',
    summary: 'Known devices, by id prefix',
    description: 'Ids of the devices with stored logs, from the per-device rollup (one row per device, never a scan of the logs table), in order; '
      + 'for suggestions: a device whose last log was purged or dropped by retention is gone.',
    query: devicesQuerySchema,
    ok: { description: 'the device ids', schema: devicesAnswerSchema },
    errors: READ_ERRORS,
    handle: getDevices,
  },
  {
    method: 'get', path: '/metrics', scope: 'admin',
    summary: 'Prometheus metrics of the whole instance',
    ok: { description: 'Prometheus text format', contentType: 'text/plain; version=0.0.4' },
    errors: [],
    handle: (x) => void clusterMetrics().then(
      (text) => send(x, 200, METRICS_CONTENT_TYPE, text),
      (err) => sendError(x, new LogdError('LOGD_INTERNAL', 'cannot gather the metrics of all processes', { cause: err })),
    ),
  },
  {
    method: 'get', path: '/health', scope: 'public',
    summary: 'Health of Redis, PostgreSQL and the persisters',
    description: '503 when degraded (ingest still accepts) or unhealthy (Redis down), with the reasons.',
    ok: { description: 'healthy', schema: healthSchema },
    errors: [],
    handle: (x, _req, ctx) => void health(ctx.cfg, ctx.queue, ctx.reads.pool).then(({ status, body }) => sendJson(x, status, body)),
  },
  {
    method: 'get', path: '/openapi.json', scope: 'public',
    summary: 'This OpenAPI 3.1 document',
    ok: { description: 'the document', schema: { type: 'object' } },
    errors: [],
    handle: (x) => sendJson(x, 200, openApiText()),
  },
  {
    method: 'get', path: '/docs', scope: 'public',
    summary: 'Interactive API docs (Swagger UI)',
    ok: { description: 'HTML page', contentType: PAGE },
    errors: [],
    handle: (x) => send(x, 200, PAGE, SWAGGER_PAGE, { 'content-security-policy': SWAGGER_CSP }),
  },
  {
    method: 'get', path: '/redoc', scope: 'public',
    summary: 'API reference (ReDoc)',
    ok: { description: 'HTML page', contentType: PAGE },
    errors: [],
    handle: (x) => send(x, 200, PAGE, REDOC_PAGE, { 'content-security-policy': REDOC_CSP }),
  },
  {
    method: 'get', path: '/docs/assets/:file', scope: 'public', hidden: true,
    summary: 'Assets of the docs pages',
    ok: { description: 'a file' },
    errors: ['LOGD_NOT_FOUND'],
    handle: (x, req) => DOCS_ASSETS.serve(x, req),
  },
  {
    method: 'get', path: '/console/:file', scope: 'public', hidden: true,
    summary: 'Assets of the console',
    ok: { description: 'a file' },
    errors: ['LOGD_NOT_FOUND'],
    handle: (x, req) => CONSOLE_ASSETS.serve(x, req),
  },
];

let openApi: string | undefined;
/** Built on first request: every route is in the table by then. */
function openApiText(): string {
  openApi ??= JSON.stringify(openApiDocument(ROUTES, VERSION));
  return openApi;
}
