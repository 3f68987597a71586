/** OTLP logs (src/formats/otlp.ts): protobuf and OTLP/JSON requests as Drafts, per-record rejections, structure errors. */
import { Writer } from 'protobufjs/light';
import t, { type Test } from 'tap';
import { decodeJson, decodeProtobuf, ExportLogsServiceRequest, type Decoded } from '../src/formats/otlp';
import { admit, type Draft } from '../src/model/entry';
import type { AcceptWindow } from '../src/storage/layout';

const KEYS = ['host.name', 'service.instance.id', 'service.name'];
const OPEN: AcceptWindow = { refuses: () => undefined };

type Obj = Record<string, unknown>;
const str = (key: string, v: string) => ({ key, value: { stringValue: v } });
const request = (records: Obj[], resource: Obj[] = [], scope?: Obj): Obj => ({
  resourceLogs: [{ resource: { attributes: resource }, scopeLogs: [{ scope, logRecords: records }] }],
});
const pb = (req: Obj, keys = KEYS): Decoded => decodeProtobuf(ExportLogsServiceRequest.encode(req).finish(), keys);
const json = (req: unknown, keys = KEYS): Decoded => decodeJson(JSON.parse(JSON.stringify(req)), keys);
/** Each record's Draft (or rejection) from both encodings, which must agree. */
function both(t: Test, req: Obj, keys = KEYS): (Draft | string)[] {
  const a = pb(req, keys).records;
  t.same(json(req, keys).records, a, 'JSON decodes as protobuf does');
  return a;
}
const one = (t: Test, record: Obj, resource: Obj[] = []): Draft | string => both(t, request([record], resource))[0];

/** Nests `value` in `levels` kvlists. */
function nested(levels: number, value: Obj = { stringValue: 'x' }): Obj {
  let v = value;
  for (let i = 0; i < levels; i++) v = { kvlistValue: { values: [{ key: 'k', value: v }] } };
  return v;
}

/** `levels` kvlists around a string, as OTLP/JSON text (JSON.stringify recurses too deep for 10,000). */
const deepJsonValue = (levels: number): string =>
  `${'{"kvlistValue":{"values":[{"key":"k","value":'.repeat(levels)}{"stringValue":"x"}${'}]}}'.repeat(levels)}`;

/** Protobuf field `no` of wire type 2 (length-delimited) holding `size` bytes: its tag and length. */
const lengthPrefix = (no: number, size: number): Uint8Array => Writer.create().uint32((no << 3) | 2).uint32(size).finish();

/**
 * A request of one record whose attribute "deep" nests `levels` kvlists, written by hand (protobufjs' encoder
 * recurses too deep for 10,000): every message here is its fields' prefixes then the one nested message.
 */
function deepRequest(levels: number): Buffer {
  const inner = ExportLogsServiceRequest.lookupType('AnyValue').encode({ stringValue: 'x' }).finish();
  const prefixes: Uint8Array[] = [];
  let size = inner.length;
  const wrap = (no: number, before: Uint8Array = new Uint8Array(0)): void => {
    const p = Buffer.concat([before, lengthPrefix(no, size)]);
    prefixes.push(p);
    size += p.length;
  };
  const key = (k: string): Uint8Array => Buffer.concat([lengthPrefix(1, k.length), Buffer.from(k)]);
  for (let i = 0; i < levels; i++) {
    wrap(2, key('k')); // KeyValue.value
    wrap(1); // KeyValueList.values
    wrap(6); // AnyValue.kvlistValue
  }
  wrap(2, key('deep')); // KeyValue.value
  wrap(6); // LogRecord.attributes
  wrap(2); // ScopeLogs.logRecords
  wrap(2); // ResourceLogs.scopeLogs
  wrap(1); // ExportLogsServiceRequest.resourceLogs
  return Buffer.concat([...prefixes.reverse(), inner]);
}

