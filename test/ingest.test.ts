/**
 * Ingest end to end: HTTP -> Redis stream -> persister COPY -> PostgreSQL,
 * against a real logd process and private Redis and PostgreSQL.
 */
import t from 'tap';
import { waitFor } from './helpers/services';
import { postJson, request, startStack, waitRows } from './helpers/logd';

t.test('ingest', async (t) => {
  const { pg, logd } = await startStack(t, { env: { LOGD_SERVER_BODY_LIMIT_SINGLE: '4096', LOGD_SERVER_BODY_LIMIT_BATCH: '600000' } });
  const count = async (): Promise<number> => Number((await pg.query<{ n: string }>('SELECT count(*) AS n FROM logs'))[0].n);

  await t.test('a posted log is in PostgreSQL with identical fields', async (t) => {
    const entry = { device_id: 'sensor-1', log_level: 'WARNING', message: 'disk 91% full', log_data: { disk: '/dev/sda', pct: 91, tags: ['a', 'b'], nested: { ok: false, none: null } } };
    const before = Date.now();
    const r = await postJson(`${logd.url}/api/log`, entry);
    t.equal(r.status, 200, r.text);
    t.equal(r.body.status, 'received');
    t.match(r.body.message_id, /^\d+-\d+:0$/);
    const receivedAt = Date.parse(r.body.received_at);
    t.ok(receivedAt >= before - 5 && receivedAt <= Date.now() + 5, 'received_at is the receive time');
    const [row] = await waitRows(pg, 1, 'device_id = $1', ['sensor-1']);
    t.equal(row.log_level, 'WARNING');
    t.equal(row.message, 'disk 91% full');
    t.same(row.log_data, entry.log_data);
    t.equal(new Date(row.created_at).toISOString(), r.body.received_at, 'created_at = receive time, UTC');
  });

  await t.test('log_data defaults to {} and a client timestamp is the event time', async (t) => {
    const iso = await postJson(`${logd.url}/api/log`, { device_id: 'ts-iso', log_level: 'INFO', message: 'm', timestamp: '2024-02-29T23:59:58.123456+05:30' });
    const naive = await postJson(`${logd.url}/api/log`, { device_id: 'ts-naive', log_level: 'INFO', message: 'm', timestamp: '2024-01-02 03:04:05' });
    const epoch = await postJson(`${logd.url}/api/log`, { device_id: 'ts-epoch', log_level: 'INFO', message: 'm', timestamp: 1700000000123 });
    t.same([iso.status, naive.status, epoch.status], [200, 200, 200]);
    const rows = await waitRows(pg, 3, "device_id LIKE 'ts-%'");
    const byDevice = Object.fromEntries(rows.map((r) => [r.device_id, r]));
    const [x] = await pg.query<{ us: string }>("SELECT extract(microseconds FROM created_at)::text AS us FROM logs WHERE device_id = 'ts-iso'");
    t.equal(new Date(byDevice['ts-iso'].created_at).toISOString(), '2024-02-29T18:29:58.123Z');
    t.equal(x.us, '58123456', 'microseconds kept');
    t.equal(new Date(byDevice['ts-naive'].created_at).toISOString(), '2024-01-02T03:04:05.000Z', 'no offset = UTC');
    t.equal(new Date(byDevice['ts-epoch'].created_at).toISOString(), new Date(1700000000123).toISOString());
    t.same(byDevice['ts-iso'].log_data, {});
  });

  await t.test('a 1000-entry batch arrives complete', async (t) => {
    const logs = Array.from({ length: 1000 }, (_, i) => ({ device_id: 'batch-dev', log_level: 'DEBUG', message: `line ${i}`, log_data: { i } }));
    const r = await postJson(`${logd.url}/api/logs/batch`, { logs });
    t.equal(r.status, 200, r.text);
    t.equal(r.body.count, 1000);
    t.equal(new Set(r.body.message_ids).size, 1000, 'every log has its own message_id');
    const rows = await waitRows(pg, 1000, 'device_id = $1', ['batch-dev']);
    t.equal(rows.length, 1000);
    t.same(rows.map((row) => row.message).sort(), logs.map((l) => l.message).sort());
    t.ok(rows.every((row) => row.message === `line ${row.log_data.i}`), 'each row kept its own fields');
  });

  await t.test('unicode round-trips exactly through COPY', async (t) => {
    const messages = [
      '漢字かな交じり文 한국어',
      'emoji 😀🎉👩‍👩‍👧 and flags 🇯🇵',
      'tab\there, backslash \\ and \\N and \\. and double \\\\',
      'newline\nand carriage\r\nreturn',
      'control \u0001\u001f chars, quote " and \u2028',
      '\\.',
    ];
    const logs = messages.map((message, i) => ({ device_id: `uni-${i}`, log_level: 'INFO', message, log_data: { m: message, [message]: i } }));
    const r = await postJson(`${logd.url}/api/logs/batch`, { logs });
    t.equal(r.status, 200, r.text);
    const rows = await waitRows(pg, messages.length, "device_id LIKE 'uni-%'");
    for (const [i, message] of messages.entries()) {
      const row = rows.find((x) => x.device_id === `uni-${i}`);
      t.equal(row.message, message, `message ${i}`);
      t.same(row.log_data, { m: message, [message]: i }, `log_data ${i}`);
    }
  });

  await t.test('bad input: status, error body, and the table unchanged', async (t) => {
    const ok = { device_id: 'bad', log_level: 'INFO', message: 'fine' };
    const long = (n: number): string => 'x'.repeat(n);
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) deep = { d: deep };
    const cases: { name: string; path?: string; body: string | Buffer; type?: string; status: number; code: string; loc?: (string | number)[] }[] = [
      { name: 'invalid JSON', body: '{"device_id": "d1", ', status: 400, code: 'LOGD_INVALID_JSON' },
      { name: 'not JSON at all', body: 'hello', status: 400, code: 'LOGD_INVALID_JSON' },
      { name: 'invalid UTF-8', body: Buffer.concat([Buffer.from('{"device_id":"d","log_level":"INFO","message":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), status: 400, code: 'LOGD_INVALID_UTF8' },
      { name: 'wrong content type', body: JSON.stringify(ok), type: 'text/plain', status: 415, code: 'LOGD_UNSUPPORTED_MEDIA_TYPE' },
      { name: 'form content type (curl -d without -H)', body: JSON.stringify(ok), type: 'application/x-www-form-urlencoded', status: 415, code: 'LOGD_UNSUPPORTED_MEDIA_TYPE' },
      { name: 'body over the limit', body: JSON.stringify({ ...ok, log_data: { pad: long(5000) } }), status: 413, code: 'LOGD_BODY_TOO_LARGE' },
      { name: 'missing device_id', body: JSON.stringify({ log_level: 'INFO', message: 'm' }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'device_id'] },
      { name: 'empty device_id', body: JSON.stringify({ ...ok, device_id: '' }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'device_id'] },
      { name: 'device_id of 51 chars', body: JSON.stringify({ ...ok, device_id: long(51) }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'device_id'] },
      { name: 'message of 5001 chars', path: '/api/logs/batch', body: JSON.stringify({ logs: [{ ...ok, message: long(5001) }] }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'logs', 0, 'message'] },
      { name: 'numeric log_level', body: JSON.stringify({ ...ok, log_level: 3 }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'log_level'] },
      { name: 'unknown log_level', body: JSON.stringify({ ...ok, log_level: 'info' }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'log_level'] },
      { name: 'log_data not an object', body: JSON.stringify({ ...ok, log_data: [1] }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'log_data'] },
      { name: 'unknown field', body: JSON.stringify({ ...ok, sevrity: 'x' }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'sevrity'] },
      { name: 'NUL in message', body: JSON.stringify({ ...ok, message: 'a\u0000b' }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'message'] },
      { name: 'NUL deep in log_data', body: JSON.stringify({ ...ok, log_data: { a: [{ b: 'x\u0000' }] } }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'log_data', 'a', 0, 'b'] },
      { name: 'NUL in a log_data key', body: JSON.stringify({ ...ok, log_data: { 'k\u0000': 1 } }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'log_data', 'k\u0000'] },
      { name: 'lone surrogate', body: '{"device_id":"d","log_level":"INFO","message":"\\ud800"}', status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'message'] },
      { name: 'deeply nested log_data', body: JSON.stringify({ ...ok, log_data: deep }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'log_data'] },
      { name: 'impossible date', body: JSON.stringify({ ...ok, timestamp: '2023-02-29T00:00:00Z' }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'timestamp'] },
      { name: 'timestamp of the wrong type', body: JSON.stringify({ ...ok, timestamp: true }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'timestamp'] },
      { name: 'body is an array', body: '[]', status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body'] },
      { name: 'empty batch', path: '/api/logs/batch', body: JSON.stringify({ logs: [] }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'logs'] },
      { name: '1001 entries', path: '/api/logs/batch', body: JSON.stringify({ logs: Array(1001).fill(ok) }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'logs'] },
      { name: 'one bad entry refuses the whole batch', path: '/api/logs/batch', body: JSON.stringify({ logs: [ok, ok, { ...ok, log_level: 'LOUD' }] }), status: 422, code: 'LOGD_VALIDATION_FAILED', loc: ['body', 'logs', 2, 'log_level'] },
      { name: 'batch body over the limit', path: '/api/logs/batch', body: JSON.stringify({ logs: Array(200).fill({ ...ok, message: long(4000) }) }), status: 413, code: 'LOGD_BODY_TOO_LARGE' },
    ];
    const before = await count();
    for (const c of cases) {
      const r = await request(`${logd.url}${c.path ?? '/api/log'}`, { method: 'POST', headers: { 'content-type': c.type ?? 'application/json' }, body: c.body });
      t.equal(r.status, c.status, `${c.name}: status`);
      t.equal(r.headers.get('content-type'), 'application/json', `${c.name}: JSON`);
      t.equal(r.body?.code, c.code, `${c.name}: code`);
      if (c.loc) {
        t.ok(Array.isArray(r.body.detail), `${c.name}: FastAPI detail list`);
        t.same(r.body.detail[0].loc, c.loc, `${c.name}: names the field`);
        t.type(r.body.detail[0].msg, 'string');
        t.type(r.body.detail[0].type, 'string');
      } else {
        t.type(r.body?.detail, 'string', `${c.name}: detail says what is wrong`);
      }
    }
    // A valid log sent after all of them is persisted: nothing bad got into the stream ahead of it.
    const r = await postJson(`${logd.url}/api/log`, { ...ok, device_id: 'after-bad' });
    t.equal(r.status, 200);
    await waitRows(pg, 1, 'device_id = $1', ['after-bad']);
    t.equal(await count(), before + 1, 'no bad request left a row');
  });

  await t.test('unknown routes and methods answer JSON', async (t) => {
    const nf = await request(`${logd.url}/nope`);
    t.equal(nf.status, 404);
    t.equal(nf.body.code, 'LOGD_NOT_FOUND');
    const m = await request(`${logd.url}/api/log`);
    t.equal(m.status, 405);
    t.equal(m.body.code, 'LOGD_METHOD_NOT_ALLOWED');
  });

  await t.test('/health reports each component', async (t) => {
    const r = await request(`${logd.url}/health`);
    t.equal(r.status, 200);
    t.equal(r.body.status, 'healthy');
    t.equal(r.body.components.redis.status, 'up');
    t.equal(r.body.components.postgres.status, 'up');
    await pg.stop();
    const down = await request(`${logd.url}/health`);
    t.equal(down.status, 503);
    t.equal(down.body.components.postgres.status, 'down');
    t.equal(down.body.components.redis.status, 'up');
    await pg.start();
    await t.resolves(waitHealthy(logd.url), 'healthy again once PostgreSQL is back');
  });
});

async function waitHealthy(url: string): Promise<void> {
  await waitFor('/health to answer 200', async () => (await request(`${url}/health`)).status === 200, 20_000);
}
