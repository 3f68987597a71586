/**
 * Load through nginx and what clients see when a logd instance leaves (is
 * killed, or stops gracefully) under it: test/nginx.test.ts (one Redis) and
 * test/cluster.test.ts (a Redis Cluster, three instances).
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Test } from 'tap';
import { waitFor, type PostgresServer } from './services';
import type { Logd } from './logd';
import { httpRequest, type AccessEntry, type Nginx } from './nginx';

export const addr = (l: Logd): string => `127.0.0.1:${l.port}`;

/** One request of the tracked load. */
export interface Attempt {
  /** User-Agent, unique: finds the request's access log line */
  ua: string;
  messages: string[];
  /** performance.now() when sent and when the answer (or error) was complete (0: not yet) */
  start: number;
  end: number;
  status?: number;
  body?: any;
  /** the answer's X-Request-ID */
  requestId?: string;
  /** a network error instead of an answer (there must be none: nginx stays up) */
  error?: string;
}

export interface Load {
  /** every request, from when it is sent (end 0 until it is answered) */
  attempts: Attempt[];
  stop(): Promise<Attempt[]>;
}

/**
 * `clients` loops posting through nginx, alternately single logs and
 * batches of 5, every log with a unique message, until stop(); each client
 * sends for its own device, or takes turns over `devicesPerClient`. Each load has
 * its own keep-alive connections (a pool shared with an earlier phase could
 * hold connections an nginx reload has closed).
 */
