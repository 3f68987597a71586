/**
 * The HTTP worker's server: routes on uWebSockets.js (every use of uWS stays
 * under src/http/, so moving to the official build is a package change).
 */
import type pg from 'pg';
import uWS from 'uWebSockets.js';
import type { Config } from '../config';
import type { Queue } from '../queue/stream';
import { health } from './health';
import { ingest } from './ingest';
import { exchange, fail, sendJson, type Exchange } from './respond';

export interface Server {
  /** requests being handled */
  inflight(): number;
  /** stops accepting connections; requests on open ones are answered with Connection: close */
  stopListening(): void;
}

export function startServer(cfg: Config, queue: Queue, pool: pg.Pool): Promise<Server> {
  let inflight = 0;
  let draining = false;
  let listenSocket: uWS.us_listen_socket | undefined;
  const begin = (res: uWS.HttpResponse): Exchange => {
    inflight++;
    return exchange(res, draining, () => inflight--);
  };

  const app = uWS.App()
    .post('/api/log', (res, req) => ingest('single', cfg, queue, begin(res), req))
    .post('/api/logs/batch', (res, req) => ingest('batch', cfg, queue, begin(res), req))
    .get('/health', (res) => {
      const x = begin(res);
      health(cfg, queue, pool).then(({ status, body }) => sendJson(x, status, body));
    })
    .any('/api/log', (res) => fail(begin(res), 'LOGD_METHOD_NOT_ALLOWED', 'use POST /api/log'))
    .any('/api/logs/batch', (res) => fail(begin(res), 'LOGD_METHOD_NOT_ALLOWED', 'use POST /api/logs/batch'))
    .any('/health', (res) => fail(begin(res), 'LOGD_METHOD_NOT_ALLOWED', 'use GET /health'))
    .any('/*', (res, req) => fail(begin(res), 'LOGD_NOT_FOUND', `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`));

  return new Promise((resolve, reject) => {
    app.listen(cfg.server.host, cfg.server.port, (socket) => {
      if (!socket) return reject(new Error(`cannot listen on ${cfg.server.host}:${cfg.server.port}`));
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
