/**
 * POST /api/logs/batch with an NDJSON body against a real logd: the bytes
 * Vector's `http` sink and Fluent Bit's `http` output send
 * (test/fixtures/ndjson, gzip and zstd among them), per-line errors beside
 * stored lines, a request none of whose lines is valid, limits, and a full
 * backlog refused whole and stored once on the retry.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Redis from 'ioredis';
import t from 'tap';
import { metric, request, startStack, waitRows } from './helpers/logd';
import { waitFor } from './helpers/services';

const FIXTURES = path.join(__dirname, 'fixtures', 'ndjson');
const BACKLOG_KEY = 'logs:stream:backlog';
const FULL = 1_000_000_000;

/** Sends a fixture's request bytes as they are on a connection of its own; resolves with the status and body of the answer. */
function replay(port: number, name: string): Promise<{ status: number; body: any }> {
  const head = fs.readFileSync(path.join(FIXTURES, `${name}.head`), 'latin1').replace('{port}', String(port));
  const body = fs.readFileSync(path.join(FIXTURES, `${name}.body`));
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      const text = got.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text);
      if (end < 0 || !length || got.length < end + 4 + Number(length[1])) return;
      s.end();
      resolve({ status: Number(text.slice(9, 12)), body: JSON.parse(text.slice(end + 4)) });
    });
    s.on('error', reject);
    s.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
  });
}

const entry = (device: string, message: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ device_id: device, log_level: 'INFO', message, ...extra });

