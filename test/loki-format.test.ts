/**
 * The Loki decoders alone (src/formats/loki.ts): the label selector parser,
 * JSON values with and without structured metadata, timestamps as strings
 * of nanoseconds and as protobuf Timestamps with int64 seconds, the mapping
 * into Drafts, and snappy's block format.
 */
import t from 'tap';
import {
  decodePushRequest, parseLabels, PushRequest, pushJson, pushProtobuf, snappyLength, streamName, unsnappy,
  type LokiOptions, type StreamRef,
} from '../src/formats/loki';
import type { Draft } from '../src/model/entry';
import type { Instant } from '../src/model/time';

// snappyjs ships no type declarations
const SnappyJS = require('snappyjs') as { compress(b: Uint8Array): Uint8Array };

const OPTS: LokiOptions = { deviceLabels: ['host', 'hostname', 'instance', 'job'], orgId: '' };

interface Collected {
  drafts: Draft[];
  rejects: { stream: string; index: number | undefined; reason: string; count: number }[];
}

function sink(): Collected & { entry(d: Draft): void; reject(s: StreamRef, i: number | undefined, r: string, c: number): void } {
  const c: Collected = { drafts: [], rejects: [] };
  return {
    ...c,
    entry: (d) => c.drafts.push(d),
    reject: (s, index, reason, count) => c.rejects.push({ stream: streamName(s), index, reason, count }),
  };
}

const iso = (d: Draft): string | undefined => (d.time === undefined ? undefined : (d.time as Instant).iso);

t.test('label selectors', async (t) => {
  t.same({ ...parseLabels('{a="b", c="d\\"e"}') as object }, { a: 'b', c: 'd"e' });
  t.same({ ...parseLabels('{job="x\\\\y\\nz"}') as object }, { job: 'x\\y\nz' }, '\\\\ and \\n');
  t.same({ ...parseLabels(' { a = "1" , b=\'2\', c=`r\\aw`, } ') as object }, { a: '1', b: '2', c: 'r\\aw' }, 'spaces, quotes, backquotes, trailing comma');
  t.same({ ...parseLabels('{}') as object }, {}, 'no labels');
  t.same({ ...parseLabels('{u="\\u00e9\\x41\\U0001F600"}') as object }, { u: 'éA😀' }, 'hex escapes');
  const p = parseLabels('{__proto__="x"}') as Record<string, string>;
  t.equal(Object.getPrototypeOf(p), null, 'labels have no prototype');
  t.equal(p.__proto__, 'x', '__proto__ is a label like any other');
  for (const [bad, why] of [
    ['', 'expected "{"'],
    ['job="x"', 'expected "{"'],
    ['{job="x"', 'expected "," or "}"'],
    ['{job="x}', 'unterminated value'],
    ['{job=x}', 'expected a quoted value'],
    ['{job!="x"}', 'expected "="'],
    ['{job=~"x"}', 'expected "="'],
    ['{1a="x"}', 'expected a label name'],
    ['{a="x" b="y"}', 'expected "," or "}"'],
    ['{a="x", a="y"}', 'label a repeated'],
    ['{a="\\q"}', 'unknown escape \\q'],
    ['{a="\\x4"}', 'bad escape'],
    ['{a="x"} extra', 'text after "}"'],
    ['{a="line\nbreak"}', 'unterminated value'],
  ]) {
    const r = parseLabels(bad);
    t.type(r, 'string', `${JSON.stringify(bad)} is refused`);
    t.match(r, why, `${JSON.stringify(bad)}: ${why}`);
    t.match(r, /^malformed labels at offset \d+: /);
  }
});

