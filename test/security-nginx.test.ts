/**
 * Issue 10's findings replayed against logd behind the real nginx
 * (conf/nginx.conf rendered by scripts/render-nginx.sh): no client's requests
 * take an instance out of rotation, every malformed request gets a JSON
 * answer at once, HEAD and pipelined requests are answered in order, a
 * client's X-Forwarded-For is never trusted (and a trusted proxy's is), the
 * pages are rate-limited, and the TLS front door. Raw sockets where node:http
 * cannot send the request. logd alone: security.test.ts.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import t from 'tap';
import { ERRORS } from '../src/errors';
import { connect, parseResponse, rawRequest, type RawResponse } from './helpers/fuzz';
import { ROOT, startLogd, type Logd } from './helpers/logd';
import { frontDoorServices, httpRequest, startNginx, type Nginx } from './helpers/nginx';
import { waitFor } from './helpers/services';

const addr = (l: Logd): string => `127.0.0.1:${l.port}`;
const log = (device: string, message = 'm'): string => JSON.stringify({ device_id: device, log_level: 'INFO', message });
/** nginx's $request_id (logd's own ids look different). */
const NGINX_ID = /^[0-9a-f]{32}$/;
/** What nginx logs when it counts a failure against an instance, or has none left. */
const INSTANCE_FAILURE = /upstream timed out|upstream prematurely closed|upstream sent|while connecting to upstream|temporarily disabled|no live upstreams/;

const failures = (nginx: Nginx): string[] => nginx.errorLog().split('\n').filter((l) => INSTANCE_FAILURE.test(l));

/** An answer to a HEAD request: its header block only. */
function parseHead(buf: Buffer): { reply: RawResponse; size: number } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [first, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  return { reply: { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(first)?.[1]), headers, body: Buffer.alloc(0) }, size: end + 4 };
}

/** One connection, read answer by answer. */
class Conn {
  private buf = Buffer.alloc(0);

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); });
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<Conn> {
    return new Conn(await connect(port));
  }

  /** The next complete answer (`head`: to a HEAD request), or undefined when none arrives within `ms`. */
  async next(head = false, ms = 1000): Promise<RawResponse | undefined> {
    return waitFor('an answer', () => {
      if (head) {
        const h = parseHead(this.buf);
        if (h) this.buf = this.buf.subarray(h.size);
        return h?.reply;
      }
      const r = parseResponse(this.buf);
      if (r) this.buf = this.buf.subarray(this.buf.indexOf('\r\n\r\n') + 4 + r.body.length);
      return r;
    }, ms, 5).catch(() => undefined);
  }

  /** Bytes received and not yet taken by next(). */
  rest(): string {
    return this.buf.toString('latin1');
  }
}

const json = (r: RawResponse | undefined): any => {
  try {
    return JSON.parse(r?.body.toString() ?? '');
  } catch {
    return undefined;
  }
};

t.test("nginx's own error answers use the catalogue's codes and statuses", async (t) => {
  const conf = fs.readFileSync(path.join(ROOT, 'conf', 'nginx.conf'), 'utf8');
  const block = /map \$status \$logd_error_body \{\n([\s\S]*?)\n\s*\}\n/.exec(conf)?.[1] ?? '';
  const entries = [...block.matchAll(/^\s*(\S+)\s+'(\{.*\})\\n';$/gm)].map(([, key, body]) => ({ key, code: JSON.parse(body).code as string }));
  // "default" is 500 (nginx failed); ~^50[234]$ is the catalogue's 502 (no instance answered).
  const status = (key: string): number => (key === 'default' ? 500 : key.startsWith('~') ? 502 : Number(key));
  t.ok(entries.length >= 10, `${entries.length} answers parsed`);
  t.same(entries.filter((e) => (ERRORS as Record<string, { status: number }>)[e.code]?.status !== status(e.key)).map((e) => `${e.key}: ${e.code}`), []);
});

