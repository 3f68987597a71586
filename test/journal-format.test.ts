/** The journal export format parser and its mapping to the log model: byte-exact bodies, every split, every breach. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { JournalFormatError, JournalParser, journalDraft, type JournalEntry } from '../src/formats/journal';

/**
 * What systemd-journal-upload 252 (Debian 12) POSTed for a file that
 * systemd-journal-remote wrote from three entries: the second's MESSAGE has a
 * newline and goes binary, the third repeats TAG and has a non-UTF-8 BLOB.
 */
const UPLOADED = Buffer.from(
  'X19DVVJTT1I9cz1kMjJlNmNhYTZmM2E0NmJjYTI1ZWMzMTM0NWY4YTZkZjtpPTE7Yj0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4' +
    'OWFiY2RlZjttPTRjNGI0MDt0PTYwYTI0MTgyMDIyNDA7eD0yYjBiYzIwODBiOGEzMjVkCl9fUkVBTFRJTUVfVElNRVNUQU1QPTE3' +
    'MDAwMDAwMDAxMjM0NTYKX19NT05PVE9OSUNfVElNRVNUQU1QPTUwMDAwMDAKX0JPT1RfSUQ9MDEyMzQ1Njc4OWFiY2RlZjAxMjM0' +
    'NTY3ODlhYmNkZWYKX0hPU1ROQU1FPWhvc3QtYQpQUklPUklUWT0wClNZU0xPR19JREVOVElGSUVSPWdlbgpfUElEPTEwMApNRVNT' +
    'QUdFPW1lc3NhZ2UgMAoKX19DVVJTT1I9cz1kMjJlNmNhYTZmM2E0NmJjYTI1ZWMzMTM0NWY4YTZkZjtpPTI7Yj0wMTIzNDU2Nzg5' +
    'YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjttPTRjNGI0MTt0PTYwYTI0MTgyMDIyNDE7eD0xMjI0NzgxMzVlNTZhYjAyCl9fUkVBTFRJ' +
    'TUVfVElNRVNUQU1QPTE3MDAwMDAwMDAxMjM0NTcKX19NT05PVE9OSUNfVElNRVNUQU1QPTUwMDAwMDEKX0JPT1RfSUQ9MDEyMzQ1' +
    'Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYKX0hPU1ROQU1FPWhvc3QtYQpTWVNMT0dfSURFTlRJRklFUj1nZW4KUFJJT1JJVFk9' +
    'MQpfUElEPTEwMQpNRVNTQUdFChEAAAAAAAAAbGluZSBvbmUKbGluZSB0d28KCl9fQ1VSU09SPXM9ZDIyZTZjYWE2ZjNhNDZiY2Ey' +
    'NWVjMzEzNDVmOGE2ZGY7aT0zO2I9MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY7bT00YzRiNDI7dD02MGEyNDE4MjAy' +
    'MjQyO3g9NTYzMWI2MmM4NWYyZjViMwpfX1JFQUxUSU1FX1RJTUVTVEFNUD0xNzAwMDAwMDAwMTIzNDU4Cl9fTU9OT1RPTklDX1RJ' +
    'TUVTVEFNUD01MDAwMDAyCl9CT09UX0lEPTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmCl9IT1NUTkFNRT1ob3N0LWEK' +
    'U1lTTE9HX0lERU5USUZJRVI9Z2VuClBSSU9SSVRZPTIKX1BJRD0xMDIKTUVTU0FHRT1tZXNzYWdlIDIKVEFHPWEKVEFHPWIKQkxP' +
    'QgoDAAAAAAAAAP8A/goK',
  'base64',
);
const SEQNUM_ID = 'd22e6caa6f3a46bca25ec31345f8a6df';

interface Parsed {
  entries: JournalEntry[];
  error: JournalFormatError | null;
}

/** The body pushed in `size`-byte chunks (or cut once at `cuts`), then ended. */
function parse(body: Buffer, maxFieldBytes = 65536, size = body.length, cuts?: number[]): Parsed {
  const parser = new JournalParser(maxFieldBytes);
  const bounds = cuts ?? Array.from({ length: Math.ceil(body.length / Math.max(1, size)) - 1 }, (_, k) => (k + 1) * size);
  const entries: JournalEntry[] = [];
  let from = 0;
  for (const to of [...bounds, body.length]) {
    const batch = parser.push(body.subarray(from, to));
    entries.push(...batch.entries);
    if (batch.error) return { entries, error: batch.error };
    from = to;
  }
  return { entries, error: parser.end() };
}

