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
import path from 'node:path';
import Redis from 'ioredis';
import t from 'tap';
import { waitFor } from './helpers/services';
import { ROOT, startLogd, type Logd } from './helpers/logd';
import { frontDoorServices, NGINX_BIN, httpRequest, startNginx } from './helpers/nginx';
import { addr, checkPersisted, departure, gone, linesOf, startLoad, waitLines } from './helpers/frontdoor';

const MiB = 1024 * 1024;
/**
 * Pending entries of a killed instance's persister are taken over after 1 s
 * instead of 30; consumer names are the default `<hostname>:<port>`.
 */
const ENV = { LOGD_QUEUE_CLAIM_IDLE_MS: '1000', WORKER_NAME: '', INSTANCE_NAME: '' };

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
  const r = new Redis({ host: redis.host, port: redis.port });
  t.teardown(() => r.disconnect());
  const pendingOf = async (consumer: string): Promise<number> =>
    ((await r.xpending('logs:stream', 'log_workers', '-', '+', 1, consumer)) as unknown[]).length;
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
    const failed = await departure(t, nginx, pg, 'kill', a, [b], async () => {
      const pids = [a.proc.pid!, ...a.children('http'), ...a.children('persister')];
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await waitFor('the killed processes to be gone', () => pids.every(gone), 10_000);
    }, pendingOf);
    t.comment(`${failed} requests failed with 502 while the instance died`);
  });

  await t.test('scale out with nginx -s reload, then stop an instance gracefully under load', async (t) => {
    const c = await logd();
    await nginx.reload({ upstreams: [addr(b), addr(c)] });
    const failed = await departure(t, nginx, pg, 'term', b, [c], async () => {
      t.equal(await b.stop('SIGTERM'), 0, 'the stopped instance exited 0');
    }, pendingOf);
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
