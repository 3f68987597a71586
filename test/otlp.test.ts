/**
 * POST /v1/logs against a real logd: the OpenTelemetry JS SDK's OTLP/HTTP
 * exporters (JSON and protobuf, with and without gzip) stored as
 * docs/otlp.md maps them, the exporter's retry on 503 + Retry-After stored
 * once, and raw requests for every answer: partial success, google.rpc.Status
 * errors in the request's encoding, limits, nesting, text logd cannot store.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { context, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider, type LogRecordExporter } from '@opentelemetry/sdk-logs';
import Redis from 'ioredis';
import t from 'tap';
import { BadRequest, ErrorInfo, ExportLogsServiceRequest, ExportLogsServiceResponse, Status } from '../src/formats/otlp';
import { LOGD_BIN, serviceEnv, startStack } from './helpers/logd';
import { waitFor } from './helpers/services';

const execFileP = promisify(execFile);

type Obj = Record<string, unknown>;
const str = (key: string, v: string) => ({ key, value: { stringValue: v } });
const request = (records: Obj[], resource: Obj[] = []): Obj => ({ resourceLogs: [{ resource: { attributes: resource }, scopeLogs: [{ logRecords: records }] }] });

/** `levels` kvlists around a string, as OTLP/JSON text (JSON.stringify recurses too deep for 10,000). */
const deepJsonValue = (levels: number): string =>
  `${'{"kvlistValue":{"values":[{"key":"k","value":'.repeat(levels)}{"stringValue":"x"}${'}]}}'.repeat(levels)}`;

interface DecodedStatus { code: number; message: string; details: { typeUrl: string; value: Uint8Array }[] }