/** An entry as [name, value] pairs, binary values as Buffers. */
function pairs(e: JournalEntry): [string, string | Buffer][] {
  return e.names.map((name, i) => [name, e.values[i]]);
}

/** A binary field: name, LF, 64-bit little-endian length, value, LF. */
function bin(name: string, value: Buffer | string): Buffer {
  const v = Buffer.from(value);
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(v.length));
  return Buffer.concat([Buffer.from(`${name}\n`), n, v, Buffer.from('\n')]);
}

const cat = (...parts: (Buffer | string)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));

t.test('what journal-upload sent', async (t) => {
  const { entries, error } = parse(UPLOADED);
  t.equal(error, null);
  t.equal(entries.length, 3);
  t.same(pairs(entries[1]), [
    ['__CURSOR', `s=${SEQNUM_ID};i=2;b=0123456789abcdef0123456789abcdef;m=4c4b41;t=60a2418202241;x=122478135e56ab02`],
    ['__REALTIME_TIMESTAMP', '1700000000123457'],
    ['__MONOTONIC_TIMESTAMP', '5000001'],
    ['_BOOT_ID', '0123456789abcdef0123456789abcdef'],
    ['_HOSTNAME', 'host-a'],
    ['SYSLOG_IDENTIFIER', 'gen'],
    ['PRIORITY', '1'],
    ['_PID', '101'],
    ['MESSAGE', Buffer.from('line one\nline two')],
  ]);
  t.same(pairs(entries[2]).slice(-3), [['TAG', 'a'], ['TAG', 'b'], ['BLOB', Buffer.from([0xff, 0x00, 0xfe])]]);

  const drafts = entries.map((e) => journalDraft(e, null));
  t.strictSame(drafts[0], {
    draft: {
      device_id: 'host-a',
      log_level: 'CRITICAL',
      message: 'message 0',
      data: { _BOOT_ID: '0123456789abcdef0123456789abcdef', SYSLOG_IDENTIFIER: 'gen', _PID: '100' },
      time: '2023-11-14T22:13:20.123456Z',
    },
    cursor: `s=${SEQNUM_ID};i=1;b=0123456789abcdef0123456789abcdef;m=4c4b40;t=60a2418202240;x=2b0bc2080b8a325d`,
    seqnumId: SEQNUM_ID,
    seqnum: 1n,
  });
  t.equal(drafts[1].draft.message, 'line one\nline two', 'a binary MESSAGE that is UTF-8 is its text');
  t.equal(drafts[1].draft.data.invalid_utf8, undefined);
  t.same(drafts[2].draft.data, {
    _BOOT_ID: '0123456789abcdef0123456789abcdef',
    SYSLOG_IDENTIFIER: 'gen',
    _PID: '102',
    TAG: ['a', 'b'],
    BLOB: { base64: '/wD+' },
  });
  t.same(drafts.map((d) => [d.seqnum, d.draft.log_level, d.draft.time]), [
    [1n, 'CRITICAL', '2023-11-14T22:13:20.123456Z'],
    [2n, 'CRITICAL', '2023-11-14T22:13:20.123457Z'],
    [3n, 'CRITICAL', '2023-11-14T22:13:20.123458Z'],
  ]);
});

t.test('any split gives the same entries', async (t) => {
  const whole = parse(UPLOADED).entries;
  const wrong: number[] = [];
  for (let cut = 0; cut <= UPLOADED.length; cut++) {
    const { entries, error } = parse(UPLOADED, 65536, 0, [cut]);
    if (error !== null || JSON.stringify(entries) !== JSON.stringify(whole)) wrong.push(cut);
  }
  t.same(wrong, [], 'one cut at every offset');
  for (const size of [1, 2, 3, 7, 8, 9, 64]) t.same(parse(UPLOADED, 65536, size), { entries: whole, error: null }, `${size}-byte chunks`);
});

