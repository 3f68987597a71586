/** Syslog messages as Drafts (RFC 5424, RFC 3164 as rsyslog and syslog-ng send them) and their TCP framing (RFC 6587). */
import t from 'tap';
import { SyslogFraming, type Framed } from '../src/formats/framing';
import { parseSyslog } from '../src/formats/syslog';
import { LOG_LEVELS } from '../src/model/levels';

const RECEIVED = Date.UTC(2024, 0, 5, 9, 30);
const parse = (line: string | Buffer, receivedMs = RECEIVED, truncated?: boolean) =>
  parseSyslog(typeof line === 'string' ? Buffer.from(line) : line, receivedMs, truncated === undefined ? undefined : { truncated });

t.test('RFC 5424 as rsyslog (RSYSLOG_SyslogProtocol23Format) and syslog-ng (syslog() driver) send it', async (t) => {
  t.same(parse('<30>1 2024-01-05T10:00:00.123456+01:00 web01 systemd 1 - - Started Session 42 of user root.\n'), {
    device_id: 'web01', log_level: 'INFO', message: 'Started Session 42 of user root.', time: '2024-01-05T10:00:00.123456+01:00',
    data: { facility: 'daemon', severity: 'info', app_name: 'systemd', procid: '1' },
  });
  t.same(parse('<38>1 2024-01-05T10:00:00+00:00 web01 sshd 1234 - [meta sequenceId="17"] Accepted publickey for root from 10.0.0.1 port 52012 ssh2'), {
    device_id: 'web01', log_level: 'INFO', message: 'Accepted publickey for root from 10.0.0.1 port 52012 ssh2', time: '2024-01-05T10:00:00+00:00',
    data: { facility: 'auth', severity: 'info', app_name: 'sshd', procid: '1234', sd: { meta: { sequenceId: '17' } } },
  });
  t.same(parse('<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}\'su root\' failed for lonvick on /dev/pts/8'), {
    device_id: 'mymachine.example.com', log_level: 'CRITICAL', message: '\'su root\' failed for lonvick on /dev/pts/8', time: '2003-10-11T22:14:15.003Z',
    data: { facility: 'auth', severity: 'crit', app_name: 'su', msgid: 'ID47' },
  }, 'RFC 5424 example 1: BOM before MSG dropped');
  t.same(parse('<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It\'s time to make the do-nuts.\r\n'), {
    device_id: '192.0.2.1', log_level: 'INFO', message: '%% It\'s time to make the do-nuts.', time: '2003-08-24T05:14:15.000003-07:00',
    data: { facility: 'local4', severity: 'notice', app_name: 'myproc', procid: '8710' },
  }, 'RFC 5424 example 2, CRLF stripped');
  const ex4 = parse('<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]');
  t.same(ex4.data.sd, { 'exampleSDID@32473': { iut: '3', eventSource: 'Application', eventID: '1011' }, 'examplePriority@32473': { class: 'high' } });
  t.equal(ex4.message, '', 'RFC 5424 example 4: no MSG');
  t.equal(ex4.data.parse_error, undefined);
  const nil = parse('<13>1 - - - - - -');
  t.same(nil, { device_id: '', log_level: 'INFO', message: '', data: { facility: 'user', severity: 'notice' } }, 'all NILVALUE: no time, no device');
  t.equal(parse('<13>1 2024-01-05T10:00:00.1234567891Z h a - - - m').time, '2024-01-05T10:00:00.123456Z', 'fraction cut to 6 digits');
  t.equal(parse('<13>1 2024-01-05t10:00:00z h a - - - m').time, '2024-01-05T10:00:00Z', 'lower-case T and Z');
  t.equal(parse('<13>1 2024-01-05T10:00:00Z h a - - -  rsyslog\'s extra space').message, 'rsyslog\'s extra space', 'one space more after the SP (rsyslog\'s %msg%) dropped');
  t.equal(parse('<13>1 2024-01-05T10:00:00Z h a - - -    indented').message, '  indented', 'only that one');
});