t.test('every field of a record', async (t) => {
  const record = {
    timeUnixNano: '1767225600123456789', observedTimeUnixNano: '1767225601000000000',
    severityNumber: 17, severityText: 'ERROR', eventName: 'app.crash', flags: 1,
    body: { stringValue: 'disk full' },
    attributes: [str('code.function', 'write'), { key: 'retries', value: { intValue: '3' } }, { key: 'ok', value: { boolValue: false } },
      { key: 'ratio', value: { doubleValue: 0.5 } }, { key: 'tags', value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: 7 }] } } },
      { key: 'ctx', value: { kvlistValue: { values: [str('user', 'u1')] } } }, { key: 'raw', value: { bytesValue: Buffer.from([0, 255, 1]).toString('base64') } },
      { key: 'empty', value: {} }, { key: 'none' }],
  };
  const pbRecord = { ...record, traceId: Buffer.from('5b8efff798038103d269b633813fc60c', 'hex'), spanId: Buffer.from('eee19b7ec3c1b174', 'hex') };
  pbRecord.attributes = pbRecord.attributes.map((a): Obj => (a.key === 'raw' ? { key: 'raw', value: { bytesValue: Buffer.from([0, 255, 1]) } } : a)) as typeof record.attributes;
  const expected = {
    device_id: 'web-1', log_level: 'ERROR', message: 'disk full', time: { iso: '2026-01-01T00:00:00.123456Z', hour: 490896, ms: 1767225600123 },
    data: {
      attributes: { 'code.function': 'write', retries: 3, ok: false, ratio: 0.5, tags: ['a', 7], ctx: { user: 'u1' }, raw: 'AP8B', empty: null, none: null },
      resource: { 'host.name': 'web-1', 'service.name': 'api' },
      scope: { name: 'my.lib', version: '1.2', attributes: { 'lib.kind': 'http' } },
      trace_id: '5b8efff798038103d269b633813fc60c', span_id: 'eee19b7ec3c1b174', flags: 1,
      severity_text: 'ERROR', severity_number: 17, event_name: 'app.crash',
    },
    boundedDepth: true,
  };
  const resource = [str('host.name', 'web-1'), str('service.name', 'api')];
  const scope = { name: 'my.lib', version: '1.2', attributes: [str('lib.kind', 'http')] };
  t.same(pb(request([pbRecord], resource, scope)).records, [expected], 'protobuf');
  const jsonRecord = { ...record, traceId: '5B8EFFF798038103D269B633813FC60C', spanId: 'eee19b7ec3c1b174' };
  t.same(json(request([jsonRecord], resource, scope)).records, [expected], 'OTLP/JSON, ids in hex of either case');
  const snake = {
    resource_logs: [{
      resource: { attributes: resource },
      scope_logs: [{
        scope,
        log_records: [{
          time_unix_nano: 1767225600123456789n.toString(), observed_time_unix_nano: '0', severity_number: 'SEVERITY_NUMBER_ERROR', severity_text: 'ERROR',
          event_name: 'app.crash', flags: '1', body: { string_value: 'disk full' }, trace_id: '5b8efff798038103d269b633813fc60c', span_id: 'eee19b7ec3c1b174',
          attributes: [{ key: 'code.function', value: { string_value: 'write' } }, { key: 'retries', value: { int_value: 3 } }, { key: 'ok', value: { bool_value: false } },
            { key: 'ratio', value: { double_value: '0.5' } }, { key: 'tags', value: { array_value: { values: [{ string_value: 'a' }, { int_value: '7' }] } } },
            { key: 'ctx', value: { kvlist_value: { values: [{ key: 'user', value: { string_value: 'u1' } }] } } }, { key: 'raw', value: { bytes_value: 'AP8B' } },
            { key: 'empty', value: {} }, { key: 'none', value: null }],
          unknownField: { ignored: true },
        }],
      }],
    }],
  };
  t.same(json(snake).records, [expected], 'proto field names, an enum by name, int64 as numbers or text, null as absent, unknown fields ignored');
});