t.test('logd behind nginx', async (t) => {
  const { redis, pg, instances, nginxes } = await frontDoorServices(t);
  instances.push(...await Promise.all([0, 1].map(() => startLogd({ redis, pg, workers: 1 }))));
  const [a, b] = instances;
  const nginx = await startNginx({ upstreams: [addr(a), addr(b)] });
  nginxes.push(nginx);
  const rows = async (device: string): Promise<number> =>
    Number((await pg.query<{ n: string }>('SELECT count(*) AS n FROM logs WHERE device_id = $1', [device]))[0].n);

  await t.test('the 8-request outage: long request ids and 60 headers take no instance out', async (t) => {
    // Before: 8 requests with a 5,000-character X-Request-ID ("upstream sent too big header") or with
    // 60 headers (logd never answered, nginx timed out) got every instance marked down for fail_timeout.
    const agent = new http.Agent({ keepAlive: true });
    const steady: { ua: string; status?: number; error?: string }[] = [];
    let running = true;
    const loop = (async () => {
      for (let i = 0; running; i++) {
        const s: (typeof steady)[number] = { ua: `steady/${i}` };
        steady.push(s);
        try {
          s.status = (await httpRequest(`${nginx.url}/api/log`, {
            method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': s.ua }, body: log('steady'), localAddress: '127.0.0.2', agent,
          })).status;
        } catch (err) {
          s.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        }
      }
    })();
    await waitFor('20 answers to the steady client', () => steady.filter((s) => s.status || s.error).length >= 20, 30_000);

    const longId = 'a'.repeat(5000);
    const sixty = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`x-pad-${i}`, `v${i}`]));
    const abuse = (extra: Record<string, string>) => httpRequest(`${nginx.url}/api/log`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...extra }, body: log('abuse'), localAddress: '127.0.0.3',
    });
    const abused = await Promise.all([
      ...Array.from({ length: 8 }, () => abuse({ 'x-request-id': longId })),
      ...Array.from({ length: 8 }, () => abuse(sixty)),
    ]);
    const after = steady.length;
    await waitFor('20 more answers to the steady client', () => steady.slice(after).filter((s) => s.status || s.error).length >= 20, 30_000);
    running = false;
    await loop;
    agent.destroy();

    t.same(abused.map((r) => r.status), Array(16).fill(200), 'every abusive request was answered 200');
    t.same(abused.slice(0, 8).map((r) => r.headers['x-request-id']).filter((id) => !NGINX_ID.test(String(id))), [],
      'the long ids were replaced by ids nginx made');
    t.same(steady.filter((s) => s.status !== 200).map((s) => `${s.ua}: ${s.status ?? s.error}`), [], 'the steady client got 200 throughout');
    const lines = await waitFor('the access log lines of the steady client', () => {
      const l = nginx.accessLog().filter((e) => e.userAgent.startsWith('steady/'));
      return l.length >= steady.filter((s) => s.status).length ? l : undefined;
    }, 20_000, 100);
    const later = new Set(lines.filter((e) => Number(e.userAgent.split('/')[1]) >= after).map((e) => e.upstreams.at(-1)));
    t.same([...later].sort(), [addr(a), addr(b)].sort(), 'after the abuse, both instances still take requests');
    t.same(failures(nginx), [], 'nginx counted no failure against an instance');
    await waitFor('the 16 abusive logs', async () => (await rows('abuse')) >= 16, 20_000, 100);
    t.equal(await rows('abuse'), 16, 'each abusive request stored its log once');
  });

  await t.test('request ids: a client id is passed on only when it is a short token', async (t) => {
    const ids = ['req-1.a:B_9', 'x'.repeat(128), 'x'.repeat(129), 'has space', '<script>', 'a'.repeat(5000)];
    const echoed = await Promise.all(ids.map(async (id) => (await httpRequest(`${nginx.url}/api/stats`, { headers: { 'x-request-id': id } })).headers['x-request-id']));
    t.same(echoed.slice(0, 2), ids.slice(0, 2), 'safe ids are kept');
    t.same(echoed.slice(2).filter((id) => !NGINX_ID.test(String(id))), [], 'the others are replaced by ids nginx made');
  });

  await t.test('every malformed request gets a JSON answer within 1 s', async (t) => {
    const post = (headers: string, body = '{}') => `POST /api/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${headers}\r\n${body}`;
    const pad = (n: number, size: number) => Array.from({ length: n }, (_, i) => `X-Pad-${i}: ${'v'.repeat(size)}\r\n`).join('');
    const cases: { name: string; data: string; status: number; code?: string }[] = [
      { name: 'non-numeric Content-Length', data: post('Content-Length: abc\r\n'), status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'Content-Length and Transfer-Encoding', data: post('Content-Length: 2\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'), status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'two different Content-Lengths', data: post('Content-Length: 2\r\nContent-Length: 3\r\n'), status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'unknown Transfer-Encoding', data: post('Transfer-Encoding: gzip\r\n', ''), status: 501, code: 'LOGD_NOT_IMPLEMENTED' },
      { name: 'HTTP/2.0 request line', data: 'GET /health HTTP/2.0\r\nHost: x\r\n\r\n', status: 505, code: 'LOGD_HTTP_VERSION_NOT_SUPPORTED' },
      { name: 'HTTP/2 preface on the HTTP/1 port', data: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'garbage request line', data: '\x16\x03\x01 garbage\r\n\r\n', status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'HTTP/1.1 without Host', data: 'GET /api/stats HTTP/1.1\r\n\r\n', status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'two Authorization headers', data: 'GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n', status: 400, code: 'LOGD_BAD_REQUEST' },
      { name: 'a 10 KB header line', data: `GET /api/stats HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_240)}\r\n\r\n`, status: 431, code: 'LOGD_HEADERS_TOO_LARGE' },
      { name: '100 headers, 40 KB', data: `GET /api/stats HTTP/1.1\r\nHost: x\r\n${pad(100, 400)}\r\n`, status: 431, code: 'LOGD_HEADERS_TOO_LARGE' },
      { name: 'a 10 KB URI', data: `GET /api/logs?q=${'a'.repeat(10_240)} HTTP/1.1\r\nHost: x\r\n\r\n`, status: 414, code: 'LOGD_URI_TOO_LONG' },
      { name: 'TRACE', data: 'TRACE /api/stats HTTP/1.1\r\nHost: x\r\n\r\n', status: 405, code: 'LOGD_METHOD_NOT_ALLOWED' },
      // Valid HTTP that uWebSockets.js alone leaves unanswered: nginx passes logd what it can answer.
      { name: '100 small headers (logd answers)', data: `GET /api/stats HTTP/1.1\r\nHost: x\r\n${pad(100, 1)}\r\n`, status: 200 },
      { name: 'HTTP/1.0 (logd answers)', data: 'GET /api/stats HTTP/1.0\r\n\r\n', status: 200 },
    ];
    const answers = await Promise.all(cases.map(async (c) => {
      const t0 = performance.now();
      const r = await rawRequest(nginx.port, c.data, 1000);
      return { r, ms: performance.now() - t0 };
    }));
    for (const [i, c] of cases.entries()) {
      const { r, ms } = answers[i];
      t.equal(r.response?.status, c.status, `${c.name}: ${c.status} (got ${r.response?.status ?? r.end} after ${Math.round(ms)} ms)`);
      t.equal(r.response?.headers['content-type'], 'application/json', `${c.name}: JSON`);
      t.equal(json(r.response)?.code, c.code, `${c.name}: code ${c.code ?? 'none'}`);
    }
  });

  await t.test('HEAD /health: no body, and the next requests on the connection are answered', async (t) => {
    // Two POSTs after it (nginx never re-sends one), so that one reuses the upstream connection the HEAD went over,
    // whichever instance least_conn picks: an answer to HEAD that closed it silently made that POST a 502.
    const c = await Conn.open(nginx.port);
    c.socket.write('HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n');
    const head = await c.next(true);
    const post = (i: number) => {
      const body = log('after-head', `h${i}`);
      return `POST /api/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    c.socket.write(post(1));
    const first = await c.next(false, 5000);
    c.socket.write(post(2));
    const second = await c.next(false, 5000);
    c.socket.destroy();
    t.equal(head?.status, 200, 'HEAD answered 200');
    t.same([first?.status, second?.status], [200, 200], `the POSTs after it answered 200, with nothing between (left over: ${JSON.stringify(c.rest().slice(0, 80))})`);
    t.same(failures(nginx), [], 'nginx counted no failure against an instance');
  });

  await t.test('3 pipelined POST /api/log: 3 answers in order, 3 rows', async (t) => {
    const req = (i: number) => {
      const body = log('pipelined', `p${i}`);
      return `POST /api/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: pipelined-${i}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    const c = await Conn.open(nginx.port);
    c.socket.write(req(1) + req(2) + req(3));
    const replies = [await c.next(false, 5000), await c.next(false, 5000), await c.next(false, 5000)];
    c.socket.destroy();
    t.same(replies.map((r) => r?.status), [200, 200, 200], 'three 200s');
    t.same(replies.map((r) => r?.headers['x-request-id']), ['pipelined-1', 'pipelined-2', 'pipelined-3'], 'in the order sent');
    await waitFor('3 pipelined rows', async () => (await rows('pipelined')) >= 3, 20_000, 100);
    t.equal(await rows('pipelined'), 3, 'exactly 3 rows');
  });

  await t.test('/health and the docs pages are rate-limited (429 JSON with Retry-After)', async (t) => {
    const paths = ['/health', '/docs', '/redoc', '/openapi.json'];
    // One zone, 10 r/s with a burst of 20, per client address (its own here): 120 at once get at most ~21 through.
    const replies = await Promise.all(paths.flatMap((p) => Array.from({ length: 30 }, () => httpRequest(`${nginx.url}${p}`, { localAddress: '127.0.0.5' }).then((r) => ({ p, r })))));
    for (const p of paths) {
      const refused = replies.filter((x) => x.p === p && x.r.status === 429).length;
      t.ok(refused > 0, `${p}: ${refused} of 30 refused`);
    }
    t.same(replies.filter((x) => x.r.status !== 200 && !(x.r.status === 429 && x.r.body?.code === 'LOGD_RATE_LIMITED' && x.r.headers['retry-after'] === '1'))
      .map((x) => `${x.p}: ${x.r.status} ${x.r.text}`), [], 'every other answer is 200, every refusal the JSON 429 with Retry-After');
  });

  await t.test('nothing above counted against an instance', async (t) => {
    t.same(failures(nginx), []);
  });

  await t.test("X-Forwarded-For: a client's is ignored, a trusted proxy's names the client", async (t) => {
    // What nginx sends upstream, seen by a server that records it (logd does not echo request headers).
    const seen: http.IncomingHttpHeaders[] = [];
    const recorder = http.createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => recorder.close(() => resolve())));
    const upstream = `127.0.0.1:${(recorder.address() as AddressInfo).port}`;
    // 1 request a minute with a burst of 1 (nodelay): two pass at once, the third is refused.
    const direct = await startNginx({ upstreams: [upstream], rate: '1r/m', burst: 1 });
    const behindLb = await startNginx({ upstreams: [upstream], rate: '1r/m', burst: 1, realIpFrom: ['127.0.0.1'] });
    nginxes.push(direct, behindLb);
    const send = (n: Nginx, xff: string, localAddress = '127.0.0.1', extra: Record<string, string> = {}) => httpRequest(`${n.url}/api/log`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': xff, ...extra }, body: '{}', localAddress,
    });

    const first = await send(direct, '203.0.113.1', '127.0.0.1', { 'x-real-ip': '203.0.113.1', cookie: 'a=b', 'x-custom': '1', authorization: 'Bearer t', 'x-request-id': 'r-1' });
    t.equal(first.status, 200);
    t.same(Object.keys(seen[0]).sort(), ['authorization', 'content-length', 'content-type', 'host', 'x-forwarded-for', 'x-forwarded-proto', 'x-real-ip', 'x-request-id'],
      'only the headers logd reads are passed, with Content-Length');
    t.same([seen[0]['x-forwarded-for'], seen[0]['x-real-ip']], ['127.0.0.1', '127.0.0.1'], "not the client's X-Forwarded-For or X-Real-IP: its address");
    const others = [await send(direct, '203.0.113.2'), await send(direct, '203.0.113.3')];
    t.same(others.map((r) => r.status), [200, 429], 'a new X-Forwarded-For does not get a new rate-limit budget');

    const viaLb = [await send(behindLb, '198.51.100.1'), await send(behindLb, '198.51.100.1'), await send(behindLb, '198.51.100.1'), await send(behindLb, '198.51.100.2')];
    t.same(viaLb.map((r) => r.status), [200, 200, 429, 200], "behind a trusted proxy the limit counts per forwarded address");
    t.same([seen.at(-1)!['x-forwarded-for'], seen.at(-1)!['x-real-ip']], ['198.51.100.2', '198.51.100.2'], 'and logd gets that address');
    t.equal((await send(behindLb, '198.51.100.3', '127.0.0.2')).status, 200);
    t.equal(seen.at(-1)!['x-forwarded-for'], '127.0.0.2', 'from an untrusted address the header is ignored');
  });

  await t.test('TLS: https on the TLS port, a redirect from the plain one, HSTS, no TLS 1.1', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logd-tls-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
    const secure = await startNginx({ upstreams: [addr(a), addr(b)], tls: { cert, key } });
    nginxes.push(secure);
    const ca = fs.readFileSync(cert);
    const tlsPort = Number(new URL(secure.tlsUrl!).port);

    const ok = await httpRequest(`${secure.tlsUrl}/api/log`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: log('tls'), tls: { ca } });
    t.equal(ok.status, 200, 'a log sent over TLS is accepted (the certificate verifies against itself)');
    t.equal(ok.headers['strict-transport-security'], 'max-age=63072000', 'HSTS');
    const plain = await httpRequest(`${secure.url}/api/stats?since=x`);
    t.equal(plain.status, 308, 'plain HTTP is redirected');
    t.equal(plain.headers.location, `${secure.tlsUrl}/api/stats?since=x`, 'to the same URL on the TLS port');
    t.equal(plain.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP');
    const wrongPort = await rawRequest(tlsPort, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', 1000);
    t.equal(json(wrongPort.response)?.code, 'LOGD_BAD_REQUEST', 'plain HTTP to the TLS port: 400 JSON');

    const handshake = (opts: tls.ConnectionOptions) => new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: tlsPort, ca, ...opts }, () => { resolve(s.getProtocol() ?? ''); s.end(); });
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    t.equal(await handshake({ maxVersion: 'TLSv1.2' }), 'TLSv1.2', 'TLS 1.2 is served');
    t.equal(await handshake({}), 'TLSv1.3', 'TLS 1.3 is served');
    // OpenSSL 3 offers TLS 1.1 only at security level 0; the server then refuses it with a protocol_version alert.
    const old = await handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    if (old === 'ERR_SSL_NO_PROTOCOLS_AVAILABLE') t.pass('TLS 1.1 is refused', { skip: 'this OpenSSL cannot offer TLS 1.1 at all' });
    else t.equal(old, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'TLS 1.1 is refused by the server');

    const h2 = http2.connect(secure.tlsUrl!, { ca });
    const status = await new Promise<number>((resolve, reject) => {
      h2.on('error', reject);
      h2.request({ ':path': '/api/stats' }).on('response', (h) => resolve(Number(h[':status']))).on('error', reject).resume();
    }).finally(() => h2.close());
    t.equal(status, 200, 'HTTP/2 over TLS reaches logd');
  });
});