t.test('structured data: escapes, several elements, repeated names', async (t) => {
  const d = parse('<14>1 2024-01-05T10:00:00Z h app - - [a@1 q="say \\"hi\\"" b="back\\\\slash" c="close\\]" d="keep\\n" e=""][b@2 x="1" x="2" x="3"][a@1 y="z"] text');
  t.same(d.data.sd, {
    'a@1': { q: 'say "hi"', b: 'back\\slash', c: 'close]', d: 'keep\\n', e: '', y: 'z' },
    'b@2': { x: ['1', '2', '3'] },
  });
  t.equal(d.message, 'text');
  t.equal(d.data.parse_error, undefined);
  const odd = parse('<14>1 2024-01-05T10:00:00Z h app - - [__proto__ constructor="x" v="a]b c"] m');
  t.equal(JSON.stringify(odd.data.sd), '{"__proto__":{"constructor":"x","v":"a]b c"}}', 'an SD-ID or PARAM named __proto__ is a plain key');
  t.equal(Object.getPrototypeOf({}), Object.prototype, 'no prototype touched');
  for (const [line, sd, message] of [
    ['<14>1 - h a - - [x@1 k="unterminated] m', undefined, '[x@1 k="unterminated] m'],
    ['<14>1 - h a - - [ok@1 k="v"][bad k=v] m', { 'ok@1': { k: 'v' } }, '[ok@1 k="v"][bad k=v] m'],
    ['<14>1 - h a - - [x@1 k="v"]m', { 'x@1': { k: 'v' } }, '[x@1 k="v"]m'],
    ['<14>1 - h a - - -m', undefined, '-m'],
    ['<14>1 - h a - - no sd at all', undefined, 'no sd at all'],
    ['<14>1 - h a - - [x@1 k="v\\', undefined, '[x@1 k="v\\'],
  ] as const) {
    const d = parse(line);
    t.equal(d.data.parse_error, 'bad structured data', line);
    t.same(d.data.sd, sd, `${line}: elements before the error`);
    t.equal(d.message, message, `${line}: message from the SD on`);
    t.equal(d.device_id, 'h');
  }
});

t.test('every severity maps to a level; facilities by name', async (t) => {
  const levels = ['CRITICAL', 'CRITICAL', 'CRITICAL', 'ERROR', 'WARNING', 'INFO', 'INFO', 'DEBUG'];
  const names = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
  for (let sev = 0; sev < 8; sev++) {
    for (const [fac, name] of [[0, 'kern'], [3, 'daemon'], [10, 'authpriv'], [13, 'audit'], [16, 'local0'], [23, 'local7']] as const) {
      const pri = fac * 8 + sev;
      for (const line of [`<${pri}>1 - h a - - - m`, `<${pri}>Jan  5 10:00:00 h a: m`]) {
        const d = parse(line);
        t.equal(d.log_level, levels[sev], line);
        t.same([d.data.facility, d.data.severity], [name, names[sev]], line);
      }
    }
  }
  t.equal(parse('<191>1 - h a - - - m').data.facility, 'local7');
  t.equal(parse('<0>1 - h a - - - m').log_level, 'CRITICAL');
});

