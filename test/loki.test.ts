/**
 * POST /loki/api/v1/push and GET /ready against a real logd: the real
 * winston-loki (snappy protobuf, and JSON) and pino-loki (JSON), replayed
 * requests of Vector's loki sink and Fluent Bit's loki output
 * (test/fixtures/loki/README.md), and raw requests for what clients do not
 * send: a 100,000-entry push, broken bodies, wrong types, text PostgreSQL
 * cannot hold, a full backlog, Redis down. Tokens are on, as clients use
 * them (Basic password, Bearer).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import pino from 'pino';
import { pinoLoki } from 'pino-loki';
import t from 'tap';
import winston from 'winston';
import LokiTransport from 'winston-loki';
import { PushRequest } from '../src/formats/loki';
import { LOGD_BIN, request, serviceEnv, startStack, type Reply } from './helpers/logd';
import { waitFor } from './helpers/services';

// snappyjs ships no type declarations
const SnappyJS = require('snappyjs') as { compress(b: Uint8Array): Uint8Array };

const FIXTURES = path.join(__dirname, 'fixtures', 'loki');
const PUSH = '/loki/api/v1/push';
const BACKLOG = 'logs:stream:backlog';

interface Row {
  device_id: string;
  log_level: string;
  message: string;
  log_data: Record<string, any>;
  /** created_at to the microsecond, UTC */
  at: string;
}

/** Sends `raw` as it is on a connection of its own; resolves with the answer's status, headers and body. */
function replay(port: number, raw: Buffer): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(raw));
    let got = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = got.subarray(0, end).toString();
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (got.length < end + 4 + length) return;
      s.destroy();
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), head, body: got.subarray(end + 4, end + 4 + length).toString() });
    });
    s.on('error', reject);
  });
}

/** A captured request with the test's token added after its last header (the captures carry none). */
function fixture(file: string, token: string): Buffer {
  const raw = fs.readFileSync(path.join(FIXTURES, file));
  const end = raw.indexOf('\r\n\r\n');
  return Buffer.concat([raw.subarray(0, end), Buffer.from(`\r\nauthorization: Bearer ${token}`), raw.subarray(end)]);
}

const protobufBody = (value: object): Buffer => Buffer.from(SnappyJS.compress(PushRequest.encode(PushRequest.fromObject(value)).finish()));

