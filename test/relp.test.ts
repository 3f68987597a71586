/** RELP frames as rsyslog's omrelp (librelp) sends them, split anywhere; protocol violations; the server's responses. */
import t from 'tap';
import { RELP_OPEN_OFFERS, RELP_SERVERCLOSE, RelpParser, RelpProtocolError, relpResponse, type RelpFrame } from '../src/formats/relp';

const frame = (txnr: number, command: string, data = ''): string =>
  data === '' ? `${txnr} ${command} 0\n` : `${txnr} ${command} ${Buffer.byteLength(data)} ${data}\n`;
const shown = (frames: RelpFrame[]): string[] => frames.map((f) => `${f.txnr} ${f.command}${f.truncated ? '!' : ''} ${f.data.toString()}`);

// what librelp's client sends on connect (relpSessConnect: offers in reverse order of construction)
const OPEN = 'relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog';
const SESSION = frame(1, 'open', OPEN) +
  frame(2, 'syslog', '<13>1 2024-01-05T10:00:00Z web01 app - - - first') +
  frame(3, 'syslog', '<13>Jan  5 10:00:00 web01 app: with\nLF and ümlaut') +
  frame(4, 'close');
const EXPECTED = [
  `1 open ${OPEN}`,
  '2 syslog <13>1 2024-01-05T10:00:00Z web01 app - - - first',
  '3 syslog <13>Jan  5 10:00:00 web01 app: with\nLF and ümlaut',
  '4 close ',
];

t.test('an omrelp session, split across chunks at every offset', async (t) => {
  const bytes = Buffer.from(SESSION);
  t.equal(bytes.subarray(0, 12).toString(), '1 open 86 re', 'DATALEN counts octets');
  t.same(shown(new RelpParser().push(bytes)), EXPECTED, 'one chunk');
  for (let k = 0; k <= bytes.length; k++) {
    const p = new RelpParser();
    t.same(shown([...p.push(bytes.subarray(0, k)), ...p.push(bytes.subarray(k))]), EXPECTED, `split at ${k}`);
  }
  const p = new RelpParser();
  const got: RelpFrame[] = [];
  for (const byte of bytes) got.push(...p.push(Buffer.from([byte])));
  t.same(shown(got), EXPECTED, 'byte by byte');
  t.equal(got[3].data.length, 0, 'DATALEN 0: empty data');
});

t.test('TXNR: hints use 0, commands count from 1 and wrap after 999999999', async (t) => {
  const p = new RelpParser();
  t.same(shown(p.push(Buffer.from(frame(0, 'hint') + frame(1, 'open', 'relp_version=0') + frame(0, 'hint') + frame(2, 'syslog', 'x')))),
    ['0 hint ', '1 open relp_version=0', '0 hint ', '2 syslog x']);
  const wrap = new RelpParser();
  (wrap as unknown as { nextTxnr: number }).nextTxnr = 999_999_999;
  t.same(shown(wrap.push(Buffer.from(frame(999_999_999, 'syslog', 'a') + frame(1, 'syslog', 'b')))), ['999999999 syslog a', '1 syslog b']);
  t.same(shown(new RelpParser().push(Buffer.from('001 open 000000005 12345\n'))), ['1 open 12345'], 'leading zeros are digits');
});

t.test('protocol violations throw RelpProtocolError with the frames before them, then every push throws', async (t) => {
  const cases: [string, string, string[]][] = [
    ['x open 0\n', 'TXNR is not 1 to 9 digits', []],
    [' 1 open 0\n', 'TXNR is not 1 to 9 digits', []],
    ['1234567890 open 0\n', 'TXNR is not 1 to 9 digits', []],
    ['1 op3n 0\n', 'COMMAND is not 1 to 32 letters', []],
    ['1  0\n', 'COMMAND is not 1 to 32 letters', []],
    [`1 ${'a'.repeat(33)} 0\n`, 'COMMAND is not 1 to 32 letters', []],
    ['1 open \n', 'DATALEN is not 1 to 9 digits', []],
    ['1 open 1234567890 x\n', 'DATALEN is not 1 to 9 digits', []],
    ['1 open 3x abc\n', 'DATALEN is not followed by SP', []],
    ['1 open 0 \n', 'frame does not end with LF after DATALEN octets', []],
    ['1 open 3 abcd\n', 'frame does not end with LF after DATALEN octets', []],
    [frame(1, 'open', 'v') + frame(2, 'syslog', 'a') + frame(4, 'syslog', 'b'), 'TXNR 4 where 3 was due', ['1 open v', '2 syslog a']],
    [frame(2, 'open', 'v'), 'TXNR 2 where 1 was due', []],
    [frame(1, 'open', 'v') + frame(1, 'syslog', 'again'), 'TXNR 1 where 2 was due', ['1 open v']],
  ];
  for (const [input, reason, before] of cases) {
    const p = new RelpParser();
    const err = t.throws(() => p.push(Buffer.from(input)), RelpProtocolError, JSON.stringify(input)) as RelpProtocolError;
    t.equal(err.reason, reason, `${JSON.stringify(input)}: reason`);
    t.same(shown(err.frames), before, `${JSON.stringify(input)}: frames before`);
    const again = t.throws(() => p.push(Buffer.from(frame(1, 'open'))), RelpProtocolError, 'the session stays failed') as RelpProtocolError;
    t.equal(again.reason, reason);
  }
});

t.test('data over maxData is cut to maxData and flagged, the session goes on', async (t) => {
  const p = new RelpParser(10);
  const input = Buffer.from(frame(1, 'syslog', 'x'.repeat(25)) + frame(2, 'syslog', '0123456789') + frame(3, 'syslog', 'abcdefghijk'));
  const got: RelpFrame[] = [];
  for (let i = 0; i < input.length; i += 7) got.push(...p.push(input.subarray(i, i + 7)));
  t.same(shown(got), ['1 syslog! xxxxxxxxxx', '2 syslog 0123456789', '3 syslog! abcdefghij']);
  const big = new RelpParser();
  const [one] = big.push(Buffer.from(frame(1, 'syslog', 'y'.repeat(200 * 1024))));
  t.same([one.truncated, one.data.length], [true, 128 * 1024], 'default maxData: librelp\'s 128 KiB');
});

t.test('responses: rsp, the offers of open, serverclose', async (t) => {
  t.equal(relpResponse(2, 200, 'OK').toString(), '2 rsp 6 200 OK\n');
  t.equal(relpResponse(7, 500, 'command disabled').toString(), '7 rsp 20 500 command disabled\n');
  t.equal(relpResponse(1, 200, 'OK', RELP_OPEN_OFFERS).toString(), '1 rsp 56 200 OK\nrelp_version=0\nrelp_software=logd\ncommands=syslog\n');
  t.equal(RELP_SERVERCLOSE.toString(), '0 serverclose 0\n');
  const back = new RelpParser().push(Buffer.concat([relpResponse(1, 500, 'zu groß'), relpResponse(2, 200, 'OK', RELP_OPEN_OFFERS)]));
  t.same(shown(back), ['1 rsp 500 zu groß', `2 rsp 200 OK\n${RELP_OPEN_OFFERS}`], 'DATALEN in octets: the frames read back');
  t.same(shown(new RelpParser().push(RELP_SERVERCLOSE)), ['0 serverclose ']);
});
