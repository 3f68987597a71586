/**
 * POST /upload against a real logd: the journal export format as
 * systemd-journal-upload sends it (chunked), mapped to the model; a resent
 * upload stored once; a malformed body answered 400 with its offset and the
 * entries before it stored; the field allow list. The real
 * systemd-journal-upload is in test/shippers.test.ts.
 */
import t from 'tap';
import { exportBody, upload } from './helpers/journal';
import { metric, startStack, waitRows } from './helpers/logd';
import { waitFor } from './helpers/services';

const SEQNUM_ID = '0123456789abcdef0123456789abcdef';

/** A field in the binary form: name, LF, 64-bit little-endian length, the bytes, LF. */
function binary(name: string, value: Buffer): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(value.length));
  return Buffer.concat([Buffer.from(`${name}\n`), len, value, Buffer.from('\n')]);
}

t.test('POST /upload', async (t) => {
  const { pg, logd } = await startStack(t, {
    workers: 1,
    env: { LOGD_JOURNAL_FIELDS: 'SYSLOG_IDENTIFIER,_SYSTEMD_UNIT,BLOB,HUGE', LOGD_JOURNAL_MAX_FIELD_BYTES: '1024' },
  });
  const rowsOf = (device: string) => pg.query<Record<string, any>>(
    "SELECT device_id, log_level, message, log_data, created_at, extract(microseconds FROM created_at)::text AS us FROM logs WHERE device_id = $1 ORDER BY id", [device]);

  await t.test('entries mapped to the model, binary fields included, in any chunking', async (t) => {
    const entry = Buffer.concat([
      Buffer.from(`__CURSOR=s=${SEQNUM_ID};i=7\n__REALTIME_TIMESTAMP=1764672000123456\n__SEQNUM=7\n__SEQNUM_ID=${SEQNUM_ID}\n`),
      Buffer.from('_HOSTNAME=vm-7\nPRIORITY=3\nSYSLOG_IDENTIFIER=sshd\n_SYSTEMD_UNIT=ssh.service\n_PID=812\n'),
      binary('MESSAGE', Buffer.from('two\nlines')),
      binary('BLOB', Buffer.from([0, 1, 2, 0xff, 0x0a, 0x41])),
      binary('HUGE', Buffer.alloc(4096, 0x41)),
      Buffer.from('\n'),
    ]);
    const cut = [entry.subarray(0, 13), entry.subarray(13, 200), entry.subarray(200)];
    const r = await upload(logd.port, cut);
    t.equal(r.status, 200, r.text);
    t.equal(r.text, 'OK: 1 entries stored, 0 already stored\n');
    const [row] = await waitRows(pg, 1, "device_id = 'vm-7'");
    const [{ us }] = await rowsOf('vm-7');
    t.equal(row.log_level, 'ERROR');
    t.equal(row.message, 'two\nlines');
    t.equal(new Date(row.created_at).toISOString(), '2025-12-02T10:40:00.123Z');
    t.equal(us, '123456', 'microseconds kept');
    t.same(row.log_data, {
      SYSLOG_IDENTIFIER: 'sshd', _SYSTEMD_UNIT: 'ssh.service', BLOB: { base64: Buffer.from([0, 1, 2, 0xff, 0x0a, 0x41]).toString('base64') },
      fields_omitted: ['HUGE'],
    }, 'journal.fields keeps only its fields; a value over journal.max_field_bytes is named, not stored');
  });

  await t.test('a resent upload is stored once; entries without __SEQNUM_ID as sent', async (t) => {
    const first = await upload(logd.port, [exportBody(SEQNUM_ID.replace('0', 'f'), 1, 500, 'vm-resend')]);
    t.equal(first.text, 'OK: 500 entries stored, 0 already stored\n');
    const overlap = await upload(logd.port, [exportBody(SEQNUM_ID.replace('0', 'f'), 400, 600, 'vm-resend')]);
    t.equal(overlap.text, 'OK: 100 entries stored, 101 already stored\n', 'the resent part skipped, the rest stored');
    const rows = await waitFor('600 rows', async () => { const r = await rowsOf('vm-resend'); return r.length >= 600 && r; });
    t.same(rows.map((r) => r.message), Array.from({ length: 600 }, (_, i) => `entry ${i + 1}`), 'each entry once, in order');
    t.equal(await metric(logd, 'logd_listener_dropped_total{listener="journal",reason="duplicate"}'), 101);
    const plain = Buffer.from('_HOSTNAME=vm-plain\nMESSAGE=no seqnum\n\n');
    await upload(logd.port, [plain]);
    await upload(logd.port, [plain]);
    t.equal((await waitFor('2 rows', async () => { const r = await rowsOf('vm-plain'); return r.length === 2 && r; })).length, 2);
  });

  await t.test('a malformed body: 400 naming the offset, the entries before it stored', async (t) => {
    const good = exportBody(SEQNUM_ID.replace('0', 'e'), 1, 3, 'vm-bad');
    const r = await upload(logd.port, [good, Buffer.from('_HOSTNAME=vm-bad\nbad name=1\n\n')]);
    t.equal(r.status, 400);
    const body = JSON.parse(r.text);
    t.equal(body.code, 'LOGD_JOURNAL_INVALID');
    t.match(body.detail, new RegExp(`at byte ${good.length + '_HOSTNAME=vm-bad\n'.length}; the 3 entries before it are stored`));
    t.same((await waitFor('3 rows', async () => { const x = await rowsOf('vm-bad'); return x.length === 3 && x; })).map((x) => x.message), ['entry 1', 'entry 2', 'entry 3']);
    const type = await upload(logd.port, [good], 'application/json');
    t.equal(type.status, 415);
    t.match(JSON.parse(type.text), { code: 'LOGD_UNSUPPORTED_MEDIA_TYPE' });
  });
});