t.test('message: a string body as it is, others JSON-encoded, none empty', async (t) => {
  const bodies: [Obj | undefined, string][] = [
    [{ stringValue: 'a\nb' }, 'a\nb'], [{ intValue: 5 }, '5'], [{ boolValue: true }, 'true'], [{ doubleValue: 1.25 }, '1.25'],
    [{ kvlistValue: { values: [str('a', 'b')] } }, '{"a":"b"}'], [{ arrayValue: { values: [{ intValue: 1 }, { stringValue: 'x' }] } }, '[1,"x"]'],
    [{ bytesValue: Buffer.from('hi').toString('base64') }, 'aGk='], [{ intValue: '9223372036854775807' }, '9223372036854775807'], [{}, ''], [undefined, ''],
  ];
  for (const [body, message] of bodies) {
    const req = request([{ body }]);
    const draft = json(req).records[0] as Draft;
    t.equal(draft.message, message, JSON.stringify(body));
    const pbBody = body?.bytesValue ? { bytesValue: Buffer.from('hi') } : body;
    t.equal((pb(request([{ body: pbBody }])).records[0] as Draft).message, message, `protobuf ${JSON.stringify(body)}`);
  }
});

t.test('time: timeUnixNano, else observedTimeUnixNano, else none (receive time)', async (t) => {
  const time = (r: Obj) => (one(t, r) as Draft).time;
  t.same(time({ timeUnixNano: '1700000000000001999', observedTimeUnixNano: '1800000000000000000' }),
    { iso: '2023-11-14T22:13:20.000001Z', hour: 472222, ms: 1700000000000 }, 'to the microsecond, the rest cut');
  t.same(time({ timeUnixNano: '0', observedTimeUnixNano: '1700000000000000000' }), { iso: '2023-11-14T22:13:20.000000Z', hour: 472222, ms: 1700000000000 }, '0 is unset');
  t.same(time({ observedTimeUnixNano: '1700000000000000000' }), { iso: '2023-11-14T22:13:20.000000Z', hour: 472222, ms: 1700000000000 });
  t.equal(time({}), undefined, 'neither');
  t.equal(time({ timeUnixNano: '0', observedTimeUnixNano: '0' }), undefined);
  t.same(time({ timeUnixNano: '18446744073709551615' }), { iso: '2554-07-21T23:34:33.709551Z', hour: 5124095, ms: 18446744073709 },
    'the largest fixed64 (admit() checks it against the accepted window)');
  t.same((json(request([{ timeUnixNano: 1700000000000000000 }])).records[0] as Draft).time, { iso: '2023-11-14T22:13:20.000000Z', hour: 472222, ms: 1700000000000 },
    'JSON: a number too');
});

t.test('level: severityNumber ranges at their boundaries, else severityText, else INFO', async (t) => {
  const cases: [number, string, string][] = [
    [0, '', 'INFO'], [1, '', 'DEBUG'], [8, '', 'DEBUG'], [9, '', 'INFO'], [12, '', 'INFO'], [13, '', 'WARNING'], [16, '', 'WARNING'],
    [17, '', 'ERROR'], [20, '', 'ERROR'], [21, '', 'CRITICAL'], [24, '', 'CRITICAL'], [25, '', 'INFO'],
    [0, 'warn', 'WARNING'], [25, 'Error', 'ERROR'], [-1, 'fatal', 'CRITICAL'], [0, 'nonsense', 'INFO'], [9, 'ERROR', 'INFO'],
  ];
  for (const [severityNumber, severityText, level] of cases) {
    t.equal((one(t, { severityNumber, severityText }) as Draft).log_level, level, `${severityNumber} "${severityText}"`);
  }
});

