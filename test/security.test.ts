/**
 * Issue 10's findings replayed against `logd serve` alone: request ids that
 * cannot hurt a proxy, answers for what uWS lets logd answer (oversized
 * headers, HEAD, duplicate Authorization), pipelined POSTs that store nothing
 * they do not answer, bounded echoes, open mode only when configured, and
 * memory bounded under concurrent maximum-size batches. Behind nginx:
 * security-nginx.test.ts; reads: security-reads.test.ts; the embedded data
 * directory: security-embedded.test.ts; tokens: auth.test.ts.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { loadConfig } from '../src/config';
import { collect, connect, parseResponse, rawRequest, type RawResponse } from './helpers/fuzz';
import { waitFor } from './helpers/services';
import { LOGD_BIN, postAlone, postJson, request, serviceEnv, startStack, waitRows } from './helpers/logd';

/** Every complete HTTP/1.1 answer in `buf`, in order. */
function responses(buf: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  for (let rest = buf; ;) {
    const r = parseResponse(rest);
    if (!r) return out;
    out.push(r);
    rest = rest.subarray(rest.indexOf('\r\n\r\n') + 4 + r.body.length);
  }
}

const log = (device: string, message = 'm') => ({ device_id: device, log_level: 'INFO', message });

t.test('logd serve alone', async (t) => {
  // Redis takes seconds to append a 50 MiB frame on a loaded machine: no command timeout gets in the way of the memory test.
  const { pg, redis, logd } = await startStack(t, { workers: 2, env: { LOGD_REDIS_COMMAND_TIMEOUT_MS: '60000' } });

  await t.test('request ids: a client id is echoed only when short and plain', async (t) => {
    const idOf = async (id: string) => (await request(`${logd.url}/health`, { headers: { 'x-request-id': id } })).headers.get('x-request-id') ?? '';
    t.equal(await idOf('req-1.a:B_9'), 'req-1.a:B_9', 'a safe id is kept');
    t.equal(await idOf('x'.repeat(128)), 'x'.repeat(128), '128 characters are kept');
    const replaced = await Promise.all(['x'.repeat(129), 'a'.repeat(5000), 'has space', 'semi;colon', '<script>'].map(idOf));
    t.same(replaced.filter((id) => !/^[A-Za-z0-9._:-]{1,128}$/.test(id)), [], 'every answer carries a safe id');
    t.same(replaced.filter((id) => ['x'.repeat(129), 'a'.repeat(5000), 'has space', 'semi;colon', '<script>'].includes(id)), [], 'none of the unsafe ones');
  });

  await t.test('every answer says nosniff', async (t) => {
    const answers = await Promise.all([
      request(`${logd.url}/health`),
      request(`${logd.url}/nope`),
      postJson(`${logd.url}/api/log`, log('nosniff')),
      postJson(`${logd.url}/api/log`, '{'),
      request(`${logd.url}/openapi.json`),
    ]);
    t.same(answers.map((a) => a.headers.get('x-content-type-options')), ['nosniff', 'nosniff', 'nosniff', 'nosniff', 'nosniff']);
  });

  await t.test('headers over server.max_header_bytes get 431 at once', async (t) => {
    const started = Date.now();
    const r = await rawRequest(logd.port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 1000);
    t.equal(r.response?.status, 431, `answered ${r.response?.status} after ${Date.now() - started} ms (${r.end})`);
    t.match(r.response?.body.toString(), /"code":"LOGD_HEADERS_TOO_LARGE"/);
  });

  await t.test('HEAD answers headers only, and the connection goes on', async (t) => {
    const get = await request(`${logd.url}/openapi.json`);
    // One after the other: uWS cannot pipeline behind an answer that awaits (see the pipelined test below).
    const s = await connect(logd.port);
    const got = collect(s, 2000, false);
    s.write('HEAD /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor('the HEAD answer', () => s.bytesRead > 0, 2000);
    s.write('GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const raw = (await got).received;
    const head = raw.toString('latin1');
    const first = head.slice(0, head.indexOf('\r\n\r\n'));
    t.match(first, /^HTTP\/1\.1 200 OK/, 'HEAD /openapi.json: 200');
    t.match(first, new RegExp(`content-length: ${Buffer.byteLength(get.text)}`, 'i'), 'with the length GET would send');
    const after = head.slice(head.indexOf('\r\n\r\n') + 4);
    t.match(after, /^HTTP\/1\.1 200 OK/, 'no body: the next bytes are the GET\'s answer');
  });

  await t.test('a 404 does not reflect a huge path; a 422 lists a bounded number of problems', async (t) => {
    const long = await rawRequest(logd.port, `GET /${'p'.repeat(3000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 2000);
    t.equal(long.response?.status, 404);
    t.ok((long.response?.body.length ?? Infinity) < 1000, `404 body of ${long.response?.body.length} bytes`);
    // uWS parses a request head that arrives in one read at any length; one split over reads and longer than its
    // buffer (UWS_HTTP_MAX_HEADERS_SIZE, 4 KiB) gets the connection closed. Either way nothing long comes back.
    const huge = await rawRequest(logd.port, `GET /${'p'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 2000);
    const answer = huge.response ? `${huge.response.status}, body of ${huge.response.body.length} bytes` : `no answer (${huge.end})`;
    t.ok(huge.response ? huge.response.status === 404 && huge.response.body.length < 1000 : huge.end !== 'deadline', `a 100,000-character path: ${answer}`);
    const bad = await postJson(`${logd.url}/api/logs/batch`, { logs: Array.from({ length: 1000 }, () => ({ device_id: 'd', log_level: 'LOUD', message: '' })) });
    t.equal(bad.status, 422);
    t.equal(bad.body.detail.length, 21, '20 problems and a last line');
    t.match(bad.body.detail[20], { type: 'too_many_errors', msg: /^\d+ more problems not listed$/ });
  });

  await t.test('pipelined POSTs: nothing stored that is not answered', async (t) => {
    const device = 'pipelined';
    const one = (i: number) => {
      const body = JSON.stringify(log(device, `p${i}`));
      return `POST /api/log HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    };
    const r = await rawRequest(logd.port, one(0) + one(1) + one(2), 2000);
    const answered = responses(r.received).filter((a) => a.status === 200).length;
    // The persister keeps stream order: once a later log is stored, any earlier one would be too.
    t.equal((await postJson(`${logd.url}/api/log`, log('after-pipelined'))).status, 200);
    await waitRows(pg, 1, 'device_id = $1', ['after-pipelined']);
    const stored = (await pg.query('SELECT count(*)::int AS n FROM logs WHERE device_id = $1', [device]))[0].n;
    t.equal(stored, answered, `${answered} answered, ${stored} stored`);
  });

  await t.test('16 concurrent maximum-size batches per worker: 200 or 503, no crash', async (t) => {
    const workers = logd.children('http').sort();
    // 1000 logs of about 52 KB each: the largest batch body server.body_limit_batch (50 MiB) admits.
    const data = 'd'.repeat(52_000);
    const body = Buffer.from(JSON.stringify({ logs: Array.from({ length: 1000 }, (_, i) => ({ ...log('maxsize', `m${i}`), log_data: { data } })) }));
    t.ok(body.length > 50_000_000 && body.length <= 52_428_800, `body of ${body.length} bytes`);
    // One connection each, as independent senders would.
    const answers = await Promise.all(Array.from({ length: 32 }, () => postAlone(logd.port, '/api/logs/batch', body)));
    const ok = answers.filter((a) => a.status === 200).length;
    const busy = answers.filter((a) => a.status === 503 && a.code === 'LOGD_OVERLOADED' && a.retry === '1').length;
    t.equal(ok + busy, 32, `32 answers: ${ok} x 200, ${busy} x 503 LOGD_OVERLOADED (others: ${JSON.stringify(answers.filter((a) => a.status !== 200 && a.status !== 503))})`);
    t.ok(ok >= 1 && busy >= 1, 'some accepted, some refused');
    t.same(logd.children('http').sort(), workers, 'the same worker processes');
    // Each accepted batch is 50 MiB for the persister to COPY: a deadline for a loaded machine.
    const count = async (): Promise<number> => (await pg.query("SELECT count(*)::int AS n FROM logs WHERE device_id = 'maxsize'"))[0].n;
    await waitFor(`${ok * 1000} maximum-size logs stored`, async () => (await count()) >= ok * 1000, 120_000, 250);
    t.equal(await count(), ok * 1000, 'every acknowledged log stored once');
    t.equal((await postJson(`${logd.url}/api/log`, log('after-maxsize'))).status, 200, 'the budget is given back');
  });

  await t.test('open mode says so', async (t) => {
    const h = await request(`${logd.url}/health`);
    t.match(h.body.reasons, [/authentication is OFF/], '/health reasons');
    const check = spawnSync(process.execPath, [LOGD_BIN, 'check'], {
      env: { ...process.env, ...serviceEnv(redis, pg), LOGD_AUTH_MODE: 'open' }, encoding: 'utf8', timeout: 20_000,
    });
    t.match(check.stdout, /^WARNING {2}authentication is OFF/m, 'logd check');
    t.match(logd.output(), /authentication is OFF/, 'the start-up log');
  });
});

t.test('open mode only when configured, and never on a reachable address by accident', async (t) => {
  const cfg = loadConfig(undefined, {});
  t.same([cfg.server.host, cfg.auth.mode], ['127.0.0.1', 'token'], 'defaults: loopback, tokens');
  t.throws(() => loadConfig(undefined, { LOGD_AUTH_MODE: 'open', LOGD_SERVER_HOST: '0.0.0.0' }), /auth\.allow_open_remote/, 'open on 0.0.0.0 refused');
  t.equal(loadConfig(undefined, { LOGD_AUTH_MODE: 'open', LOGD_SERVER_HOST: '0.0.0.0', LOGD_AUTH_ALLOW_OPEN_REMOTE: 'true' }).auth.mode, 'open', 'unless allowed');
  t.equal(loadConfig(undefined, { LOGD_AUTH_MODE: 'open', LOGD_SERVER_HOST: '127.0.0.5' }).auth.mode, 'open', 'loopback is fine');
  const serve = spawnSync(process.execPath, [LOGD_BIN, 'serve'], { env: { ...process.env, LOGD_AUTH_MODE: 'open', LOGD_SERVER_HOST: '0.0.0.0' }, encoding: 'utf8', timeout: 20_000 });
  t.equal(serve.status, 2, 'logd serve exits 2');
  t.match(serve.stderr + serve.stdout, /auth\.mode = "open" on server\.host 0\.0\.0\.0/);
});