export function startLoad(url: string, prefix: string, clients = 6, devicesPerClient = 1): Load {
  const agent = new http.Agent({ keepAlive: true });
  const attempts: Attempt[] = [];
  let running = true;
  const loop = async (c: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const ua = `${prefix}/${c}/${i}`;
      const per = c % 2 === 0 ? 1 : 5;
      const messages = Array.from({ length: per }, (_, j) => `${prefix}-${c}-${i}-${j}`);
      const device = devicesPerClient === 1 ? `${prefix}-${c}` : `${prefix}-${c}-${i % devicesPerClient}`;
      const logs = messages.map((message) => ({ device_id: device, log_level: 'INFO', message }));
      const a: Attempt = { ua, messages, start: performance.now(), end: 0 };
      attempts.push(a);
      try {
        const r = await httpRequest(`${url}${per === 1 ? '/api/log' : '/api/logs/batch'}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': ua },
          body: JSON.stringify(per === 1 ? logs[0] : { logs }),
          agent,
        });
        a.status = r.status;
        a.body = r.body ?? r.text;
        a.requestId = r.headers['x-request-id'] as string | undefined;
      } catch (err) {
        a.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      }
      a.end = performance.now();
    }
  };
  const loops = Array.from({ length: clients }, (_, c) => loop(c));
  return {
    attempts,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return attempts;
    },
  };
}

/** Access log lines of requests whose User-Agent starts with `prefix/`, by User-Agent. */
export function linesOf(nginx: Nginx, prefix: string): Map<string, AccessEntry> {
  return new Map(nginx.accessLog().filter((e) => e.userAgent.startsWith(`${prefix}/`)).map((e) => [e.userAgent, e]));
}

/** Waits until nginx has written (it buffers up to 1 s) the access log lines of all answered `attempts`. */
export function waitLines(nginx: Nginx, prefix: string, attempts: Attempt[]): Promise<Map<string, AccessEntry>> {
  const answered = attempts.filter((a) => a.status !== undefined);
  return waitFor(`${answered.length} access log lines of ${prefix}`, () => {
    const lines = linesOf(nginx, prefix);
    return answered.every((a) => lines.has(a.ua)) ? lines : undefined;
  }, 20_000, 100);
}

/** Every acknowledged log is in `logs` exactly once; nothing is there twice. */
export async function checkPersisted(t: Test, pg: PostgresServer, prefix: string, attempts: Attempt[]): Promise<void> {
  const acked = attempts.filter((a) => a.status === 200).flatMap((a) => a.messages);
  const count = async (): Promise<Map<string, number>> => {
    const rows = await pg.query<{ message: string; n: string }>(
      'SELECT message, count(*) AS n FROM logs WHERE device_id LIKE $1 GROUP BY message', [`${prefix}-%`]);
    return new Map(rows.map((r) => [r.message, Number(r.n)]));
  };
  const rows = await waitFor(`the ${acked.length} acknowledged logs of ${prefix} in PostgreSQL`, async () => {
    const now = await count();
    return acked.every((m) => now.has(m)) ? now : undefined;
  }, 30_000, 100).catch(async (err) => {
    const now = await count();
    t.fail(`${acked.filter((m) => !now.has(m)).length} acknowledged logs missing: ${(err as Error).message}`);
    return now;
  });
  const twice = [...rows].filter(([, n]) => n > 1).map(([m]) => m);
  t.same(twice, [], 'no log is stored twice');
  t.ok(acked.length > 0 && acked.every((m) => rows.get(m) === 1), `all ${acked.length} acknowledged logs stored exactly once`);
}

export const gone = (pid: number): boolean => {
  try {
    // A zombie (killed, not reaped by its new parent) holds no sockets any more: it counts as gone.
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};

/**
 * Runs the load through `nginx` while `leaving` goes away (`depart` resolves
 * once its processes are gone), until its persister holds no pending stream
 * entry and 100 requests sent afterwards were answered; checks what clients
 * saw and that every acknowledged log is stored exactly once. Resolves with
 * the number of failed requests.
 *
 * Allowed: each connection nginx held to the leaving instance (at most one
 * per client and nginx worker) may fail the one request it carried, with a
 * 502 JSON answer; that request went to the leaving instance only (a POST
 * that reached an instance is not re-sent: it may have been queued).
 * Everything else gets a 200, and after the departure from the other
 * instances. `pendingOf` counts the stream entries a consumer holds.
 */
export async function departure(
  t: Test, nginx: Nginx, pg: PostgresServer, prefix: string, leaving: Logd, staying: Logd[], depart: () => Promise<void>,
  pendingOf: (consumer: string) => Promise<number>,
): Promise<number> {
  const clients = 6;
  const load = startLoad(nginx.url, prefix, clients);
  const serving = [leaving, ...staying].map(addr);
  await waitFor('every instance to serve the load', () => {
    const ups = [...linesOf(nginx, prefix).values()].map((e) => e.upstreams.at(-1));
    return serving.every((s) => ups.filter((u) => u === s).length >= 10);
  }, 30_000, 100);
  const departing = performance.now();
  await depart();
  const departed = performance.now();
  // Traffic goes on, as in production, until the leaving instance's persister holds no
  // pending entry any more: a killed one's are taken over by another instance's persister.
  const consumer = `${hostname()}:${leaving.port}`;
  await waitFor(`no pending entry left with ${consumer}, under load`, async () => (await pendingOf(consumer)) === 0, 30_000, 100);
  await waitFor('100 requests sent after the departure answered', () =>
    load.attempts.filter((x) => x.start > departed && x.end > 0).length >= 100, 30_000);
  const attempts = await load.stop();
  const lines = await waitLines(nginx, prefix, attempts);
  const describe = (x: Attempt): string => `${x.ua}: ${x.status ?? x.error} ${JSON.stringify(x.body)}, sent ${Math.round(x.start - departing)} ms after the departure began, upstream ${lines.get(x.ua)?.upstreams.join(', ')}`;

  const failed = attempts.filter((x) => x.status !== 200);
  t.same(failed.filter((x) => x.status !== 502 || x.body?.code !== 'LOGD_UPSTREAM_UNAVAILABLE').map(describe), [], 'every answer is a 200 or a 502 with the JSON body');
  t.same(failed.filter((x) => lines.get(x.ua)?.upstreams.join() !== addr(leaving)).map(describe), [], 'each 502 was passed to the leaving instance only');
  const bound = clients * nginx.workers().length;
  t.ok(failed.length <= bound, `${failed.length} failures <= ${bound} connections nginx can have held to the leaving instance`);
  t.same(attempts.filter((x) => x.status === 200 && x.start > departed && !staying.map(addr).includes(lines.get(x.ua)!.upstreams.at(-1)!)).map(describe), [],
    'after the departure, the other instances answer everything');
  if (failed.length) {
    const errors = nginx.errorLog().split('\n').filter((l) => l.includes(addr(leaving)) && !l.includes('temporarily disabled'));
    t.comment(`${failed.map(describe).join('\n')}\nnginx error log:\n${errors.join('\n')}`);
  }
  await checkPersisted(t, pg, prefix, attempts);
  return failed.length;
}