t.test('device: the first key with a string value, in the record, then in the resource', async (t) => {
  const device = (attributes: Obj[], resource: Obj[], keys = KEYS) => (both(t, request([{ attributes }], resource), keys)[0] as Draft).device_id;
  t.equal(device([str('service.name', 'rec-svc')], [str('host.name', 'res-host')]), 'rec-svc', 'the record before the resource');
  t.equal(device([], [str('service.name', 'svc'), str('host.name', 'host')]), 'host', 'in the order of the keys');
  t.equal(device([{ key: 'host.name', value: { intValue: 5 } }, str('host.name', '')], [str('service.instance.id', 'i-1')]), 'i-1', 'not a string or empty: not a device');
  t.equal(device([], []), '', 'none');
  t.equal(device([str('pod', 'p-1')], [], ['pod']), 'p-1', 'the keys given');
});

t.test('values at their edges', async (t) => {
  const attr = (value: Obj, pbValue = value) => {
    const a = (pb(request([{ attributes: [{ key: 'v', value: pbValue }] }])).records[0] as Draft).data.attributes as Obj;
    t.same((json(request([{ attributes: [{ key: 'v', value }] }])).records[0] as Draft).data.attributes, a, `${JSON.stringify(value)} in JSON`);
    return a.v;
  };
  t.equal(attr({ intValue: '9223372036854775807' }), '9223372036854775807', 'int64 max: text');
  t.equal(attr({ intValue: '-9223372036854775808' }), '-9223372036854775808', 'int64 min: text');
  t.equal(attr({ intValue: '9007199254740991' }), 9007199254740991, 'the largest safe integer: a number');
  t.equal(attr({ intValue: '9007199254740992' }), '9007199254740992', 'one more: text');
  t.equal(attr({ intValue: '-9007199254740991' }), -9007199254740991);
  t.equal(attr({ intValue: '-9007199254740992' }), '-9007199254740992');
  t.equal(attr({ intValue: '0' }), 0);
  t.equal(attr({ doubleValue: 'NaN' }, { doubleValue: NaN }), 'NaN');
  t.equal(attr({ doubleValue: '-Infinity' }, { doubleValue: -Infinity }), '-Infinity');
  t.equal(attr({ bytesValue: '' }, { bytesValue: Buffer.alloc(0) }), '', 'empty bytes');
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  t.equal(attr({ bytesValue: all.toString('base64') }, { bytesValue: all }), all.toString('base64'), 'every byte value, base64');
  t.same(attr({ kvlistValue: { values: [str('__proto__', 'p')] } }), JSON.parse('{"__proto__":"p"}'), '"__proto__" is a key like any');
  const ids = (traceId: string, spanId: string) => {
    const d = pb(request([{ traceId: Buffer.from(traceId, 'hex'), spanId: Buffer.from(spanId, 'hex') }])).records[0] as Draft;
    t.same((json(request([{ traceId, spanId }])).records[0] as Draft).data, d.data);
    return [d.data.trace_id, d.data.span_id];
  };
  t.same(ids('00000000000000000000000000000000', '0000000000000000'), [undefined, undefined], 'all-zero ids: none');
  t.same(ids('0102', '0102030405060708090a'), [undefined, undefined], 'wrong lengths: none');
  t.same(ids('000000000000000000000000000000ff', '00000000000000ff'), ['000000000000000000000000000000ff', '00000000000000ff']);
});