t.test('POST /v1/logs', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1, env: { LOGD_AUTH_MODE: 'token' } });
  const cli = async (...args: string[]): Promise<string> =>
    (await execFileP(process.execPath, [LOGD_BIN, ...args], { env: { ...process.env, ...serviceEnv(redis, pg) } })).stdout.trim();
  const token = await cli('token', 'create', '--name', 'otel', '--scope', 'ingest');
  const admin = await cli('token', 'create', '--name', 'test', '--scope', 'admin');
  const reader = await cli('token', 'create', '--name', 'reader', '--scope', 'read');
  const url = `${logd.url}/v1/logs`;
  const auth = { authorization: `Bearer ${token}` };
  const metric = async (series: string): Promise<number> => {
    const text = await (await fetch(`${logd.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
  const rowsOf = (device: string) => pg.query<Record<string, any>>(
    'SELECT device_id, log_level, message, log_data, created_at, extract(microseconds FROM created_at)::int % 1000000 AS us FROM logs WHERE device_id = $1 ORDER BY id', [device]);
  const countOf = async (device: string) => Number((await pg.query<{ n: string }>('SELECT count(*) AS n FROM logs WHERE device_id = $1', [device]))[0].n);
  const waitCount = (device: string, n: number, ms = 20_000) => waitFor(`${n} rows of ${device}`, async () => (await countOf(device)) >= n, ms);
  const post = (body: string | Uint8Array, type: string, headers: Record<string, string> = {}) =>
    fetch(url, { method: 'POST', headers: { 'content-type': type, ...auth, ...headers }, body });
  const postJson = (body: unknown, headers?: Record<string, string>) => post(typeof body === 'string' ? body : JSON.stringify(body), 'application/json', headers);
  const postProto = (body: Obj | Uint8Array, headers?: Record<string, string>) =>
    post(body instanceof Uint8Array ? body : ExportLogsServiceRequest.encode(body).finish(), 'application/x-protobuf', headers);
  const protoStatus = async (res: Response): Promise<DecodedStatus & { reason: string; violation?: Obj }> => {
    const s = Status.decode(new Uint8Array(await res.arrayBuffer())) as unknown as DecodedStatus;
    const info = s.details.find((d) => d.typeUrl.endsWith('ErrorInfo'));
    const bad = s.details.find((d) => d.typeUrl.endsWith('BadRequest'));
    return {
      ...s,
      reason: info ? (ErrorInfo.decode(info.value) as unknown as { reason: string }).reason : '',
      violation: bad ? (BadRequest.decode(bad.value) as unknown as { fieldViolations: Obj[] }).fieldViolations[0] : undefined,
    };
  };

  await t.test('the OpenTelemetry JS SDK: JSON and protobuf, with and without gzip', async (t) => {
    const traceId = '5b8efff798038103d269b633813fc60c';
    const spanId = 'eee19b7ec3c1b174';
    const ctx = trace.setSpanContext(context.active(), { traceId, spanId, traceFlags: 1 });
    const exporters: [string, LogRecordExporter][] = [
      ['otel-json', new JsonExporter({ url, headers: auth })],
      ['otel-json-gzip', new JsonExporter({ url, headers: auth, compression: 'gzip' as never })],
      ['otel-proto', new ProtoExporter({ url, headers: auth })],
      ['otel-proto-gzip', new ProtoExporter({ url, headers: auth, compression: 'gzip' as never })],
    ];
    const levels: [SeverityNumber, string][] = [
      [SeverityNumber.DEBUG, 'DEBUG'], [SeverityNumber.INFO2, 'INFO'], [SeverityNumber.WARN, 'WARNING'], [SeverityNumber.ERROR4, 'ERROR'], [SeverityNumber.FATAL, 'CRITICAL'],
    ];
    const N = 50;
    for (const [device, exporter] of exporters) {
      const provider = new LoggerProvider({
        resource: resourceFromAttributes({ 'host.name': device, 'service.name': 'checkout' }),
        processors: [new BatchLogRecordProcessor({ exporter })],
      });
      const logger = provider.getLogger('shop.orders', '2.1.0');
      for (let i = 0; i < N; i++) {
        logger.emit({
          timestamp: [1_767_225_600 + i, 123_456_789], severityNumber: levels[i % 5][0], severityText: `sev${i}`,
          body: i === 0 ? { order: 7, items: ['a'] } : `order ${i} placed`, attributes: { 'order.id': i, 'user.vip': i % 2 === 0 }, context: ctx,
        });
      }
      await provider.forceFlush();
      await waitCount(device, N);
      const rows = await rowsOf(device);
      t.equal(rows.length, N, `${device}: every record once`);
      t.same(rows.map((r) => r.log_level), rows.map((_, i) => levels[i % 5][1]), `${device}: levels`);
      t.same(rows.map((r) => r.message), rows.map((_, i) => (i === 0 ? '{"order":7,"items":["a"]}' : `order ${i} placed`)), `${device}: messages`);
      t.same(rows.map((r) => [new Date(r.created_at).toISOString(), r.us]), rows.map((_, i) => [new Date((1_767_225_600 + i) * 1000 + 123).toISOString(), 123_456]),
        `${device}: timestamps to the microsecond`);
      t.same(rows[3].log_data, {
        attributes: { 'order.id': 3, 'user.vip': false },
        resource: { 'host.name': device, 'service.name': 'checkout' },
        scope: { name: 'shop.orders', version: '2.1.0' },
        trace_id: traceId, span_id: spanId, flags: 1, severity_text: 'sev3', severity_number: SeverityNumber.ERROR4,
      }, `${device}: log_data`);
      await provider.shutdown();
    }
    t.equal(await metric('logd_protocol_records_total{protocol="otlp",outcome="stored"}'), 4 * N);
  });

  await t.test('a full backlog: 503 + Retry-After, nothing stored; the exporter\'s retry stores each record once', async (t) => {
    const r = new Redis(redis.url);
    let full = true;
    t.teardown(async () => {
      if (full) await r.decrby('logs:stream:backlog', 1_000_000_000);
      r.disconnect();
    });
    await r.incrby('logs:stream:backlog', 1_000_000_000);
    const raw = request([{ body: { stringValue: 'raw retry' } }], [str('host.name', 'full-raw')]);
    const refusedProto = await postProto(raw);
    t.equal(refusedProto.status, 503);
    t.equal(refusedProto.headers.get('retry-after'), '1');
    t.equal(refusedProto.headers.get('content-type'), 'application/x-protobuf');
    t.match(await protoStatus(refusedProto), { code: 14, reason: 'LOGD_BACKLOG_FULL' }, 'a protobuf Status, UNAVAILABLE');
    const refusedJson = await postJson(raw);
    t.equal(refusedJson.status, 503);
    t.equal(refusedJson.headers.get('retry-after'), '1');
    t.match(await refusedJson.json(), { code: 14, message: /backlog/, details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'LOGD_BACKLOG_FULL', domain: 'logd' }] });

    const provider = new LoggerProvider({
      resource: resourceFromAttributes({ 'host.name': 'otel-retry' }),
      processors: [new BatchLogRecordProcessor({ exporter: new ProtoExporter({ url, headers: auth }) })],
    });
    for (let i = 0; i < 20; i++) provider.getLogger('retry').emit({ body: `retry ${i}` });
    const refusedBefore = await metric('logd_logs_refused_total{reason="backlog"}');
    const flushed = provider.forceFlush();
    await waitFor('the exporter refused', async () => (await metric('logd_logs_refused_total{reason="backlog"}')) >= refusedBefore + 20);
    t.equal(await countOf('otel-retry'), 0, 'nothing stored while the backlog is full');
    t.equal(await countOf('full-raw'), 0);
    await r.decrby('logs:stream:backlog', 1_000_000_000);
    full = false;
    await flushed;
    await waitCount('otel-retry', 20);
    t.same((await rowsOf('otel-retry')).map((x) => x.message), Array.from({ length: 20 }, (_, i) => `retry ${i}`), 'then every record, once');
    await provider.shutdown();
    t.equal((await postProto(raw)).status, 200, 'the raw retry');
    await waitCount('full-raw', 1);
    t.equal(await countOf('full-raw'), 1, 'stored once');
  });

  await t.test('partial success: rejected records counted and named, the others stored', async (t) => {
    const deep = JSON.parse(`{"k":${deepJsonValue(33)}}`).k;
    const res = await postJson(request([
      { body: { stringValue: 'kept json' } },
      { body: { stringValue: 'bad time' }, timeUnixNano: true },
      { body: { stringValue: 'too deep' }, attributes: [{ key: 'deep', value: deep }] },
      { body: { stringValue: 'future' }, timeUnixNano: '4102444800000000000' },
    ], [str('host.name', 'partial-json')]));
    t.equal(res.status, 200);
    const body = (await res.json()) as { partialSuccess: { rejectedLogRecords: string; errorMessage: string } };
    t.equal(body.partialSuccess.rejectedLogRecords, '3');
    t.match(body.partialSuccess.errorMessage, /^3 of 4 log records rejected: resourceLogs\[0\]\.scopeLogs\[0\]\.logRecords\[1\]: log record: timeUnixNano must be an integer/);
    t.match(body.partialSuccess.errorMessage, /logRecords\[2\]: attributes: nests deeper than 32 levels; .*logRecords\[3\]: Timestamp should be inside the accepted window/);
    await waitCount('partial-json', 1);
    t.same((await rowsOf('partial-json')).map((r) => r.message), ['kept json']);

    const pb = await postProto(request([
      { body: { stringValue: 'kept proto' } },
      { body: { stringValue: 'future' }, timeUnixNano: '4102444800000000000' },
    ], [str('host.name', 'partial-proto')]));
    t.equal(pb.status, 200);
    t.equal(pb.headers.get('content-type'), 'application/x-protobuf');
    const answer = ExportLogsServiceResponse.decode(new Uint8Array(await pb.arrayBuffer())) as unknown as { partialSuccess: { rejectedLogRecords: { toNumber(): number }; errorMessage: string } };
    t.equal(answer.partialSuccess.rejectedLogRecords.toNumber(), 1);
    t.match(answer.partialSuccess.errorMessage, /logRecords\[1\]: Timestamp should be inside the accepted window/);
    await waitCount('partial-proto', 1);
    t.equal(await countOf('partial-proto'), 1);
    t.ok(await metric('logd_protocol_records_total{protocol="otlp",outcome="rejected"}') >= 4);

    const all = await postProto(request([{ body: { stringValue: 'fine' } }], [str('host.name', 'full-success')]));
    t.equal(all.status, 200);
    t.equal((await all.arrayBuffer()).byteLength, 0, 'all stored: an empty ExportLogsServiceResponse');
    const allJson = await postJson(request([{ body: { stringValue: 'fine' } }], [str('host.name', 'full-success')]));
    t.equal(await allJson.text(), '{}');
  });

  await t.test('10,000 levels of nesting: that record rejected, the other stored, never a 5xx', async (t) => {
    const text = `{"resourceLogs":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"deep-json"}}]},"scopeLogs":[{"logRecords":[`
      + `{"attributes":[{"key":"deep","value":${deepJsonValue(10_000)}}]},{"body":{"stringValue":"beside"}}]}]}]}`;
    const res = await postJson(text);
    t.equal(res.status, 200);
    t.equal(((await res.json()) as { partialSuccess: { rejectedLogRecords: string } }).partialSuccess.rejectedLogRecords, '1');
    await waitCount('deep-json', 1);
    t.same((await rowsOf('deep-json')).map((r) => r.message), ['beside']);
  });

  await t.test('NUL, unpaired surrogates; no body, no time', async (t) => {
    const before = Date.now();
    const text = '{"resourceLogs":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"odd-\\u0000"}}]},"scopeLogs":[{"logRecords":['
      + '{"body":{"stringValue":"a\\u0000b\\ud800c"},"attributes":[{"key":"k\\udc00","value":{"stringValue":"v\\u0000"}}]},{}]}]}]}';
    const res = await postJson(text);
    t.equal(res.status, 200, await res.text());
    await waitCount('odd-\uFFFD', 2);
    const rows = await rowsOf('odd-\uFFFD');
    t.equal(rows[0].message, 'a\uFFFDb\uFFFDc');
    t.same(rows[0].log_data.attributes, { 'k\uFFFD': 'v\uFFFD' });
    t.equal(rows[1].message, '-', 'no body: "-"');
    t.equal(rows[1].log_level, 'INFO');
    const at = new Date(rows[1].created_at).getTime();
    t.ok(at >= before - 1 && at <= Date.now(), 'no time: the receive time');
    const nameless = await postJson(request([{ body: { stringValue: 'who am i' }, attributes: [{ key: 'host.name', value: { intValue: 1 } }] }]));
    t.equal(nameless.status, 200);
    await waitFor('the nameless record', async () => (await pg.query("SELECT 1 FROM logs WHERE message = 'who am i' AND device_id = 'unknown'")).length === 1);
  });

  await t.test('100,000 records in one protobuf request', async (t) => {
    const records = Array.from({ length: 100_000 }, (_, i) => ({ timeUnixNano: `${1_767_225_600_000_000_000n + BigInt(i) * 1000n}`, severityNumber: 9, body: { stringValue: `bulk ${i}` } }));
    const body = ExportLogsServiceRequest.encode(request(records, [str('host.name', 'bulk')])).finish();
    t.ok(body.length < 50 * 1024 * 1024);
    const res = await postProto(body);
    t.equal(res.status, 200);
    t.equal((await res.arrayBuffer()).byteLength, 0);
    await waitCount('bulk', 100_000, 40_000);
    t.equal(await countOf('bulk'), 100_000, 'every record, once');
  });

  await t.test('errors as google.rpc.Status in the request\'s encoding', async (t) => {
    const good = ExportLogsServiceRequest.encode(request([{ body: { stringValue: 'hello' } }], [str('host.name', 'never')])).finish();
    const truncated = await postProto(good.subarray(0, good.length - 3));
    t.equal(truncated.status, 400);
    t.equal(truncated.headers.get('content-type'), 'application/x-protobuf');
    t.match(await protoStatus(truncated), {
      code: 3, message: /^the body is not an ExportLogsServiceRequest: index out of range/, reason: 'LOGD_INVALID_PROTOBUF', violation: { description: /index out of range/ },
    }, 'truncated protobuf: 400, a Status protobufjs decodes');

    const shape = await postJson({ resourceLogs: [{ scopeLogs: 'x' }] });
    t.equal(shape.status, 400);
    t.same(await shape.json(), {
      code: 3, message: 'resourceLogs[0]: scopeLogs must be an array',
      details: [
        { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'resourceLogs[0]', description: 'scopeLogs must be an array' }] },
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'LOGD_BAD_REQUEST', domain: 'logd' },
      ],
    }, 'JSON of the wrong shape: 400 naming where');
    const notJson = await postJson('{"resourceLogs":');
    t.equal(notJson.status, 400);
    t.match(await notJson.json(), { code: 3, message: /^request body is not valid JSON/, details: [{}, { reason: 'LOGD_INVALID_JSON' }] });
    const notUtf8 = await post(Buffer.from([0x7b, 0xff, 0x7d]), 'application/json');
    t.match(await notUtf8.json(), { code: 3, details: [{}, { reason: 'LOGD_INVALID_UTF8' }] });

    const media = await post('x', 'text/plain');
    t.equal(media.status, 415);
    t.equal(media.headers.get('content-type'), 'application/json');
    t.match(await media.json(), { code: 3, message: 'content-type must be application/x-protobuf or application/json, got "text/plain"', details: [{ reason: 'LOGD_UNSUPPORTED_MEDIA_TYPE' }] });

    const bomb = gzipSync(Buffer.alloc(51 * 1024 * 1024));
    const large = await postProto(bomb, { 'content-encoding': 'gzip' });
    t.equal(large.status, 413);
    t.match(await protoStatus(large), { code: 3, message: /exceeds the limit of 52428800 bytes/, reason: 'LOGD_BODY_TOO_LARGE' }, 'too large after inflating: 413');
    const badGzip = await postProto(Buffer.from('not gzip'), { 'content-encoding': 'gzip' });
    t.equal(badGzip.status, 400);
    t.match(await protoStatus(badGzip), { reason: 'LOGD_INVALID_ENCODING' });
    const gzipped = await post(gzipSync(JSON.stringify(request([{ body: { stringValue: 'zipped' } }], [str('host.name', 'raw-gzip')]))), 'application/json', { 'content-encoding': 'gzip' });
    t.equal(gzipped.status, 200, 'a gzip body');
    await waitCount('raw-gzip', 1);

    const noToken = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: good });
    t.equal(noToken.status, 401);
    t.match(await noToken.json(), { code: 16, details: [{ reason: 'LOGD_UNAUTHORIZED' }] }, 'no token: 401 as a Status');
    const wrongScope = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${reader}` }, body: '{}' });
    t.equal(wrongScope.status, 403);
    t.match(await wrongScope.json(), { code: 7, details: [{ reason: 'LOGD_FORBIDDEN' }] }, 'another scope: 403 as a Status');
    t.equal(await countOf('never'), 0);
  });
});