t.test('fields and entries', async (t) => {
  const body = cat(
    '\n',
    'MESSAGE=first\n_PID=1\n\n',
    'MESSAGE\n\x11\0\0\0\0\0\0\0line one\nline two\n',
    'TEXT=\xc3\xa9t\xc3\xa9 \xef\xbf\xbd\n',
    'BAD=\xff\xfe\n',
    bin('EMPTY', ''),
    'A=\n',
    'A=x=y\n',
    '\n\n',
    'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=64\n\n',
  );
  const want = [
    [['MESSAGE', 'first'], ['_PID', '1']],
    [
      ['MESSAGE', Buffer.from('line one\nline two')],
      ['TEXT', 'été \uFFFD'],
      ['BAD', Buffer.from([0xff, 0xfe])],
      ['EMPTY', Buffer.alloc(0)],
      ['A', ''],
      ['A', 'x=y'],
    ],
    [['A'.repeat(64), '64']],
  ];
  for (const size of [body.length, 1, 5]) {
    const { entries, error } = parse(body, 65536, size);
    t.equal(error, null);
    t.same(entries.map(pairs), want, `${size}-byte chunks: empty lines between entries are not entries`);
  }
});

t.test('breaches of the format, with their offsets', async (t) => {
  const cases: [string, Buffer, number, RegExp, number][] = [
    ['lowercase name', cat('MESSAGE=a\nlower=x\n\n'), 10, /byte 0x6c in a field name/, 0],
    ['name starting with a digit, after an entry', cat('MESSAGE=a\n\nMESSAGE=b\n9BAD=x\n\n'), 21, /starts with a digit/, 1],
    ['empty name', cat('=x\n\n'), 0, /empty field name/, 0],
    ['name of 65 bytes', cat(`${'A'.repeat(65)}=x\n\n`), 64, /longer than 64 bytes/, 0],
    ['space in a name', cat('MES SAGE=x\n\n'), 3, /byte 0x20 in a field name/, 0],
    ['non-ASCII name', cat('\xc3\x84=x\n\n'), 0, /byte 0xc3 in a field name/, 0],
    ['lowercase binary name', cat(bin('message', 'x'), '\n'), 0, /byte 0x6d/, 0],
    ['length of 2^63-1', cat('MESSAGE\n\xff\xff\xff\xff\xff\xff\xff\x7f'), 8, /declared 9223372036854775807 bytes, more than 805306368/, 0],
    ['length of 768 MiB + 1', cat('MESSAGE\n\x01\0\0\x30\0\0\0\0'), 8, /declared 805306369 bytes/, 0],
    ['no LF after binary data', cat('_PID=1\n', 'MESSAGE\n\x03\0\0\0\0\0\0\0abcX\n\n'), 26, /expected LF after binary value of MESSAGE, got 0x58/, 0],
    ['no empty line at the end', cat('MESSAGE=x\n'), 10, /body ends inside an entry/, 0],
    ['no LF at the end', cat('MESSAGE=x\n\nMESSAGE=x'), 20, /body ends inside an entry/, 1],
    ['end inside a binary length', cat('MESSAGE\n\x03\0\0'), 11, /body ends inside an entry/, 0],
  ];
  for (const [name, body, offset, reason, before] of cases) {
    for (const size of [body.length, 1]) {
      const { entries, error } = parse(body, 65536, size);
      t.type(error, JournalFormatError, name);
      t.same([error?.offset, entries.length], [offset, before], `${name}, ${size}-byte chunks`);
      t.match(error?.reason, reason, name);
    }
  }

  const body = cat(UPLOADED, 'MESSAGE=ok\nbad=1\n\n');
  for (const cut of [0, 500, 990, 1000, 1001, body.length - 1]) {
    const { entries, error } = parse(body, 65536, 0, [cut]);
    t.same([error?.offset, entries.length], [1001, 3], `offset counted across chunks (cut at ${cut})`);
  }

  const parser = new JournalParser(100);
  const first = parser.push(cat('MESSAGE=a\n\n=\n'));
  t.same([first.entries.length, first.error?.offset], [1, 11], 'entries before the error come with it');
  const later = parser.push(cat('MESSAGE=b\n\n'));
  t.same([later.entries.length, later.error], [0, first.error], 'a failed parser stays failed');
  t.equal(parser.end(), first.error);
});