t.test('Loki push', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1, env: { LOGD_AUTH_MODE: 'token' } });
  const cli = async (...args: string[]): Promise<string> =>
    (await promisify(execFile)(process.execPath, [LOGD_BIN, ...args], { env: { ...process.env, ...serviceEnv(redis, pg) } })).stdout.trim();
  const token = await cli('token', 'create', '--name', 'loki', '--scope', 'ingest');
  const admin = await cli('token', 'create', '--name', 'admin', '--scope', 'admin');
  const auth = { authorization: `Bearer ${token}` };
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());

  const post = (body: string | Buffer, contentType: string, headers: Record<string, string> = {}): Promise<Reply> =>
    request(logd.url + PUSH, { method: 'POST', headers: { 'content-type': contentType, ...auth, ...headers }, body });
  const postJson = (value: unknown, headers: Record<string, string> = {}): Promise<Reply> => post(JSON.stringify(value), 'application/json', headers);
  const rowsWhere = (where: string, params: unknown[] = []): Promise<Row[]> =>
    pg.query<Row>(`SELECT device_id, log_level, message, log_data, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
      FROM logs WHERE ${where} ORDER BY id`, params);
  const waitRows = (n: number, where: string, params: unknown[] = []): Promise<Row[]> =>
    waitFor(`${n} rows where ${where}`, async () => { const rows = await rowsWhere(where, params); return rows.length >= n && rows; }, 30_000);
  const metric = async (series: string): Promise<number> => {
    const text = (await request(`${logd.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text;
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
  const stored = (): Promise<number> => metric('logd_protocol_records_total{protocol="loki",outcome="stored"}');
  const rejected = (): Promise<number> => metric('logd_protocol_records_total{protocol="loki",outcome="rejected"}');

  await t.test('winston-loki, snappy protobuf (its default) and JSON, with Basic auth', async (t) => {
    for (const json of [false, true]) {
      const job = json ? 'winston-json' : 'winston-proto';
      const transport = new LokiTransport({
        host: logd.url, basicAuth: `user:${token}`, json, interval: 0.2, replaceTimestamp: false,
        labels: { job, host: `${job}-host` }, gracefulShutdown: false,
        onConnectionError: (err: unknown) => t.fail(`winston-loki: ${String(err)}`),
      });
      const logger = winston.createLogger({ level: 'debug', transports: [transport] });
      const sent: { level: string; message: string; at: string }[] = [];
      for (let i = 0; i < 60; i++) {
        const level = ['debug', 'info', 'warn', 'error'][i % 4];
        const timestamp = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, i)).toISOString();
        logger.log({ level, message: `winston ${i}`, timestamp, request_id: `r${i}` });
        sent.push({ level, message: `winston ${i}`, at: timestamp.replace('Z', '000Z') });
      }
      await transport.flush();
      await transport.close();
      const rows = await waitRows(60, 'device_id = $1', [`${job}-host`]);
      t.equal(rows.length, 60, `${job}: 60 entries, 60 rows`);
      const byMessage = new Map(rows.map((x) => [x.message.split(' {')[0], x]));
      for (const s of sent) {
        const row = byMessage.get(s.message)!;
        t.ok(row, s.message);
        t.equal(row.log_level, { debug: 'DEBUG', info: 'INFO', warn: 'WARNING', error: 'ERROR' }[s.level]);
        t.equal(row.at, s.at, 'its timestamp');
        t.same(row.log_data.labels, { level: s.level, job, host: `${job}-host` });
      }
      const first = byMessage.get('winston 0')!;
      // winston-loki's line is `${message} ${JSON of the other fields}`; with json: true those fields are structured metadata too
      t.equal(first.message, 'winston 0 {"level":"debug","request_id":"r0"}');
      if (json) t.same(first.log_data.structured_metadata, { level: 'debug', request_id: 'r0' });
      else t.notOk('structured_metadata' in first.log_data, 'protobuf (winston-loki\'s default with the snappy package installed) carries no structured metadata');
    }
  });

  await t.test('pino-loki (JSON), batched', async (t) => {
    const before = await stored();
    const transport = pinoLoki({
      host: logd.url, basicAuth: { username: 'pino', password: token }, labels: { job: 'pino-app' },
      batching: { interval: 0.2 }, structuredMetaKey: 'meta',
    });
    const logger = pino({ level: 'debug' }, transport);
    for (let i = 0; i < 40; i++) {
      const m = ['debug', 'info', 'warn', 'error', 'fatal'][i % 5] as 'debug' | 'info' | 'warn' | 'error' | 'fatal';
      logger[m]({ meta: { trace_id: `t${i}`, attempt: i } }, `pino ${i}`);
    }
    const closed = new Promise((resolve) => transport.on('close', resolve));
    transport.end();
    await closed;
    const rows = await waitRows(40, "log_data->'labels'->>'job' = 'pino-app'");
    t.equal(rows.length, 40, '40 logs, 40 rows');
    t.equal(await stored(), before + 40, 'counted as stored');
    const byMessage = new Map(rows.map((x) => [JSON.parse(x.message).msg as string, x]));
    for (let i = 0; i < 40; i++) {
      const row = byMessage.get(`pino ${i}`)!;
      const line = JSON.parse(row.message);
      t.equal(row.device_id, os.hostname().slice(0, 50), 'device: the hostname label pino-loki sets');
      t.equal(row.log_level, ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'][i % 5]);
      t.same(row.log_data.structured_metadata, { trace_id: `t${i}`, attempt: String(i) });
      t.equal(row.log_data.labels.job, 'pino-app');
      // pino-loki sends String(time * 1e6), the double's shortest text
      const ns = BigInt(String((line.time as number) * 1e6));
      const expected = new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 23) + String((ns % 1_000_000n) / 1000n).padStart(3, '0') + 'Z';
      t.equal(row.at, expected, 'its timestamp, to the microsecond');
    }
  });

  await t.test('Vector loki sink (snappy protobuf, Content-Encoding: snappy), replayed', async (t) => {
    const res = await replay(logd.port, fixture('vector-protobuf.http', token));
    t.equal(res.status, 204, res.body);
    t.equal(res.body, '', 'an empty body');
    const rows = await waitRows(3, "device_id = 'web-1'");
    t.same(rows.map((x) => [x.log_level, x.at, x.message]), [
      ['INFO', '2026-01-01T00:00:00.123456Z', '{"message":"GET /index.html 200","status":200}'],
      ['INFO', '2026-01-01T00:00:00.223456Z', '{"message":"GET /missing 404","status":404}'],
      ['ERROR', '2026-01-01T00:00:01.000000Z', '{"message":"job 42 failed"}'],
    ]);
    t.same(rows[0].log_data, { labels: { agent: 'vector', host: 'web-1', job: 'nginx' }, structured_metadata: { trace_id: '4bf92f3577b34da6' }, org_id: 'acme' });
    t.same(rows[2].log_data, { labels: { agent: 'vector', host: 'web-1', job: 'worker', level: 'error' }, org_id: 'acme' });
  });

  await t.test('Fluent Bit loki output (JSON, and gzip), replayed', async (t) => {
    for (const [file, host] of [['fluent-bit-json.http', 'web-2'], ['fluent-bit-gzip.http', 'web-3']]) {
      const res = await replay(logd.port, fixture(file, token));
      t.equal(res.status, 204, `${file}: ${res.body}`);
      const rows = await waitRows(2, 'device_id = $1', [host]);
      t.same(rows.map((x) => [x.log_level, x.at, JSON.parse(x.message).log]), [
        ['INFO', '2026-01-01T00:00:02.000000Z', 'GET /index.html 200'],
        ['INFO', '2026-01-01T00:00:02.500000Z', 'upstream timed out'],
      ], `${file}: a level inside the line is not read`);
      t.same(rows[0].log_data, { labels: { job: 'fluent-bit', host }, org_id: 'acme' });
    }
  });

  await t.test('100,000 entries in one protobuf push: all stored', async (t) => {
    const entries = Array.from({ length: 100_000 }, (_, i) => ({ timestamp: { seconds: 1767225600 + Math.floor(i / 1000), nanos: (i % 1000) * 1000 }, line: `bulk line ${i}` }));
    const body = protobufBody({ streams: [{ labels: '{host="bulk", job="bench"}', entries }] });
    t.ok(body.length < 50 * 1024 * 1024, `${body.length} bytes, under the 50 MiB limit`);
    const res = await post(body, 'application/x-protobuf');
    t.equal(res.status, 204, res.text);
    const count = await waitFor('100000 bulk rows', async () => {
      const [{ n }] = await pg.query<{ n: string }>("SELECT count(*) AS n FROM logs WHERE device_id = 'bulk'");
      return Number(n) >= 100_000 && Number(n);
    }, 40_000);
    t.equal(count, 100_000, 'every entry, once');
    const [{ n: distinct }] = await pg.query<{ n: string }>("SELECT count(DISTINCT message) AS n FROM logs WHERE device_id = 'bulk'");
    t.equal(Number(distinct), 100_000);
  });

  await t.test('bodies that cannot be read: 400/413/415 as plain text, nothing stored', async (t) => {
    const proto = PushRequest.encode(PushRequest.fromObject({ streams: [{ labels: '{host="broken"}', entries: [{ line: 'never stored' }] }] })).finish();
    const cases: [string, string | Buffer, string, number, RegExp][] = [
      ['truncated protobuf', Buffer.from(SnappyJS.compress(proto.subarray(0, proto.length - 4))), 'application/x-protobuf', 400, /^the body is not a protobuf PushRequest: /],
      ['bad snappy', Buffer.concat([Buffer.from(SnappyJS.compress(proto)).subarray(0, 10)]), 'application/x-protobuf', 400, /^the body is not valid snappy block format: /],
      ['not snappy at all', Buffer.from(proto), 'application/x-protobuf', 400, /snappy block format/],
      ['a snappy header over the limit', Buffer.concat([Buffer.from([0x80, 0x80, 0x80, 0x20]), Buffer.from('tiny')]), 'application/x-protobuf', 413, /^the snappy body declares 67108864 bytes, over the limit of 52428800 bytes$/],
      ['invalid JSON', '{"streams": [', 'application/json', 400, /^request body is not valid JSON: /],
      ['JSON that is not a push', '{"streams": {}}', 'application/json', 400, /^"streams" must be an array, got an object$/],
      ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 'application/json', 400, /UTF-8/],
      ['an unknown content type', 'host=broken never stored', 'text/plain', 415, /^content-type must be application\/json or application\/x-protobuf \(snappy-compressed\), got "text\/plain"$/],
    ];
    for (const [what, body, type, status, text] of cases) {
      const res = await post(body, type);
      t.equal(res.status, status, `${what}: ${status}`);
      t.match(res.headers.get('content-type'), /^text\/plain/, `${what}: plain text`);
      t.match(res.text.slice(0, -1), text, `${what}: names the problem`);
      t.ok(res.text.endsWith('\n'), `${what}: a line`);
    }
    const unknownEncoding = await post('{}', 'application/json', { 'content-encoding': 'br' });
    t.equal(unknownEncoding.status, 415);
    t.match(unknownEncoding.text, /^content-encoding "br" is not served/);
    const noToken = await request(logd.url + PUSH, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"streams":[]}' });
    t.equal(noToken.status, 401, 'no token: 401');
    t.match(noToken.headers.get('content-type'), /^text\/plain/, 'in Loki\'s shape too');
    t.ok(noToken.text.endsWith('\n'));
    t.same(await rowsWhere("device_id = 'broken'"), [], 'nothing stored');
  });

  await t.test('one bad stream or entry: 400 naming it, the rest of the request stored', async (t) => {
    const rejectedBefore = await rejected();
    const proto = await post(protobufBody({
      streams: [
        { labels: '{host="mixed-1", job="a"', entries: [{ line: 'lost 1' }, { line: 'lost 2' }] },
        { labels: '{host="mixed-1", job="b", note="say \\"hi\\"\\n"}', entries: [{ line: 'kept 1' }, { timestamp: { seconds: 1, nanos: 0 }, line: 'kept 2' }] },
      ],
    }), 'application/x-protobuf');
    t.equal(proto.status, 400);
    t.match(proto.headers.get('content-type'), /^text\/plain/);
    t.equal(proto.text, '2 of 4 entries rejected; the other 2 are stored\n'
      + 'stream {host="mixed-1", job="a": malformed labels at offset 24: expected "," or "}" (2 entries refused)\n');
    const kept = await waitRows(2, "device_id = 'mixed-1'");
    t.same(kept.map((x) => [x.message, x.log_data.labels.note]), [['kept 1', 'say "hi"\n'], ['kept 2', 'say "hi"\n']], 'the valid stream stored, escapes read');

    const deep: Record<string, unknown> = {};
    let at = deep;
    for (let i = 0; i < 200; i++) at = (at.next = {}) as Record<string, unknown>;
    const json = await postJson({
      streams: [
        {
          stream: { host: 'mixed-2' },
          values: [
            ['1767225600000000000', 'ok 1'],
            [1767225600000000000, 'number timestamp'],
            ['1767225600000000000', { not: 'a line' }],
            ['1767225600000000000', 'nested metadata', { deep }],
            ['1767225600000000000', 'ok 2', { trace_id: 'x' }],
            ['4102444800000000000', 'outside the accepted window (2100)'],
          ],
        },
        { stream: { host: ['mixed-2'] }, values: [['1767225600000000000', 'label of the wrong type']] },
      ],
    });
    t.equal(json.status, 400);
    const lines = json.text.trimEnd().split('\n');
    t.equal(lines[0], '5 of 7 entries rejected; the other 2 are stored');
    t.match(lines[1], /^stream \{host="mixed-2"\} entry 1: the timestamp must be a string of Unix epoch nanoseconds, got a number$/);
    t.match(lines[2], /^stream \{host="mixed-2"\} entry 2: the line must be a string, got an object$/);
    t.match(lines[3], /^stream \{host="mixed-2"\} entry 3: structured metadata deep must be a string, got an object$/);
    t.match(lines[4], /^stream \{host="mixed-2"\} entry 5: /);
    t.match(lines[5], /^stream \{host=\["mixed-2"\]\}: label host must be a string, got an array \(1 entries refused\)$/);
    const rows = await waitRows(2, "device_id = 'mixed-2'");
    t.same(rows.map((x) => x.message), ['ok 1', 'ok 2']);
    t.equal(await rejected(), rejectedBefore + 7, 'the refused entries counted one by one');
  });

  await t.test('text PostgreSQL cannot hold, empty lines, no timestamp, no device', async (t) => {
    const before = Date.now();
    const res = await postJson({
      streams: [{
        stream: { host: 'text-1', odd: 'nul\u0000 and \ud800' },
        values: [['1767225600000000000', 'nul\u0000 lone \udc00 end', { k: 'v\u0000' }], ['0', ''], ['', 'no timestamp']],
      }],
    });
    t.equal(res.status, 204, res.text);
    const rows = await waitRows(3, "device_id = 'text-1'");
    t.equal(rows[0].message, 'nul\ufffd lone \ufffd end', 'NUL and an unpaired surrogate stored as U+FFFD');
    t.equal(rows[0].log_data.labels.odd, 'nul\ufffd and \ufffd');
    t.equal(rows[0].log_data.structured_metadata.k, 'v\ufffd');
    t.equal(rows[1].message, '-', 'an empty line is stored as "-"');
    for (const row of rows.slice(1)) t.ok(Date.parse(row.at) >= before - 1000 && Date.parse(row.at) <= Date.now() + 1000, 'no timestamp: the receive time');
    const nul = await post(protobufBody({ streams: [{ labels: '{host="text-2"}', entries: [{ line: 'proto\u0000nul' }] }] }), 'application/x-protobuf');
    t.equal(nul.status, 204);
    t.equal((await waitRows(1, "device_id = 'text-2'"))[0].message, 'proto\ufffdnul');
    const nodevice = await postJson({ streams: [{ stream: { app: 'nodevice' }, values: [['1767225600000000000', 'x']] }] });
    t.equal(nodevice.status, 204);
    t.equal((await waitRows(1, "log_data->'labels'->>'app' = 'nodevice'"))[0].device_id, 'unknown', 'no device label: loki.default_device_id');
  });

  await t.test('a full backlog: 503 + Retry-After, nothing stored; winston-loki retries and every entry lands once', async (t) => {
    await r.set(BACKLOG, 1_000_000_000);
    const raw = await postJson({ streams: [{ stream: { host: 'full-raw' }, values: [['1767225600000000000', 'raw']] }] });
    t.equal(raw.status, 503);
    t.equal(raw.headers.get('retry-after'), '1');
    t.match(raw.headers.get('content-type'), /^text\/plain/);
    t.match(raw.text, /backlog/);
    const proto = await post(protobufBody({ streams: [{ labels: '{host="full-raw"}', entries: [{ line: 'raw proto' }] }] }), 'application/x-protobuf');
    t.equal(proto.status, 503);
    t.equal(proto.headers.get('retry-after'), '1');

    const errors: unknown[] = [];
    const transport = new LokiTransport({
      host: logd.url, basicAuth: `user:${token}`, interval: 0.1, labels: { job: 'retry', host: 'full-winston' },
      gracefulShutdown: false, onConnectionError: (err: unknown) => errors.push(err),
    });
    const logger = winston.createLogger({ transports: [transport] });
    for (let i = 0; i < 25; i++) logger.info(`retry ${i}`);
    await waitFor('winston-loki to be refused', () => errors.length > 0);
    t.match(String(errors[0]), /503/, 'winston-loki got the 503');
    t.same(await rowsWhere("device_id IN ('full-raw', 'full-winston')"), [], 'nothing stored while the backlog is full');
    await r.decrby(BACKLOG, 1_000_000_000);
    // winston-loki keeps a refused batch and sends it again; close() sends what it holds
    await transport.close();
    t.equal((await postJson({ streams: [{ stream: { host: 'full-raw' }, values: [['1767225600000000000', 'raw']] }] })).status, 204, 'the raw retry');
    const rows = await waitRows(25, "device_id = 'full-winston'");
    t.same(rows.map((x) => x.message).sort(), Array.from({ length: 25 }, (_, i) => `retry ${i} {"level":"info"}`).sort(), 'every entry once');
    t.equal((await waitRows(1, "device_id = 'full-raw'")).length, 1, 'the raw retry stored once');
  });

  await t.test('GET /ready follows Redis; a push while Redis is down: 503', async (t) => {
    const ready = await request(`${logd.url}/ready`);
    t.equal(ready.status, 200);
    t.equal(ready.text, 'ready\n');
    t.match(ready.headers.get('content-type'), /^text\/plain/);
    await redis.stop();
    const notReady = await waitFor('/ready to answer 503', async () => { const x = await request(`${logd.url}/ready`); return x.status === 503 && x; });
    t.equal(notReady.headers.get('retry-after'), '1');
    const down = await postJson({ streams: [{ stream: { host: 'down-1' }, values: [['1767225600000000000', 'x']] }] });
    t.equal(down.status, 503, 'Redis down: 503');
    t.equal(down.headers.get('retry-after'), '1');
    await redis.start();
    await waitFor('/ready to answer 200', async () => (await request(`${logd.url}/ready`)).status === 200, 20_000);
    t.equal((await postJson({ streams: [{ stream: { host: 'down-1' }, values: [['1767225600000000000', 'x']] }] })).status, 204, 'then stored');
    t.equal((await waitRows(1, "device_id = 'down-1'")).length, 1, 'once');
  });
});