t.test('JSON values', async (t) => {
  const s = sink();
  const body = {
    streams: [
      {
        stream: { job: 'api', level: 'warn' },
        values: [
          ['1700000000123456789', 'plain'],
          ['1700000000000000001', 'with metadata', { trace_id: 'abc', host: 'meta-host' }],
          ['0', 'zero is receive time'],
          ['', 'empty is receive time'],
          ['1700000000000000000', ''],
        ],
      },
      { stream: { app: 'x' }, values: [['1700000000000000000', 'from metadata', { hostname: 'h1', detected_level: 'ERROR' }]] },
      { stream: { app: 'y', level: 'nonsense', detected_level: 'debug' }, values: [['1700000000000000000', 'detected']] },
    ],
  };
  t.equal(pushJson(body, { ...OPTS, orgId: 'tenant-1' }, s), undefined);
  t.same(s.rejects, []);
  const [a, b, c, d, e, f, g] = s.drafts;
  t.same(a, { device_id: 'api', log_level: 'WARNING', message: 'plain', data: { labels: { job: 'api', level: 'warn' }, org_id: 'tenant-1' }, time: a.time, boundedDepth: true });
  t.equal(iso(a), '2023-11-14T22:13:20.123456Z', 'nanoseconds cut to the microsecond');
  t.same(b.data.structured_metadata, { trace_id: 'abc', host: 'meta-host' });
  t.equal(b.device_id, 'api', 'a label comes before structured metadata');
  t.equal(iso(b), '2023-11-14T22:13:20.000000Z');
  t.equal(c.time, undefined, '"0": receive time');
  t.equal(d.time, undefined, '"": receive time');
  t.equal(e.message, '', 'an empty line stays empty (admit() stores "-")');
  t.equal(f.device_id, 'h1', 'device from structured metadata');
  t.equal(f.log_level, 'ERROR', 'level from structured metadata');
  t.equal(f.data.org_id, 'tenant-1', 'X-Scope-OrgID');
  t.equal(g.log_level, 'DEBUG', 'an unknown level label falls through to detected_level');
  t.notOk('structured_metadata' in a.data, 'no structured_metadata key without metadata');

  const none = sink();
  pushJson({ streams: [{ stream: {}, values: [['1', 'x', {}]] }] }, OPTS, none);
  t.equal(none.drafts[0].device_id, '', 'no device: admit() uses default_device_id');
  t.equal(none.drafts[0].log_level, 'INFO', 'no level: INFO');
  t.notOk('structured_metadata' in none.drafts[0].data, 'empty metadata is left out');
});

t.test('JSON of the wrong shape', async (t) => {
  t.match(pushJson([], OPTS, sink()), 'must be a JSON object');
  t.match(pushJson({ streams: {} }, OPTS, sink()), '"streams" must be an array');
  const s = sink();
  const deep: Record<string, unknown> = {};
  let at = deep;
  for (let i = 0; i < 100; i++) at = (at.x = {}) as Record<string, unknown>;
  t.equal(pushJson({
    streams: [
      { stream: { job: 'ok' }, values: [['1700000000000000000', 'kept'], [1700000000000000000, 'number ts'], ['17e17', 'bad ts'], ['1', 2], ['1'], ['1', 'x', { nested: deep }], ['1', 'x', 'meta'], ['99999999999999999999', 'x']] },
      { stream: { job: 5 }, values: [['1', 'a'], ['1', 'b']] },
      { stream: 'job', values: [] },
      { stream: { job: 'novalues' } },
      7,
    ],
  }, OPTS, s), undefined);
  t.same(s.drafts.map((d) => d.message), ['kept'], 'the valid entry is kept');
  const expected: [number | undefined, number, string][] = [
    [1, 1, 'the timestamp must be a string of Unix epoch nanoseconds, got a number'],
    [2, 1, 'the timestamp must be a string of Unix epoch nanoseconds, got "17e17"'],
    [3, 1, 'the line must be a string, got a number'],
    [4, 1, 'an entry must be ["<unix epoch ns>", "<line>"] or ["<unix epoch ns>", "<line>", {structured metadata}]'],
    [5, 1, 'structured metadata nested must be a string, got an object'],
    [6, 1, 'structured metadata must be an object of strings, got a string'],
    [7, 1, 'the timestamp must be a string of Unix epoch nanoseconds, got "99999999999999999999"'],
    [undefined, 2, 'label job must be a string, got a number'],
    [undefined, 0, '"stream" must be an object of labels, got a string'],
    [undefined, 0, '"values" must be an array, got nothing'],
    [undefined, 0, 'a stream must be an object, got a number'],
  ];
  t.same(s.rejects.map((r) => [r.index, r.count, r.reason]), expected, 'every bad entry and stream, each with its reason');
  t.equal(s.rejects[0].stream, '{job="ok"}', 'the stream named as a selector');
  t.equal(s.rejects[7].stream, '{job=5}');
});

