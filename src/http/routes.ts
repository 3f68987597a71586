/**
 * The route table: every endpoint with its method, path (uWS pattern), the
 * token scope it needs, and its handler. server.ts registers them; the
 * OpenAPI document and authentication read the same table.
 */
import type { HttpRequest } from 'uWebSockets.js';
import type pg from 'pg';
import type { Config } from '../config';
import type { Queue } from '../queue/stream';
import type { Authenticator } from './auth';
import { health } from './health';
import { ingest } from './ingest';
import { LogdError } from '../errors';
import { clusterMetrics, METRICS_CONTENT_TYPE } from '../metrics';
import { send, sendError, sendJson, type Exchange } from './respond';

/** What handlers share in one worker. */
export interface Context {
  cfg: Config;
  queue: Queue;
  pool: pg.Pool;
  auth: Authenticator;
}

export type Scope = 'ingest' | 'read' | 'admin' | 'public';

export interface Route {
  method: 'get' | 'post';
  /** uWS pattern: `:name` is a path parameter */
  path: string;
  scope: Scope;
  /** Runs synchronously in the uWS callback (req is valid only until it returns). */
  handle(x: Exchange, req: HttpRequest, ctx: Context): void;
}

export const ROUTES: Route[] = [
  { method: 'post', path: '/api/log', scope: 'ingest', handle: (x, req, ctx) => ingest('single', ctx.cfg, ctx.queue, x, req) },
  { method: 'post', path: '/api/logs/batch', scope: 'ingest', handle: (x, req, ctx) => ingest('batch', ctx.cfg, ctx.queue, x, req) },
  {
    method: 'get', path: '/metrics', scope: 'admin',
    handle: (x) => void clusterMetrics().then(
      (text) => send(x, 200, METRICS_CONTENT_TYPE, text),
      (err) => sendError(x, new LogdError('LOGD_INTERNAL', 'cannot gather the metrics of all processes', { cause: err })),
    ),
  },
  {
    method: 'get', path: '/health', scope: 'public',
    handle: (x, _req, ctx) => void health(ctx.cfg, ctx.queue, ctx.pool).then(({ status, body }) => sendJson(x, status, body)),
  },
];
