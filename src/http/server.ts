/**
 * The HTTP worker's server on uWebSockets.js (every use of uWS stays under
 * src/http/, so moving to the official build is a package change).
 */
import uWS from 'uWebSockets.js';
import { LogdError } from '../errors';
import { httpDuration, httpRequests } from '../metrics';
import { exchange, fail, sendError, type Exchange } from './respond';
import { ROUTES, type Context } from './routes';

export interface Server {
  /** requests being handled */
  inflight(): number;
  /** stops accepting connections; requests on open ones are answered with Connection: close */
  stopListening(): void;
}

export function startServer(ctx: Context): Promise<Server> {
  let inflight = 0;
  let draining = false;
  let listenSocket: uWS.us_listen_socket | undefined;
  const begin = (res: uWS.HttpResponse, req: uWS.HttpRequest, route: string): Exchange => {
    inflight++;
    const t0 = performance.now();
    return exchange(res, req.getHeader('x-request-id'), draining, (status) => {
      inflight--;
      httpRequests.inc({ route, status });
      httpDuration.observe({ route }, (performance.now() - t0) / 1000);
    });
  };

  const app = uWS.App();
  const methods = new Map<string, string[]>();
  for (const r of ROUTES) {
    app[r.method](r.path, (res, req) => {
      const x = begin(res, req, r.path);
      try {
        ctx.auth.check(r.scope, req.getHeader('authorization'));
      } catch (err) {
        x.close = r.method === 'post'; // its body is left unread
        return sendError(x, err as LogdError);
      }
      try {
        r.handle(x, req, ctx);
      } catch (err) {
        // Thrown out of a uWS callback, it would kill the worker and every request on it.
        sendError(x, new LogdError('LOGD_INTERNAL', undefined, { cause: err }));
      }
    });
    methods.set(r.path, [...(methods.get(r.path) ?? []), r.method.toUpperCase()]);
  }
  for (const [path, allowed] of methods) {
    app.any(path, (res, req) => fail(begin(res, req, path), 'LOGD_METHOD_NOT_ALLOWED', `use ${allowed.join(' or ')} ${path}`));
  }
  app.any('/*', (res, req) => fail(begin(res, req, 'unmatched'), 'LOGD_NOT_FOUND', `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`));

  const { host, port } = ctx.cfg.server;
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) return reject(new Error(`cannot listen on ${host}:${port}`));
      listenSocket = socket;
      resolve({
        inflight: () => inflight,
        stopListening: () => {
          draining = true;
          if (listenSocket) uWS.us_listen_socket_close(listenSocket);
          listenSocket = undefined;
        },
      });
    });
  });
}