t.test('protobuf PushRequest', async (t) => {
  const body = PushRequest.encode(PushRequest.fromObject({
    streams: [
      {
        labels: '{job="vec", level="error"}',
        entries: [
          { timestamp: { seconds: 1700000000, nanos: 123456789 }, line: 'one', structuredMetadata: [{ name: 'trace_id', value: 't1' }] },
          { line: 'no timestamp' },
          { timestamp: { seconds: '253402300799', nanos: 999999999 }, line: 'last second of 9999' },
          { timestamp: { seconds: '253402300800', nanos: 0 }, line: 'year 10000' },
          { timestamp: { seconds: -1, nanos: 0 }, line: 'before 1970' },
          { timestamp: { seconds: 1, nanos: 1_000_000_000 }, line: 'nanos too large' },
          { timestamp: { seconds: 0, nanos: 0 }, line: 'zero' },
        ],
      },
      { labels: '{job="bad}', entries: [{ line: 'a' }, { line: 'b' }] },
      { labels: '{instance="i-1"}', entries: [{ timestamp: { seconds: 1, nanos: 1000 }, line: 'small', structuredMetadata: [{ name: 'level', value: 'critical' }] }] },
    ],
  })).finish();
  const msg = decodePushRequest(body);
  t.type(msg, 'object');
  const s = sink();
  pushProtobuf(msg as Exclude<typeof msg, string>, OPTS, s);
  t.same(s.drafts.map((d) => [d.message, iso(d)]), [
    ['one', '2023-11-14T22:13:20.123456Z'],
    ['no timestamp', undefined],
    ['last second of 9999', '9999-12-31T23:59:59.999999Z'],
    ['zero', undefined],
    ['small', '1970-01-01T00:00:01.000001Z'],
  ]);
  t.same(s.drafts[0].data, { labels: { job: 'vec', level: 'error' }, structured_metadata: { trace_id: 't1' } });
  t.equal(s.drafts[0].log_level, 'ERROR');
  t.equal(s.drafts[4].device_id, 'i-1');
  t.equal(s.drafts[4].log_level, 'CRITICAL', 'level from structured metadata');
  t.same(s.rejects.map((r) => [r.stream, r.index, r.count]), [
    ['{job="vec", level="error"}', 3, 1], ['{job="vec", level="error"}', 4, 1], ['{job="vec", level="error"}', 5, 1], ['{job="bad}', undefined, 2],
  ]);
  t.match(s.rejects[0].reason, 'outside years 1970..9999');
  t.match(s.rejects[2].reason, 'nanos 1000000000');
  t.match(s.rejects[3].reason, 'malformed labels');

  t.match(decodePushRequest(body.subarray(0, body.length - 3)), /^the body is not a protobuf PushRequest: /, 'truncated');
  t.match(decodePushRequest(Buffer.from([0x0a, 0x05, 0x0a, 0x03, 0x61])), /not a protobuf PushRequest/, 'a length past the end');
  t.match(decodePushRequest(Buffer.from([0x0f, 0x01])), /not a protobuf PushRequest/, 'a bad wire type');
});

t.test('snappy block format', async (t) => {
  const plain = Buffer.from('hello hello hello hello hello, '.repeat(200) + 'end');
  const packed = Buffer.from(SnappyJS.compress(plain));
  t.equal(snappyLength(packed), plain.length);
  t.same(unsnappy(packed), plain, 'round trip with another implementation');
  t.equal(snappyLength(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), 0xffffffff, 'a 32-bit length');
  t.equal(snappyLength(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x1f])), undefined, 'past 32 bits');
  t.equal(snappyLength(Buffer.from([0x80])), undefined, 'unterminated');
  t.match(unsnappy(packed.subarray(0, packed.length - 2)), /not valid snappy/, 'truncated: refused, never padded');
  t.match(unsnappy(Buffer.from([0x05, 0x01 << 2 | 1, 0x01])), /copy offset 1 outside the output/, 'a copy before any output');
  t.match(unsnappy(Buffer.from([0x02, 0x0c, 0x61, 0x62])), /literal past the end/, 'a literal longer than the input');
  t.match(unsnappy(Buffer.from([0x01, 0x04, 0x61, 0x62])), /past the declared length/, 'more output than declared');
  t.same(unsnappy(Buffer.from([0x00])), Buffer.alloc(0), 'empty');
});