t.test('RFC 3164 as rsyslog (Traditional/ForwardFormat) and syslog-ng (network()) send it', async (t) => {
  t.same(parse('<86>Jan  5 10:00:00 web01 sshd[1234]: Accepted publickey for root\n'), {
    device_id: 'web01', log_level: 'INFO', message: 'Accepted publickey for root', time: '2024-01-05T10:00:00Z',
    data: { facility: 'authpriv', severity: 'info', tag: 'sshd[1234]', app_name: 'sshd', procid: '1234' },
  }, 'RSYSLOG_TraditionalForwardFormat / syslog-ng network() default');
  t.same(parse('<86>2024-01-05T10:00:00.123456+01:00 web01 sshd[1234]: Accepted publickey for root'), {
    device_id: 'web01', log_level: 'INFO', message: 'Accepted publickey for root', time: '2024-01-05T10:00:00.123456+01:00',
    data: { facility: 'authpriv', severity: 'info', tag: 'sshd[1234]', app_name: 'sshd', procid: '1234' },
  }, 'RSYSLOG_ForwardFormat keeps its offset');
  t.same(parse('<4>Jan 15 08:01:02 db2 kernel: [12345.678] Out of memory: Killed process 42'), {
    device_id: 'db2', log_level: 'WARNING', message: '[12345.678] Out of memory: Killed process 42', time: '2024-01-15T08:01:02Z',
    data: { facility: 'kern', severity: 'warning', tag: 'kernel', app_name: 'kernel' },
  }, 'TAG without PID');
  const cases: [string, Record<string, unknown>][] = [
    ['<78>Jan 05 10:00:00 cron1 CRON[99]: (root) CMD (run-parts /etc/cron.hourly)', { time: '2024-01-05T10:00:00Z', device_id: 'cron1', message: '(root) CMD (run-parts /etc/cron.hourly)', procid: '99' }],
    ['<78>Jan  5 10:00:00.123 cron1 CRON[99]: frac-digits(3)', { time: '2024-01-05T10:00:00.123Z', message: 'frac-digits(3)' }],
    ['<78>Jan  5 2023 10:00:00 cron1 CRON[99]: with year', { time: '2023-01-05T10:00:00Z', message: 'with year' }],
    ['<78>2024-01-05T10:00:00+01:00 cron1 CRON[99]: ts-format(iso)', { time: '2024-01-05T10:00:00+01:00', message: 'ts-format(iso)' }],
    ['<78>2024-01-05T10:00:00+0130 cron1 CRON[99]: offset without colon', { time: '2024-01-05T10:00:00+01:30' }],
    ['<78>2024-01-05T10:00:00 cron1 CRON[99]: no offset', { time: '2024-01-05T10:00:00Z' }],
    ['<78>Jan  5 10:00:00 cron1 CRON[99] no colon', { message: 'no colon', app_name: 'CRON', procid: '99' }],
    ['<78>Jan  5 10:00:00 cron1 app:tight', { message: 'tight', app_name: 'app', tag: 'app' }],
    ['<78>Jan  5 10:00:00 cron1 app[]: empty pid', { message: 'empty pid', tag: 'app[]', procid: undefined }],
    ['<78>Jan  5 10:00:00 cron1 just some text', { device_id: 'cron1', message: 'just some text', tag: undefined, app_name: undefined }],
    ['<78>Jan  5 10:00:00 su[7]: no hostname', { device_id: '', message: 'no hostname', app_name: 'su', procid: '7' }],
    ['<78>Jan  5 10:00:00 logger: no hostname', { device_id: '', message: 'no hostname', app_name: 'logger' }],
    ['<78>Jan  5 10:00:00 onlyhost', { device_id: 'onlyhost', message: '' }],
  ];
  for (const [line, want] of cases) {
    const d = parse(line);
    const got: Record<string, unknown> = { ...d.data, time: d.time, device_id: d.device_id, message: d.message };
    for (const [k, v] of Object.entries(want)) t.same(got[k], v, `${line}: ${k}`);
    t.equal(d.data.parse_error, undefined, `${line}: no parse_error`);
  }
});