t.test('values longer than maxFieldBytes are omitted, not kept', async (t) => {
  const body = cat(
    'A=12345678\n',
    'B=123456789\n',
    bin('C', '123456789'),
    bin('D', '12345678'),
    'E=\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\n',
    'F=\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\n',
    `G=${'x'.repeat(200)}\n`,
    'H=ok\n\n',
  );
  const whole = parse(body, 8);
  t.same(whole.entries.map(pairs), [[['A', '12345678'], ['D', Buffer.from('12345678')], ['E', 'éééé'], ['H', 'ok']]]);
  t.same(whole.entries[0].omitted, ['B', 'C', 'F', 'G'], 'the limit counts bytes, not characters');
  const wrong: number[] = [];
  for (let cut = 0; cut <= body.length; cut++) {
    if (JSON.stringify(parse(body, 8, 0, [cut])) !== JSON.stringify(whole)) wrong.push(cut);
  }
  t.same(wrong, [], 'one cut at every offset');
  t.same(parse(body, 8, 1), whole, '1-byte chunks');

  const named = parse(cat(`${'A'.repeat(65)}=${'x'.repeat(100)}\n\n`), 8, 1);
  t.same([named.error?.offset, named.error?.reason], [64, 'field name longer than 64 bytes'], 'a skipped line still has its name checked');
});

