/**
 * The production front end (issue 5): Debian's nginx with conf/nginx.conf
 * rendered by scripts/render-nginx.sh, in front of logd instances that share
 * one private Redis and PostgreSQL. Everything is real and on loopback.
 *
 * Which instance answered a request is read from nginx's access log
 * (`upstream: $upstream_addr`); every request carries its own User-Agent so
 * its log line can be found.
 *
 * What a client may see when an instance goes away (SIGKILL of its primary
 * and children, or a graceful SIGTERM), see departure() and conf/nginx.conf
 * ("Failover policy"): a request nginx had already passed to it, in flight or
 * just written on a kept-alive connection it was closing, may get 502 with
 * the JSON body, because nginx never re-sends a POST that reached an instance
 * (it may have been queued); at most one such request per connection nginx
 * held to it. Every other request succeeds: a refused connection is passed to
 * the next instance. Every log that got a 200 is in PostgreSQL exactly once.
 * A graceful stop fails nothing at all: its workers keep answering kept-alive
 * connections, with Connection: close, for server.drain_ms, longer than
 * nginx keeps an idle upstream connection.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { hostname } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import Redis from 'ioredis';
import t, { type Test } from 'tap';
import { waitFor, type PostgresServer, type RedisServer } from './helpers/services';
import { ROOT, startLogd, type Logd } from './helpers/logd';
import { frontDoorServices, NGINX_BIN, httpRequest, startNginx, type AccessEntry, type Nginx } from './helpers/nginx';

const MiB = 1024 * 1024;
/**
 * Pending entries of a killed instance's persister are taken over after 1 s
 * instead of 30; consumer names are the default `<hostname>:<port>`.
 */
const ENV = { LOGD_QUEUE_CLAIM_IDLE_MS: '1000', WORKER_NAME: '', INSTANCE_NAME: '' };

const addr = (l: Logd): string => `127.0.0.1:${l.port}`;