t.test('RFC 3164 times are UTC of the year closest to the receive time', async (t) => {
  const at = (iso: string) => Date.parse(iso);
  const cases: [string, string, string | undefined][] = [
    ['Dec 31 23:59:00', '2025-01-01T00:05:00Z', '2024-12-31T23:59:00Z'],
    ['Jan  1 00:01:00', '2024-12-31T23:59:00Z', '2025-01-01T00:01:00Z'],
    ['Aug 10 12:00:00', '2025-01-10T00:00:00Z', '2024-08-10T12:00:00Z'],
    ['Jun 10 12:00:00', '2025-01-10T00:00:00Z', '2025-06-10T12:00:00Z'],
    ['Jan  5 10:00:00', '2024-01-05T09:30:00Z', '2024-01-05T10:00:00Z'],
    ['Feb 29 12:00:00', '2025-03-01T00:00:00Z', '2024-02-29T12:00:00Z'],
    ['Feb 29 12:00:00', '2026-06-15T00:00:00Z', undefined],
  ];
  for (const [ts, received, time] of cases) {
    const d = parse(`<13>${ts} h app: m`, at(received));
    t.equal(d.time, time, `${ts} received ${received}`);
    t.equal(d.data.parse_error, time === undefined ? 'bad timestamp' : undefined);
  }
});

t.test('malformed input: never throws, keeps what parses, says why', async (t) => {
  const cases: [string | Buffer, Partial<Record<'message' | 'device_id' | 'parse_error' | 'time' | 'log_level', string | undefined>>][] = [
    ['', { message: '', parse_error: 'empty message', log_level: 'INFO' }],
    ['\n', { message: '', parse_error: 'empty message' }],
    ['no pri at all', { message: 'no pri at all', parse_error: 'no PRI', device_id: '', log_level: 'INFO' }],
    ['Jan  5 10:00:00 host app: no pri', { message: 'Jan  5 10:00:00 host app: no pri', parse_error: 'no PRI', time: undefined }],
    ['<192>1 - h a - - - m', { message: '<192>1 - h a - - - m', parse_error: 'bad PRI', log_level: 'INFO' }],
    ['<1a>x', { message: '<1a>x', parse_error: 'bad PRI' }],
    ['<1234>x', { message: '<1234>x', parse_error: 'bad PRI' }],
    ['<>x', { message: '<>x', parse_error: 'bad PRI' }],
    ['<13>', { message: '', parse_error: 'empty message' }],
    ['<11>just text', { message: 'just text', parse_error: 'no timestamp', log_level: 'ERROR' }],
    ['<13>Feb 30 10:00:00 h app: m', { message: 'm', device_id: 'h', parse_error: 'bad timestamp', time: undefined }],
    ['<13>Jan  5 25:00:00 h app: m', { message: 'm', parse_error: 'bad timestamp' }],
    ['<13>Jan  5 10:00:00', { message: '<13>Jan  5 10:00:00', parse_error: 'missing fields', time: '2024-01-05T10:00:00Z' }],
    ['<13>Jan  5 10:00:00:00 h m', { message: 'Jan  5 10:00:00:00 h m', parse_error: 'bad timestamp' }],
    ['<13>1 2024-13-01T00:00:00Z h a - - - m', { message: 'm', device_id: 'h', parse_error: 'bad timestamp', time: undefined }],
    ['<13>1 2024-01-05T10:00:00 h a - - - m', { message: 'm', parse_error: 'bad timestamp' }],
    ['<13>1 2024-01-05T10:00:60Z h a - - - m', { parse_error: 'bad timestamp' }],
    ['<13>1 2024-01-05T10:00:00+24:00 h a - - - m', { parse_error: 'bad timestamp' }],
    ['<13>1 yesterday h a - - - m', { message: 'm', parse_error: 'bad timestamp' }],
    ['<13>1 2024-01-05T10:00:00Z host', { message: '<13>1 2024-01-05T10:00:00Z host', parse_error: 'missing fields', time: '2024-01-05T10:00:00Z' }],
    ['<13>1 2024-01-05T10:00:00Z host app 1 ID ', { message: '<13>1 2024-01-05T10:00:00Z host app 1 ID ', parse_error: 'missing fields', device_id: 'host' }],
    ['<13>1 bad host app', { parse_error: 'bad timestamp, missing fields', device_id: 'host' }],
    ['<13>1 ', { message: '<13>1 ', parse_error: 'missing fields' }],
    ['<13>Jan  5 10:00:00 h app: a\u0000b', { message: 'a\u0000b', parse_error: undefined }],
  ];
  for (const [line, want] of cases) {
    const d = parse(line);
    const got: Record<string, unknown> = { ...d, parse_error: d.data.parse_error };
    for (const [k, v] of Object.entries(want)) t.equal(got[k], v, `${JSON.stringify(line)}: ${k}`);
  }
  const sd = parse('<13>1 2024-01-05T10:00:00Z host app 1 ID ');
  t.same([sd.data.app_name, sd.data.procid, sd.data.msgid], ['app', '1', 'ID'], 'fields before the missing one kept');
});

