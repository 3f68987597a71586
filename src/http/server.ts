/**
 * The HTTP worker's server on uWebSockets.js (every use of uWS stays under
 * src/http/, so moving to the official build is a package change).
 */
import uWS from 'uWebSockets.js';
import { LogdError } from '../errors';
import { httpDuration, httpRequests } from '../metrics';
import { BodyBudget } from './body';
import { readHeaders, refusal } from './headers';
import { exchange, fail, requestId, sendError, type Exchange } from './respond';
import { ROUTES, type Context, type Route } from './routes';
import { TAIL_PATH, tailSockets } from './tail';

export interface Server {
  /** requests being handled */
  inflight(): number;
  /** stops accepting connections; requests on open ones are answered with Connection: close, live tails are closed (1001) */
  stopListening(): void;
}

/** What a browser navigating to a page sends in Accept; an API client sends application/json, a wildcard, or nothing. */
const ACCEPTS_HTML = /(^|,)\s*text\/html\s*(;|,|$)/i;

/** A 404 names the path it did not find, cut to this many characters (the answer never echoes a huge path). */
const MAX_ECHOED_PATH = 200;

export function startServer(ctx: Context): Promise<Server> {
  let inflight = 0;
  let draining = false;
  let listenSocket: uWS.us_listen_socket | undefined;
  const budget = new BodyBudget(ctx.cfg.server.max_inflight_bytes);
  const begin = (res: uWS.HttpResponse, id: string, head: boolean, route: string): Exchange => {
    inflight++;
    const t0 = performance.now();
    const x: Exchange = exchange(res, requestId(id), head, draining, budget, (status) => {
      inflight--;
      budget.release(x);
      httpRequests.inc({ route, status });
      httpDuration.observe({ route }, (performance.now() - t0) / 1000);
    });
    return x;
  };

  /**
   * Headers, then authentication, then the route's handler. A request refused
   * before its body is read keeps its connection: uWS skips the unread body
   * (Content-Length or chunked), so a proxy's pooled connection stays usable.
   */
  const handler = (routed: Route, head: boolean) => (res: uWS.HttpResponse, req: uWS.HttpRequest): void => {
    const h = readHeaders(req);
    const r = routed.html && ACCEPTS_HTML.test(h.accept) ? routed.html : routed;
    const x = begin(res, h.requestId, head, r.path);
    const reply = r.reply ?? sendError;
    const refused = refusal(ctx, r.scope, h);
    if (refused) return reply(x, refused);
    try {
      r.handle(x, req, ctx);
    } catch (err) {
      // Thrown out of a uWS callback, it would kill the worker and every request on it.
      reply(x, new LogdError('LOGD_INTERNAL', undefined, { cause: err }));
    }
  };

  const app = uWS.App();
  // The WebSocket upgrade first: a GET /api/tail without one falls through to its route (426).
  const tails = tailSockets(ctx, begin);
  app.ws(TAIL_PATH, tails.behavior);
  const methods = new Map<string, string[]>();
  for (const r of ROUTES) {
    if (r.enabled && !r.enabled(ctx.cfg)) continue;
    const allowed = methods.get(r.path) ?? [];
    app[r.method === 'delete' ? 'del' : r.method](r.path, handler(r, false));
    allowed.push(r.method.toUpperCase());
    if (r.method === 'get') {
      app.head(r.path, handler(r, true));
      allowed.push('HEAD');
    }
    methods.set(r.path, allowed);
  }
  for (const [path, allowed] of methods) {
    app.any(path, (res, req) => {
      fail(begin(res, req.getHeader('x-request-id'), req.getMethod() === 'head', path), 'LOGD_METHOD_NOT_ALLOWED', `use ${allowed.join(' or ')} ${path}`);
    });
  }
  app.any('/*', (res, req) => {
    const x = begin(res, req.getHeader('x-request-id'), req.getMethod() === 'head', 'unmatched');
    const url = req.getUrl();
    fail(x, 'LOGD_NOT_FOUND', `no route for ${req.getMethod().toUpperCase()} ${url.length > MAX_ECHOED_PATH ? `${url.slice(0, MAX_ECHOED_PATH)}...` : url}`);
  });

  const { host, port } = ctx.cfg.server;
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) return reject(new Error(`cannot listen on ${host}:${port}`));
      listenSocket = socket;
      resolve({
        inflight: () => inflight,
        stopListening: () => {
          draining = true;
          tails.closeAll();
          if (listenSocket) uWS.us_listen_socket_close(listenSocket);
          listenSocket = undefined;
        },
      });
    });
  });
}