/** One request of the tracked load. */
interface Attempt {
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

interface Load {
  /** every request, from when it is sent (end 0 until it is answered) */
  attempts: Attempt[];
  stop(): Promise<Attempt[]>;
}

/**
 * `clients` loops posting through nginx, alternately single logs and
 * batches of 5, every log with a unique message, until stop(). Each load has
 * its own keep-alive connections (a pool shared with an earlier phase could
 * hold connections an nginx reload has closed).
 */
function startLoad(url: string, prefix: string, clients = 6): Load {
  const agent = new http.Agent({ keepAlive: true });
  const attempts: Attempt[] = [];
  let running = true;
  const loop = async (c: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const ua = `${prefix}/${c}/${i}`;
      const per = c % 2 === 0 ? 1 : 5;
      const messages = Array.from({ length: per }, (_, j) => `${prefix}-${c}-${i}-${j}`);
      const logs = messages.map((message) => ({ device_id: `${prefix}-${c}`, log_level: 'INFO', message }));
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
function linesOf(nginx: Nginx, prefix: string): Map<string, AccessEntry> {
  return new Map(nginx.accessLog().filter((e) => e.userAgent.startsWith(`${prefix}/`)).map((e) => [e.userAgent, e]));
}

/** Waits until nginx has written (it buffers up to 1 s) the access log lines of all answered `attempts`. */
function waitLines(nginx: Nginx, prefix: string, attempts: Attempt[]): Promise<Map<string, AccessEntry>> {
  const answered = attempts.filter((a) => a.status !== undefined);
  return waitFor(`${answered.length} access log lines of ${prefix}`, () => {
    const lines = linesOf(nginx, prefix);
    return answered.every((a) => lines.has(a.ua)) ? lines : undefined;
  }, 20_000, 100);
}

/** Every acknowledged log is in `logs` exactly once; nothing is there twice. */
async function checkPersisted(t: Test, pg: PostgresServer, prefix: string, attempts: Attempt[]): Promise<void> {
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

const gone = (pid: number): boolean => {
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
 * Everything else gets a 200, and after the departure from the other instance.
 */
async function departure(t: Test, nginx: Nginx, redis: RedisServer, pg: PostgresServer, prefix: string, leaving: Logd, staying: Logd, depart: () => Promise<void>): Promise<number> {
  const clients = 6;
  const load = startLoad(nginx.url, prefix, clients);
  await waitFor('both instances to serve the load', () => {
    const ups = [...linesOf(nginx, prefix).values()].map((e) => e.upstreams.at(-1));
    return ups.filter((u) => u === addr(leaving)).length >= 20 && ups.filter((u) => u === addr(staying)).length >= 20;
  }, 30_000, 100);
  const departing = performance.now();
  await depart();
  const departed = performance.now();
  // Traffic goes on, as in production, until the leaving instance's persister holds no
  // pending entry any more: a killed one's are taken over by the other instance's persister.
  const consumer = `${hostname()}:${leaving.port}`;
  const r = new Redis({ host: redis.host, port: redis.port, lazyConnect: true });
  try {
    await r.connect();
    await waitFor(`no pending entry left with ${consumer}, under load`, async () =>
      ((await r.xpending('logs:stream', 'log_workers', '-', '+', 1, consumer)) as unknown[]).length === 0, 30_000, 100);
  } finally {
    r.disconnect();
  }
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
  t.same(attempts.filter((x) => x.status === 200 && x.start > departed && lines.get(x.ua)!.upstreams.at(-1) !== addr(staying)).map(describe), [],
    'after the departure, the other instance answers everything');
  if (failed.length) {
    const errors = nginx.errorLog().split('\n').filter((l) => l.includes(addr(leaving)) && !l.includes('temporarily disabled'));
    t.comment(`${failed.map(describe).join('\n')}\nnginx error log:\n${errors.join('\n')}`);
  }
  await checkPersisted(t, pg, prefix, attempts);
  return failed.length;
}

t.test('nginx in front of two logd instances', async (t) => {
  const { redis, pg, instances, nginxes } = await frontDoorServices(t);
  const logd = async (): Promise<Logd> => {
    // The shipped drain (6 s > nginx's 5 s upstream keepalive_timeout), which the graceful stop relies on.
    const l = await startLogd({ redis, pg, workers: 1, env: { ...ENV, LOGD_SERVER_DRAIN_MS: '6000' } });
    instances.push(l);
    return l;
  };
  const a = await logd();
  const b = await logd();
  const nginx = await startNginx({ upstreams: [addr(a), addr(b)] });
  nginxes.push(nginx);

  await t.test('the shipped configuration and the rendered one pass nginx -t', async (t) => {
    for (const conf of [path.join(ROOT, 'conf', 'nginx.conf'), nginx.conf]) {
      // execFileSync throws (failing the test with nginx's message) unless nginx -t exits 0.
      const out = execFileSync(NGINX_BIN, ['-t', '-p', `${nginx.prefix}/`, '-c', conf], { stdio: 'pipe', encoding: 'utf8' });
      t.equal(out, '', `nginx -t -c ${conf}`);
    }
  });

  await t.test('requests are spread over both instances, every log stored once', async (t) => {
    const load = startLoad(nginx.url, 'spread', 4);
    await waitFor('200 requests', () => load.attempts.length >= 200, 30_000);
    const attempts = await load.stop();
    t.same(attempts.filter((x) => x.status !== 200).map((x) => x.status ?? x.error), [], 'every request got a 200');
    const lines = await waitLines(nginx, 'spread', attempts);
    t.same(attempts.filter((x) => lines.get(x.ua)?.upstreams.length !== 1).map((x) => x.ua), [], 'each request went to one instance');
    const perInstance = new Map<string, number>();
    for (const x of attempts) {
      const up = lines.get(x.ua)!.upstreams[0];
      perInstance.set(up, (perInstance.get(up) ?? 0) + 1);
    }
    t.same([...perInstance.keys()].sort(), [addr(a), addr(b)].sort(), `both instances answered: ${JSON.stringify([...perInstance])}`);
    t.same(attempts.filter((x) => !x.requestId || x.requestId !== lines.get(x.ua)!.requestId).map((x) => x.ua), [],
      'logd answers with the X-Request-ID nginx made, which the access log shows');
    const own = await httpRequest(`${nginx.url}/api/log`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'client-chosen-id-1' },
      body: JSON.stringify({ device_id: 'spread-rid', log_level: 'INFO', message: 'm' }),
    });
    t.equal(own.headers['x-request-id'], 'client-chosen-id-1', "a client's X-Request-ID is kept");
    t.equal(own.headers.uwebsockets, undefined, 'no uWebSockets version banner');
    await checkPersisted(t, pg, 'spread', attempts);
  });

  await t.test('a 2 MiB batch passes (nginx spools it to PREFIX/client_body_temp as nobody)', async (t) => {
    const logs = Array.from({ length: 1000 }, (_, i) => ({ device_id: 'big-batch', log_level: 'INFO', message: `${i} ${'y'.repeat(2100)}` }));
    const body = JSON.stringify({ logs });
    t.ok(body.length > 2 * MiB, `${body.length} bytes, over client_body_buffer_size (1m)`);
    const r = await httpRequest(`${nginx.url}/api/logs/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    t.equal(r.status, 200, r.text);
    t.equal(r.body?.count, 1000);
    const rows = await waitFor('the 1000 rows', async () => {
      const n = Number((await pg.query<{ n: string }>("SELECT count(*) AS n FROM logs WHERE device_id = 'big-batch'"))[0].n);
      return n >= 1000 ? n : undefined;
    }, 20_000, 100);
    t.equal(rows, 1000);
  });

  await t.test('the shippers\' routes and probes pass through nginx', async (t) => {
    const ns = `${BigInt(Date.now()) * 1_000_000n}`;
    const post = (p: string, type: string, body: string) => httpRequest(`${nginx.url}${p}`, { method: 'POST', headers: { 'content-type': type }, body });
    const otlp = await post('/v1/logs', 'application/json', JSON.stringify({ resourceLogs: [{
      resource: { attributes: [{ key: 'host.name', value: { stringValue: 'via-nginx-otlp' } }] },
      scopeLogs: [{ logRecords: [{ timeUnixNano: ns, severityNumber: 9, body: { stringValue: 'otlp through nginx' } }] }],
    }] }));
    t.same([otlp.status, otlp.body], [200, {}], 'OTLP/HTTP JSON: 200 {}');
    const loki = await post('/loki/api/v1/push', 'application/json', JSON.stringify({ streams: [{ stream: { host: 'via-nginx-loki' }, values: [[ns, 'loki through nginx']] }] }));
    t.equal(loki.status, 204, `Loki push: 204 ${loki.text}`);
    const doc = JSON.stringify({ message: 'bulk through nginx', host: { name: 'via-nginx-es' } });
    for (const [p, action] of [['/_bulk', '{"create":{"_index":"logs-nginx"}}'], ['/logs-nginx/_bulk', '{"create":{}}']]) {
      const bulk = await post(p, 'application/x-ndjson', `${action}\n${doc}\n`);
      t.same([bulk.status, bulk.body?.errors, bulk.body?.items?.[0]?.create?.status], [200, false, 201], `${p}: 200, the item 201`);
    }
    const root = await httpRequest(`${nginx.url}/`);
    t.same([root.status, root.headers['x-elastic-product'], typeof root.body?.version?.number], [200, 'Elasticsearch', 'string'], 'GET /: the Elasticsearch probe');
    for (const p of ['/ready', '/_cluster/health']) t.equal((await httpRequest(`${nginx.url}${p}`)).status, 200, `GET ${p}`);
    const rows = await waitFor('the 4 rows', async () => {
      const got = await pg.query<{ device_id: string; n: string }>("SELECT device_id, count(*) AS n FROM logs WHERE device_id LIKE 'via-nginx-%' GROUP BY 1 ORDER BY 1");
      return got.reduce((a, r) => a + Number(r.n), 0) >= 4 ? got.map((r) => [r.device_id, Number(r.n)]) : undefined;
    }, 20_000, 100);
    t.same(rows, [['via-nginx-es', 2], ['via-nginx-loki', 1], ['via-nginx-otlp', 1]]);
  });

  await t.test('bodies over the limits: 413 JSON from nginx, logd never sees them', async (t) => {
    const big = Buffer.alloc(51 * MiB, 'x');
    const cases: { name: string; path: string; body: Buffer; headers: Record<string, string> }[] = [
      { name: '51 MiB batch with Content-Length', path: '/api/logs/batch', body: big, headers: {} },
      { name: '51 MiB batch, chunked (nginx counts while reading)', path: '/api/logs/batch', body: big, headers: { 'transfer-encoding': 'chunked' } },
      { name: 'single log over 1 MiB', path: '/api/log', body: Buffer.alloc(MiB + 1, 'x'), headers: {} },
    ];
    for (const [i, c] of cases.entries()) {
      const r = await httpRequest(`${nginx.url}${c.path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': `too-large/${i}`, ...c.headers },
        body: c.body,
      });
      t.equal(r.status, 413, `${c.name}: 413`);
      t.equal(r.headers['content-type'], 'application/json', `${c.name}: JSON`);
      t.equal(r.body?.code, 'LOGD_BODY_TOO_LARGE', `${c.name}: code`);
    }
    const lines = await waitFor('the access log lines of the 413s', () => {
      const l = linesOf(nginx, 'too-large');
      return l.size === cases.length ? l : undefined;
    }, 20_000, 100);
    for (const e of lines.values()) t.same(e.upstreams, [], `${e.userAgent}: not proxied`);
  });

  await t.test('/nginx_status: 200 from 127.0.0.1, 403 JSON from another address; nginx\'s own errors are JSON', async (t) => {
    const local = await httpRequest(`${nginx.url}/nginx_status`, { localAddress: '127.0.0.1' });
    t.equal(local.status, 200);
    t.match(local.text, /^Active connections: \d+/);
    // Linux routes all of 127.0.0.0/8 to lo: 127.0.0.2 is "not 127.0.0.1" for nginx's allow/deny.
    const other = await httpRequest(`${nginx.url}/nginx_status`, { localAddress: '127.0.0.2' });
    t.equal(other.status, 403);
    t.equal(other.headers['content-type'], 'application/json');
    t.equal(other.body?.code, 'LOGD_FORBIDDEN');
    t.match(nginx.errorLog(), /access forbidden by rule, client: 127\.0\.0\.2/);
    const post = await httpRequest(`${nginx.url}/nginx_status`, { method: 'POST' });
    t.equal(post.status, 405);
    t.equal(post.body?.code, 'LOGD_METHOD_NOT_ALLOWED', '405 JSON');
    const unknown = await httpRequest(`${nginx.url}/no/such/path`);
    t.equal(unknown.status, 404);
    t.equal(unknown.body?.code, 'LOGD_NOT_FOUND', '404 JSON');
  });

  await t.test('over the rate limit: 429 JSON with Retry-After, never proxied', async (t) => {
    // A fresh nginx (a zone's state survives reload): 1 request/minute, burst 3 with nodelay,
    // so requests 1..4 pass at once and then one more per full minute elapsed.
    const limited = await startNginx({ upstreams: [addr(a), addr(b)], rate: '1r/m', burst: 3, queryBurst: 3 });
    nginxes.push(limited);
    const t0 = performance.now();
    const replies = [];
    for (let i = 0; i < 12; i++) {
      replies.push(await httpRequest(`${limited.url}/api/log`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': `rate/${i}` },
        body: JSON.stringify({ device_id: 'rate-1', log_level: 'INFO', message: `rate-${i}` }),
      }));
    }
    const minutes = Math.floor((performance.now() - t0) / 60_000);
    const ok = replies.filter((r) => r.status === 200);
    const limitedReplies = replies.filter((r) => r.status === 429);
    t.equal(ok.length + limitedReplies.length, replies.length, 'every answer is 200 or 429');
    t.ok(ok.length >= 4 && ok.length <= 4 + minutes, `the burst passes and no more (${ok.length} passed)`);
    t.ok(limitedReplies.length > 0, `${limitedReplies.length} refused`);
    const shapes = new Set(limitedReplies.map((r) => `${r.headers['content-type']} ${r.body?.code} retry-after=${r.headers['retry-after']}`));
    t.same([...shapes], ['application/json LOGD_RATE_LIMITED retry-after=1'], 'every 429 is JSON with its code and Retry-After');
    const lines = await waitFor('the access log lines of the rate test', () => {
      const l = linesOf(limited, 'rate');
      return l.size === replies.length ? l : undefined;
    }, 20_000, 100);
    t.ok([...lines.values()].filter((e) => e.status === 429).every((e) => e.upstreams.length === 0), '429s were not proxied');
    const rows = await waitFor('the accepted rate logs', async () => {
      const r = await pg.query("SELECT message FROM logs WHERE device_id = 'rate-1'");
      return r.length >= ok.length ? r : undefined;
    }, 20_000, 100);
    t.equal(rows.length, ok.length, 'only the accepted logs are stored');
  });

  await t.test('an instance is killed under load: traffic continues on the other one', async (t) => {
    const failed = await departure(t, nginx, redis, pg, 'kill', a, b, async () => {
      const pids = [a.proc.pid!, ...a.children('http'), ...a.children('persister')];
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await waitFor('the killed processes to be gone', () => pids.every(gone), 10_000);
    });
    t.comment(`${failed} requests failed with 502 while the instance died`);
  });

  await t.test('scale out with nginx -s reload, then stop an instance gracefully under load', async (t) => {
    const c = await logd();
    await nginx.reload({ upstreams: [addr(b), addr(c)] });
    const failed = await departure(t, nginx, redis, pg, 'term', b, c, async () => {
      t.equal(await b.stop('SIGTERM'), 0, 'the stopped instance exited 0');
    });
    t.equal(failed, 0, 'a graceful stop fails no request');
  });

  await t.test('no instance left: 502 with a JSON body and Retry-After', async (t) => {
    await Promise.all(instances.map((l) => l.stop('SIGTERM')));
    for (const [path, body] of [['/api/log', { device_id: 'none', log_level: 'INFO', message: 'm' }], ['/api/logs/batch', { logs: [{ device_id: 'none', log_level: 'INFO', message: 'm' }] }]] as const) {
      const r = await httpRequest(`${nginx.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      t.equal(r.status, 502, `${path}: 502`);
      t.equal(r.headers['content-type'], 'application/json', `${path}: JSON`);
      t.equal(r.headers['retry-after'], '1', `${path}: Retry-After`);
      t.same(r.body, { detail: 'Service temporarily unavailable', code: 'LOGD_UPSTREAM_UNAVAILABLE', error: 'Service temporarily unavailable' }, `${path}: body`);
    }
    const health = await httpRequest(`${nginx.url}/health`);
    t.equal(health.status, 502);
    t.equal(health.body?.code, 'LOGD_UPSTREAM_UNAVAILABLE');
  });
});