t.test('invalid UTF-8 is decoded with U+FFFD and flagged; truncation is flagged', async (t) => {
  const bad = parse(Buffer.concat([Buffer.from('<13>Jan  5 10:00:00 h app: bad '), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from(' end')]));
  t.equal(bad.message, 'bad \uFFFD\uFFFD( end');
  t.equal(bad.data.invalid_utf8, true);
  t.equal(parse('<13>Jan  5 10:00:00 h app: café').data.invalid_utf8, undefined);
  const cut = Buffer.concat([Buffer.from('<13>1 - h app - - - caf'), Buffer.from('é').subarray(0, 1)]);
  t.same(parse(cut, RECEIVED, true).data, { facility: 'user', severity: 'notice', app_name: 'app', truncated: true }, 'a character cut by truncation is dropped, not flagged');
  t.equal(parse(cut, RECEIVED, true).message, 'caf');
  t.equal(parse(cut).data.invalid_utf8, true, 'the same bytes untruncated are invalid');
  t.equal(parse(Buffer.from('<13>1 - h app - - - 😀'), RECEIVED, true).message, '😀', 'a complete 4-byte character at the cut is kept');
  t.equal(parse('<13>1 - h app - - - m', RECEIVED, false).data.truncated, undefined);
});

t.test('random bytes always give a Draft', async (t) => {
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = Buffer.from('<>0123456789 -[]="\\:TZ+.JanFeb\n\r\u0000é');
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.alloc(rnd(80));
    for (let j = 0; j < b.length; j++) b[j] = rnd(3) === 0 ? rnd(256) : alphabet[rnd(alphabet.length)];
    if (rnd(2) === 0) Buffer.from(i % 2 ? '<13>1 ' : '<13>Jan  5 10:00:00 ').copy(b);
    const d = parseSyslog(b, RECEIVED, { truncated: rnd(2) === 0 });
    if (!LOG_LEVELS.includes(d.log_level) || typeof d.message !== 'string' || typeof d.device_id !== 'string') t.fail(`bad draft for ${b.toString('hex')}`);
    if (d.time !== undefined && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$/.test(d.time)) t.fail(`bad time ${d.time}`);
  }
  t.pass('3000 random inputs');
});

const texts = (framed: Framed[]): string[] => framed.map((f) => `${f.truncated ? '!' : ''}${f.msg.toString('latin1')}`);

t.test('octet counting, split across chunks at every offset', async (t) => {
  const msgs = ['<13>1 - h a - - - one', '<14>1 - h a - - - two\nwith LF inside', 'x', '<15>Jan  5 10:00:00 h a: 1234567890'];
  const stream = Buffer.from(msgs.map((m) => `${Buffer.byteLength(m)} ${m}`).join(''));
  for (let k = 0; k <= stream.length; k++) {
    const f = new SyslogFraming(1024);
    const got = [...f.push(stream.subarray(0, k)), ...f.push(stream.subarray(k)), ...f.end()];
    t.same(texts(got), msgs, `split at ${k}`);
  }
  const f = new SyslogFraming(1024);
  const got: Framed[] = [];
  for (const byte of stream) got.push(...f.push(Buffer.from([byte])));
  t.same(texts(got), msgs, 'byte by byte');
});