t.test('journalDraft', async (t) => {
  const entry = (fields: [string, string | Buffer][], omitted: string[] = []): JournalEntry => ({
    names: fields.map(([n]) => n),
    values: fields.map(([, v]) => v),
    omitted,
  });
  const draft = (fields: [string, string | Buffer][], allow: ReadonlySet<string> | null = null, omitted: string[] = []) =>
    journalDraft(entry(fields, omitted), allow);

  const levels = ['0', '1', '2', '3', '4', '5', '6', '7', '8', 'x', '', '06'].map((p) => draft([['PRIORITY', p]]).draft.log_level);
  t.same(levels, ['CRITICAL', 'CRITICAL', 'CRITICAL', 'ERROR', 'WARNING', 'INFO', 'INFO', 'DEBUG', 'INFO', 'INFO', 'INFO', 'INFO']);
  t.same(draft([['PRIORITY', 'x']]).draft.data, { PRIORITY: 'x' }, 'a PRIORITY that is no severity stays in data');
  t.strictSame(draft([]), { draft: { device_id: '', log_level: 'INFO', message: '', data: {} } }, 'an entry of nothing');

  const times: [string, string | undefined][] = [
    ['1700000000123456', '2023-11-14T22:13:20.123456Z'],
    ['1700000000000000', '2023-11-14T22:13:20.000000Z'],
    ['5', '1970-01-01T00:00:00.000005Z'],
    ['0', '1970-01-01T00:00:00.000000Z'],
    ['9007199254740993', '2255-06-05T23:47:34.740993Z'],
    ['253402300799999999', '9999-12-31T23:59:59.999999Z'],
    ['8640000000000000000', '+275760-09-13T00:00:00.000000Z'],
    ['8640000000001000000', undefined],
    ['1.5', undefined],
    ['-1', undefined],
  ];
  for (const [us, iso] of times) {
    const d = draft([['__REALTIME_TIMESTAMP', us]]).draft;
    t.same([d.time, d.data.__REALTIME_TIMESTAMP], [iso, iso === undefined ? us : undefined], `__REALTIME_TIMESTAMP=${us}`);
  }

  const bad = draft([['MESSAGE', Buffer.from([0x61, 0xff, 0x62])], ['_HOSTNAME', 'h1']]).draft;
  t.same([bad.message, bad.data, bad.device_id], ['a\uFFFDb', { invalid_utf8: true }, 'h1'], 'a MESSAGE that is not UTF-8');

  const repeated = draft([
    ['MESSAGE', 'one'],
    ['MESSAGE', 'two'],
    ['_HOSTNAME', 'h1'],
    ['_HOSTNAME', 'h2'],
    ['TAG', 'a'],
    ['TAG', Buffer.from('b')],
    ['TAG', Buffer.from([0x80])],
  ]).draft;
  t.same([repeated.message, repeated.device_id, repeated.data], ['one', 'h1', { MESSAGE: 'two', _HOSTNAME: 'h2', TAG: ['a', 'b', { base64: 'gA==' }] }]);

  const fields: [string, string | Buffer][] = [
    ['__CURSOR', 's=0123456789abcdef0123456789abcdef;i=ff;b=fedcba9876543210fedcba9876543210;m=1;t=2;x=3'],
    ['__MONOTONIC_TIMESTAMP', '5000'],
    ['__UNKNOWN', 'x'],
    ['_BOOT_ID', 'fedcba9876543210fedcba9876543210'],
    ['_PID', '7'],
    ['_SYSTEMD_UNIT', 'app.service'],
    ['MESSAGE', 'm'],
  ];
  t.same(draft(fields).draft.data, { _BOOT_ID: 'fedcba9876543210fedcba9876543210', _PID: '7', _SYSTEMD_UNIT: 'app.service' }, 'address fields stay out of data');
  t.same([draft(fields).seqnumId, draft(fields).seqnum], ['0123456789abcdef0123456789abcdef', 255n], 'seqnum from the cursor (hex)');
  const explicit = draft([...fields, ['__SEQNUM', '42'], ['__SEQNUM_ID', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']]);
  t.same([explicit.seqnumId, explicit.seqnum], ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 42n], '__SEQNUM and __SEQNUM_ID before the cursor');
  t.strictSame(draft([['__CURSOR', 'garbage'], ['__SEQNUM', 'x']]), { draft: { device_id: '', log_level: 'INFO', message: '', data: {} }, cursor: 'garbage' });

  const allowed = draft(fields, new Set(['_PID', 'OTHER']), ['BIG', 'OTHER', 'MESSAGE', '__CURSOR']);
  t.same(allowed.draft.data, { _PID: '7', fields_omitted: ['OTHER', 'MESSAGE', '__CURSOR'] }, 'allow picks the data fields; omitted names follow it');
  t.equal(allowed.draft.message, 'm', 'mapped fields are mapped whatever allow holds');
  t.same(draft(fields, null, ['BIG']).draft.data.fields_omitted, ['BIG']);
});

const REMOTE = '/lib/systemd/systemd-journal-remote';
t.test('journalctl -o export of a file systemd-journal-remote wrote', { skip: !existsSync(REMOTE) && `${REMOTE} is not installed` }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'logd-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const input = cat(
    '__REALTIME_TIMESTAMP=1700000000654321\n_HOSTNAME=box\nPRIORITY=3\n',
    bin('MESSAGE', 'multi\nline'),
    bin('NOTE', Buffer.from([0xff, 0xfe, 0x41])),
    'TEXT=caf\xc3\xa9\nREPEAT=1\nREPEAT=2\n\n',
    '__REALTIME_TIMESTAMP=1700000001000000\nMESSAGE=plain\n\n',
  );
  const file = join(dir, 'in.journal');
  const remote = spawnSync(REMOTE, [`--output=${file}`, '-'], { input, encoding: 'utf8', timeout: 20_000 });
  t.equal(remote.status, 0, remote.stderr);
  const exported = spawnSync('journalctl', [`--file=${file}`, '-o', 'export'], { timeout: 20_000 });
  t.equal(exported.status, 0, String(exported.stderr));
  // journal-remote stores a zero _BOOT_ID for entries that name none; journalctl exports it.
  const { entries, error } = parse(exported.stdout, 65536, 4096);
  t.equal(error, null);
  const drafts = entries.map((e) => journalDraft(e, null));
  t.same(drafts.map((d) => d.seqnum), [1n, 2n]);
  t.match(drafts[0].seqnumId, /^[0-9a-f]{32}$/);
  t.same(drafts[0].draft, {
    device_id: 'box',
    log_level: 'ERROR',
    message: 'multi\nline',
    data: { _BOOT_ID: '00000000000000000000000000000000', NOTE: { base64: '//5B' }, TEXT: 'café', REPEAT: ['1', '2'] },
    time: '2023-11-14T22:13:20.654321Z',
  });
  t.same([drafts[1].draft.message, drafts[1].draft.time], ['plain', '2023-11-14T22:13:21.000000Z']);
});