t.test('nesting: log_data may nest 32 levels; deeper rejects the record, however deep', async (t) => {
  const verdict = (levels: number) => both(t, request([{ attributes: [{ key: 'deep', value: nested(levels) }] }, { body: { stringValue: 'ok' } }]));
  const ok = verdict(30);
  t.type(admit(ok[0] as Draft, OPEN, 'x'), 'object', 'log_data > attributes > 30 kvlists: 32 levels, stored');
  t.equal(verdict(31)[0], 'attributes: nests deeper than 32 levels', 'one more: rejected');
  t.equal((verdict(31)[1] as Draft).message, 'ok', 'the other record is kept');
  const deepJson = decodeJson(JSON.parse(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"deep","value":${deepJsonValue(10_000)}}]},`
    + '{"body":{"stringValue":"ok"}}]}]}]}'), KEYS);
  t.equal(deepJson.records[0], 'attributes: nests deeper than 32 levels', 'JSON: 10,000 levels, rejected');
  t.equal((deepJson.records[1] as Draft).message, 'ok');
  t.equal(json(request([{ body: nested(33) }])).records[0], 'body: nests deeper than 32 levels', 'a body too');
  t.equal(json(request([{}], [{ key: 'deep', value: nested(31) }])).records[0], 'resource: nests deeper than 32 levels', 'resource attributes reject its records');
  t.same(decodeProtobuf(deepRequest(10_000), KEYS).records, ['log record: not valid protobuf (maximum nesting depth exceeded)'],
    'protobuf: 10,000 levels, the record rejected (protobufjs decodes 100 nested messages at most)');
  t.same(decodeProtobuf(deepRequest(33), KEYS).records, ['log record: not valid protobuf (maximum nesting depth exceeded)'], '33 levels too');
});

t.test('protobuf that does not decode', async (t) => {
  const body = ExportLogsServiceRequest.encode(request([{ body: { stringValue: 'hello' } }])).finish();
  t.throws(() => decodeProtobuf(body.subarray(0, body.length - 3), KEYS), { name: 'OtlpInvalid', message: /^the body is not an ExportLogsServiceRequest: index out of range/ }, 'truncated');
  t.throws(() => decodeProtobuf(Buffer.from('{"resourceLogs":[]}'), KEYS), { name: 'OtlpInvalid' }, 'JSON sent as protobuf');
  t.same(decodeProtobuf(Buffer.alloc(0), KEYS).records, [], 'empty: no records');
  const valid = ExportLogsServiceRequest.lookupType('LogRecord').encode({ body: { stringValue: 'kept' } }).finish();
  const garbage = Buffer.from([0x2a, 0x05, 0x0a, 0x09, 0x41]); // body: an AnyValue whose string claims 9 bytes of 3
  const scopeLogs = Buffer.concat([lengthPrefix(2, garbage.length), garbage, lengthPrefix(2, valid.length), valid]);
  const resourceLogs = Buffer.concat([lengthPrefix(2, scopeLogs.length), scopeLogs]);
  const d = decodeProtobuf(Buffer.concat([lengthPrefix(1, resourceLogs.length), resourceLogs]), KEYS);
  t.same(d.records.map((r) => (typeof r === 'string' ? r : r.message)), ['log record: not valid protobuf (index out of range)', 'kept'],
    'a record that does not decode is rejected alone');
});

t.test('OTLP/JSON with wrong types', async (t) => {
  t.throws(() => decodeJson([], KEYS), { name: 'OtlpInvalid', message: 'the body must be a JSON object (an ExportLogsServiceRequest)' });
  t.throws(() => decodeJson({ resourceLogs: {} }, KEYS), { message: 'resourceLogs must be an array', field: '' });
  t.throws(() => decodeJson({ resourceLogs: [1] }, KEYS), { message: 'resourceLogs[0]: must be an object', field: 'resourceLogs[0]' });
  t.throws(() => decodeJson({ resourceLogs: [{ scopeLogs: [{}, { logRecords: 'x' }] }] }, KEYS), { message: 'resourceLogs[0].scopeLogs[1]: logRecords must be an array' });
  t.same(decodeJson({}, KEYS).records, [], 'no resourceLogs: no records');
  const d = json({
    resourceLogs: [
      { resource: { attributes: [str('host.name', 'h')] }, scopeLogs: [{ logRecords: [
        { timeUnixNano: true }, { severityNumber: 'LOUD' }, { severityText: 3 }, 'x', { body: 'text' }, { attributes: [{ key: 'a', value: { boolValue: 'yes' } }] },
        { traceId: 7 }, { flags: -1 }, { attributes: [{ key: 'a', value: { intValue: '1.5' } }] }, { body: { stringValue: 'fine' }, traceId: 'not hex' },
      ] }] },
      { resource: { attributes: 'x' }, scopeLogs: [{ logRecords: [{}, {}] }] },
      { scopeLogs: [{ scope: { name: 1 }, logRecords: [{}] }] },
    ],
  });
  t.same(d.records.slice(0, 9), [
    'log record: timeUnixNano must be an integer from 0 to 18446744073709551615, got true',
    'log record: severityNumber must be an integer from -2147483648 to 2147483647, got "LOUD"',
    'log record: severityText must be a string',
    'a log record must be an object',
    'body: an AnyValue must be an object, got "text"',
    'attributes: boolValue must be true or false, got "yes"',
    'log record: traceId must be a string',
    'log record: flags must be an integer from 0 to 4294967295, got -1',
    'attributes: intValue must be an integer from -9223372036854775808 to 9223372036854775807, got "1.5"',
  ], 'each wrong record rejected with its reason');
  t.same(d.records[9], { device_id: 'h', log_level: 'INFO', message: 'fine', data: { resource: { 'host.name': 'h' } }, boundedDepth: true }, 'the valid one kept; an invalid traceId is no trace');
  t.same(d.records.slice(10), ['resource: attributes must be an array', 'resource: attributes must be an array', 'scope: name must be a string'],
    'a wrong resource or scope rejects its records');
  t.equal(d.where(0), 'resourceLogs[0].scopeLogs[0].logRecords[0]');
  t.equal(d.where(9), 'resourceLogs[0].scopeLogs[0].logRecords[9]');
  t.equal(d.where(11), 'resourceLogs[1].scopeLogs[0].logRecords[1]');
  t.equal(d.where(12), 'resourceLogs[2].scopeLogs[0].logRecords[0]');
});

t.test('NUL and unpaired surrogates reach admit(), which stores U+FFFD', async (t) => {
  // Protobuf strings are UTF-8 (an unpaired surrogate cannot be sent): NUL in protobuf, both in JSON's \u escapes.
  const stored = (d: Decoded) => {
    const a = admit(d.records[0] as Draft, OPEN, 'x');
    return typeof a === 'string' ? a : { message: a.message, device: a.device_id, data: JSON.parse(a.data) };
  };
  const viaPb = stored(pb(request([{ body: { stringValue: 'a\u0000b' }, attributes: [str('k\u0000', 'v\u0000')] }], [str('host.name', 'h\u0000')])));
  t.same(viaPb, { message: 'a\uFFFDb', device: 'h\uFFFD', data: { attributes: { 'k\uFFFD': 'v\uFFFD' }, resource: { 'host.name': 'h\uFFFD' } } });
  const text = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a\\u0000b\\ud800c"},'
    + '"attributes":[{"key":"k\\udc00","value":{"stringValue":"v\\ud800"}},{"key":"host.name","value":{"stringValue":"h\\u0000"}}]}]}]}]}';
  t.same(stored(decodeJson(JSON.parse(text), KEYS)), { message: 'a\uFFFDb\uFFFDc', device: 'h\uFFFD', data: { attributes: { 'k\uFFFD': 'v\uFFFD', 'host.name': 'h\uFFFD' } } });
});

t.test('decoding 100 records of protobuf costs well under 1 ms', async (t) => {
  const records = Array.from({ length: 100 }, (_, i) => ({
    timeUnixNano: `${1_767_225_600_000_000_000n + BigInt(i)}`, severityNumber: 9, severityText: 'INFO', body: { stringValue: `request ${i} served in 12 ms` },
    attributes: [str('http.method', 'GET'), str('http.route', '/api/items/:id'), { key: 'http.status_code', value: { intValue: 200 } }],
    traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2),
  }));
  const body = ExportLogsServiceRequest.encode(request(records, [str('host.name', 'web-1'), str('service.name', 'api')], { name: 'app' })).finish();
  const times: number[] = [];
  for (let i = 0; i < 300; i++) {
    const t0 = performance.now();
    decodeProtobuf(body, KEYS);
    times.push(performance.now() - t0);
  }
  const median = times.sort((a, b) => a - b)[150];
  t.ok(median < 1, `median ${median.toFixed(3)} ms`);
});