t.test('mixed framing, fallbacks and blank lines', async (t) => {
  const f = new SyslogFraming(1024);
  const stream = '5 hello<13>LF framed\n3 abc\n\r\n\n<14>x\r\n05 leading zero\n2024-01-05T10:00:00Z host no PRI\n123abc\n12345678901 eleven digits\n';
  t.same(texts(f.push(Buffer.from(stream))), [
    'hello', '<13>LF framed', 'abc', '<14>x\r', '05 leading zero', '2024-01-05T10:00:00Z host no PRI', '123abc', '12345678901 eleven digits',
  ]);
  t.same(texts(f.end()), []);
  const g = new SyslogFraming(1024);
  t.same(texts(g.push(Buffer.from('<13>partial'))), []);
  t.same(texts(g.end()), ['<13>partial'], 'end() returns the last LF message without its LF');
  const h = new SyslogFraming(1024);
  t.same(texts(h.push(Buffer.from('10 <13>ab'))), []);
  t.same(texts(h.end()), ['!<13>ab'], 'an octet-counted message cut short is flagged');
  const i = new SyslogFraming(1024);
  t.same(texts(i.push(Buffer.from('42'))), []);
  t.same(texts(i.end()), ['42'], 'digits without SP are text');
  const zero = new SyslogFraming(1024);
  const line = Buffer.from('<13>in one chunk\n');
  const [one] = zero.push(line);
  t.ok(one.msg.buffer === line.buffer && one.msg.byteOffset === line.byteOffset, 'a message within one chunk is a view of it');
});

t.test('a 1 MB message through maxBytes 65536: cut, flagged, never buffered beyond the limit', async (t) => {
  const max = 65536;
  for (const framing of ['lf', 'octets'] as const) {
    const body = Buffer.alloc(1 << 20, 'a');
    Buffer.from('<13>1 - h a - - - ').copy(body);
    const stream = Buffer.concat([framing === 'lf' ? body : Buffer.concat([Buffer.from(`${body.length} `), body]), Buffer.from(framing === 'lf' ? '\n' : ''), Buffer.from('9 <13>after\n')]);
    const f = new SyslogFraming(max);
    const peek = f as unknown as { size: number };
    const got: { at: number; framed: Framed }[] = [];
    for (let at = 0; at < stream.length; at += 1000) {
      for (const framed of f.push(stream.subarray(at, at + 1000))) got.push({ at, framed });
      if (peek.size > max) t.fail(`${peek.size} bytes held at ${at}`);
    }
    t.equal(got.length, 2, framing);
    t.equal(got[0].framed.truncated, true);
    t.equal(got[0].framed.msg.length, max);
    t.same(got[0].framed.msg.subarray(0, 18).toString(), '<13>1 - h a - - - ');
    if (framing === 'lf') t.ok(got[0].at < max + 1000, `LF message emitted as the limit is passed (chunk at ${got[0].at})`);
    t.same(texts([got[1].framed]), ['<13>after'], 'the next message is intact');
    const parsed = parseSyslog(got[0].framed.msg, RECEIVED, { truncated: true });
    t.equal(parsed.data.truncated, true);
    t.equal(parsed.message.length, max - 18);
  }
  const exact = new SyslogFraming(10);
  t.same(texts(exact.push(Buffer.from('1234567890\n10 abcdefghijabcdefghij\nabcdefghijk\n'))), ['1234567890', 'abcdefghij', 'abcdefghij', '!abcdefghij'], 'exactly maxBytes is not truncated');
  t.same(texts(exact.push(Buffer.from('12345678901\n11 abcdefghijk'))), ['!1234567890', '!abcdefghij'], 'over the limit: digits that are text, octet-counted');
  t.throws(() => new SyslogFraming(9), RangeError);
});