t.test('NDJSON on POST /api/logs/batch', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1 });
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());
  const post = (body: string | Buffer, headers: Record<string, string> = {}) => request(`${logd.url}/api/logs/batch`, {
    method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers }, body,
  });
  const rowsOf = (device: string) => pg.query<Record<string, any>>('SELECT * FROM logs WHERE device_id = $1 ORDER BY id', [device]);

  await t.test('Vector http sink (json, newline_delimited), plain and gzip', async (t) => {
    const plain = await replay(logd.port, 'vector-http');
    t.equal(plain.status, 200);
    t.match(plain.body, { status: 'received', count: 3, errors: false, rejected: 0, items: [] });
    t.equal(plain.body.message_ids.length, 3);
    t.equal((await replay(logd.port, 'vector-http-gzip')).body.count, 3);
    const rows = await waitRows(pg, 6, "device_id = 'vector-vm-1'");
    t.same(rows.map((x) => x.message), ['vector line 1', 'vector line 2', 'vector line 3', 'vector line 1', 'vector line 2', 'vector line 3']);
    t.same(rows.slice(0, 3).map((x) => x.log_level), ['INFO', 'ERROR', 'WARNING']);
    t.equal(rows[0].created_at.toISOString(), '2026-12-01T10:00:00.123Z');
    t.same(rows[0].log_data, { file: '/var/log/app.log', source_type: 'file' });
  });

  await t.test('Fluent Bit http output (json_lines, iso8601 date key), plain and zstd', async (t) => {
    t.equal((await replay(logd.port, 'fluent-bit-json-lines')).body.count, 3);
    t.equal((await replay(logd.port, 'fluent-bit-json-lines-zstd')).body.count, 3);
    const rows = await waitRows(pg, 6, "device_id = 'fluentbit-vm-1'");
    t.same(rows.slice(0, 3).map((x) => x.log_level), ['INFO', 'DEBUG', 'CRITICAL']);
    const [{ us }] = await pg.query<{ us: string }>("SELECT extract(microseconds FROM created_at)::text AS us FROM logs WHERE message = 'fluent-bit line 1' LIMIT 1");
    t.equal(us, '123456', 'microseconds kept');
    t.same(rows[0].log_data, { tag: 'app.log', pid: 41 });
    t.equal(await metric(logd, 'logd_protocol_records_total{protocol="ndjson",outcome="stored"}'), 12);
  });

  await t.test('per-line errors: the valid lines stored, the others named', async (t) => {
    const lines = [
      entry('lines-1', 'first'),
      '',
      'not json',
      entry('lines-1', 'bad level', { log_level: 'LOUD' }),
      JSON.stringify({ device_id: 5, log_level: 'INFO', message: 'wrong type' }),
      entry('lines-1', 'extra field', { color: 'red' }),
      '   ',
      entry('lines-1', 'nul \u0000 here'),
      entry('lines-1', 'lone \ud800 surrogate'),
      `{"device_id":"lines-1","log_level":"INFO","message":"too deep","log_data":${'{"a":'.repeat(33)}1${'}'.repeat(33)}}`,
      `{"device_id":"lines-1","log_level":"INFO","message":"far too deep","log_data":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`,
      entry('lines-1', 'no timestamp, no data'),
    ];
    const body = Buffer.concat([Buffer.from(`${lines.join('\n')}\n`), Buffer.from([0x7b, 0xff, 0x7d, 0x0a]), Buffer.from(entry('lines-1', 'last'))]);
    const res = await post(body);
    t.equal(res.status, 200, res.text);
    t.match(res.body, { status: 'received', count: 3, errors: true, rejected: 9 });
    t.same(res.body.items.map((i: any) => [i.line, i.status, i.detail[0].type]), [
      [3, 400, 'json_invalid'],
      [4, 422, 'enum'],
      [5, 422, 'string_type'],
      [6, 422, 'extra_forbidden'],
      [8, 422, 'string_unstorable'],
      [9, 422, 'string_unstorable'],
      [10, 422, 'too_deep'],
      [11, 422, 'too_deep'],
      [13, 400, 'utf8_invalid'],
    ]);
    t.same(res.body.items[4].detail[0].loc, ['line', 8, 'message']);
    const rows = await waitRows(pg, 3, "device_id = 'lines-1'");
    t.same(rows.map((x) => x.message), ['first', 'no timestamp, no data', 'last']);
    t.ok(Math.abs(rows[1].created_at.getTime() - Date.now()) < 60_000, 'no timestamp: the receive time');
  });

  await t.test('no valid line: 422 naming the lines; an empty body: 422', async (t) => {
    const res = await post(`not json\n${entry('none-1', 'x', { log_level: 'NOPE' })}\n`);
    t.equal(res.status, 422);
    t.equal(res.body.code, 'LOGD_VALIDATION_FAILED');
    t.same(res.body.detail.map((i: any) => i.loc.slice(0, 2)), [['line', 1], ['line', 2]]);
    const empty = await post('\n\n');
    t.equal(empty.status, 422);
    t.match(empty.body.detail, [{ loc: ['body'], type: 'too_short' }]);
    t.same(await rowsOf('none-1'), []);
  });

  await t.test('content types: application/ndjson too; another is 415 in logd\'s shape', async (t) => {
    t.equal((await post(entry('ct-1', 'ndjson'), { 'content-type': 'application/ndjson' })).status, 200);
    const res = await post(entry('ct-1', 'text'), { 'content-type': 'text/plain' });
    t.equal(res.status, 415);
    t.match(res.body, { code: 'LOGD_UNSUPPORTED_MEDIA_TYPE', detail: /x-ndjson/ });
    const gz = await post(gzipSync(entry('ct-1', 'zipped')), { 'content-encoding': 'gzip' });
    t.equal(gz.status, 200);
    await waitRows(pg, 2, "device_id = 'ct-1'");
  });

  await t.test('many failed lines: the first 100 listed, all counted', async (t) => {
    const res = await post(`${entry('many-1', 'kept')}\n${Array.from({ length: 300 }, () => 'bad').join('\n')}`);
    t.match(res.body, { count: 1, rejected: 300 });
    t.equal(res.body.items.length, 100);
  });

  await t.test('100,000 lines are stored', async (t) => {
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++) lines.push(`{"device_id":"big-1","log_level":"INFO","message":"line ${i}","log_data":{"i":${i}}}`);
    const res = await post(lines.join('\n'));
    t.equal(res.status, 200);
    t.equal(res.body.count, 100_000);
    await waitFor('100,000 rows', async () => Number((await pg.query<{ n: string }>("SELECT count(*) AS n FROM logs WHERE device_id = 'big-1'"))[0].n) === 100_000, 60_000);
  });

  await t.test('a full backlog: 503 + Retry-After, nothing stored; the retry stored once', async (t) => {
    const body = [entry('full-1', 'a'), entry('full-1', 'b'), 'bad'].join('\n');
    await r.incrby(BACKLOG_KEY, FULL);
    const refused = await post(body);
    t.equal(refused.status, 503);
    t.equal(refused.body.code, 'LOGD_BACKLOG_FULL');
    t.equal(refused.headers.get('retry-after'), '1');
    await r.decrby(BACKLOG_KEY, FULL);
    const again = await post(body);
    t.match(again.body, { count: 2, rejected: 1 });
    await waitFor('the stream persisted', async () => (await r.get(BACKLOG_KEY)) === '0', 30_000);
    t.same((await rowsOf('full-1')).map((x) => x.message), ['a', 'b']);
  });
});
