/**
 * The syslog listeners of a real logd (TCP, UDP, TLS, RELP) driven by
 * hand-made senders: mapping, bad input, the allow list, the connection
 * limit, backpressure and a SIGTERM mid-stream. The real rsyslog and
 * syslog-ng are in test/shippers.test.ts.
 */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import Redis from 'ioredis';
import t from 'tap';
import { freePort, waitFor } from './helpers/services';
import { metric, startLogd, startStack } from './helpers/logd';

const octets = (lines: string[]): Buffer => Buffer.concat(lines.map((l) => {
  const b = Buffer.from(l);
  return Buffer.concat([Buffer.from(`${b.length} `), b]);
}));

async function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
  return s;
}

/** Resolves when the server closes `s` (true) or after `ms` with it still open (false). */
const closedWithin = (s: net.Socket, ms: number): Promise<boolean> => new Promise((resolve) => {
  const timer = setTimeout(() => resolve(false), ms);
  s.once('close', () => { clearTimeout(timer); resolve(true); });
  s.on('error', () => undefined);
});

/** A self-signed certificate for 127.0.0.1. */
function certificate(): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logd-tls-'));
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

t.test('syslog listeners', async (t) => {
  const [tcp, udp, tlsPort, relp] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const pem = certificate();
  const { redis, pg, logd } = await startStack(t, {
    workers: 1,
    env: {
      LOGD_SYSLOG_TCP_PORT: String(tcp), LOGD_SYSLOG_UDP_PORT: String(udp), LOGD_SYSLOG_TLS_PORT: String(tlsPort), LOGD_SYSLOG_RELP_PORT: String(relp),
      LOGD_SYSLOG_TLS_CERT: pem.cert, LOGD_SYSLOG_TLS_KEY: pem.key,
      LOGD_SYSLOG_ALLOW: '127.0.0.1/32', LOGD_JOURNAL_ALLOW: '127.0.0.1/32',
      LOGD_SYSLOG_MAX_CONNECTIONS: '4', LOGD_SYSLOG_MAX_LINE_BYTES: '65536',
    },
  });
  const rowsOf = (device: string) => pg.query<Record<string, any>>('SELECT device_id, log_level, message, log_data, created_at FROM logs WHERE device_id = $1 ORDER BY id', [device]);

  await t.test('RFC 5424 octet-counted and RFC 3164 newline-framed, mapped to the model', async (t) => {
    const s = await connect(tcp);
    s.write(octets([
      '<165>1 2026-12-01T22:14:15.003123+01:00 web-1 nginx 4711 ID47 [exampleSDID@32473 iut="3" eventSource="App\\"li\\]cation"][meta seq="1"] \uFEFFan RFC 5424 line',
      '<0>1 2026-12-01T21:00:00Z web-1 kernel - - - panic',
    ]));
    s.end('<30>Dec  1 21:30:00 db-1 postgres[812]: checkpoint complete\n<15>Dec  1 21:30:01 db-1 cron: debug line\r\n');
    const web = await waitFor('web-1 rows', async () => { const r = await rowsOf('web-1'); return r.length === 2 && r; });
    t.equal(web[0].log_level, 'INFO', 'notice');
    t.same(web[0].log_data, {
      facility: 'local4', severity: 'notice', app_name: 'nginx', procid: '4711', msgid: 'ID47',
      sd: { 'exampleSDID@32473': { iut: '3', eventSource: 'App"li]cation' }, meta: { seq: '1' } },
    });
    t.equal(web[0].message, 'an RFC 5424 line', 'the BOM is not part of the message');
    t.equal(new Date(web[0].created_at).toISOString(), '2026-12-01T21:14:15.003Z');
    const [us] = await pg.query<{ us: string }>("SELECT extract(microseconds FROM created_at)::text AS us FROM logs WHERE device_id = 'web-1' ORDER BY id LIMIT 1");
    t.equal(us.us, '15003123', 'microseconds kept');
    t.same([web[1].log_level, web[1].message, web[1].log_data], ['CRITICAL', 'panic', { facility: 'kern', severity: 'emerg', app_name: 'kernel' }]);
    const db = await waitFor('db-1 rows', async () => { const r = await rowsOf('db-1'); return r.length === 2 && r; });
    t.same(db.map((r) => [r.log_level, r.message]), [['INFO', 'checkpoint complete'], ['DEBUG', 'debug line']]);
    t.match(db[0].log_data, { facility: 'daemon', severity: 'info', app_name: 'postgres', procid: '812' });
    t.equal(new Date(db[0].created_at).toISOString(), `${new Date().getUTCFullYear() - (new Date().getUTCMonth() === 0 ? 1 : 0)}-12-01T21:30:00.000Z`, 'RFC 3164: UTC, the year that puts it nearest the receive time');
  });

  await t.test('bad lines are stored with what parses, and delay no other connection', async (t) => {
    const bad = await connect(tcp);
    const good = await connect(tcp);
    const huge = `<13>1 2026-12-01T10:00:00Z bad-1 app - - - ${'x'.repeat(1 << 20)}`;
    bad.write(Buffer.concat([
      Buffer.from('no PRI here\n'),
      Buffer.from('<13>1 yesterday bad-1 app - - - bad timestamp\n'),
      Buffer.from('<13>1 2026-12-01T10:00:00Z bad-1 app - - - nul\u0000inside\n'),
      Buffer.from([...Buffer.from('<13>1 2026-12-01T10:00:00Z bad-1 app - - - latin1 '), 0xe9, 0x0a]),
      Buffer.from(`${huge}\n`),
    ]));
    for (let i = 0; i < 100; i++) good.write(`<14>1 2026-12-01T10:00:00Z good-1 app - - - line ${i}\n`);
    good.end();
    const fine = await waitFor('good-1 rows', async () => { const r = await rowsOf('good-1'); return r.length === 100 && r; });
    t.same(fine.map((r) => r.message), Array.from({ length: 100 }, (_, i) => `line ${i}`), 'the other connection: all, in order');
    bad.end();
    const rows = await waitFor('bad-1 rows', async () => { const r = await pg.query<Record<string, any>>("SELECT * FROM logs WHERE device_id IN ('bad-1', '127.0.0.1') ORDER BY id"); return r.length === 5 && r; });
    t.match(rows[0], { device_id: '127.0.0.1', message: 'no PRI here', log_data: { parse_error: 'no PRI' } }, 'no hostname: the sender\'s address');
    t.match(rows[1], { message: 'bad timestamp', log_data: { parse_error: 'bad timestamp' } });
    t.equal(rows[2].message, 'nul\uFFFDinside', 'NUL replaced');
    t.match(rows[3], { message: 'latin1 \uFFFD', log_data: { invalid_utf8: true } });
    t.match(rows[4].log_data, { truncated: true, message_truncated: 65536 - '<13>1 2026-12-01T10:00:00Z bad-1 app - - - '.length });
    t.equal(rows[4].message.length, 5000, 'the message is cut to the model\'s 5000 characters');
  });

  await t.test('UDP, TLS and RELP', async (t) => {
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.send('<12>Dec  1 21:30:00 udp-1 app: over udp\n', udp, '127.0.0.1', () => r()));
    u.close();
    const s = tls.connect({ host: '127.0.0.1', port: tlsPort, ca: execFileSync('cat', [pem.cert]) });
    await new Promise((r) => s.once('secureConnect', r));
    s.end(octets(['<14>1 2026-12-01T10:00:00Z tls-1 app - - - over tls']));
    const r = await connect(relp);
    const answers: string[] = [];
    r.on('data', (d) => answers.push(d.toString()));
    const offers = 'relp_version=0\nrelp_software=test\ncommands=syslog';
    const msgs = ['<14>1 2026-12-01T10:00:00Z relp-1 app - - - one', '<14>1 2026-12-01T10:00:00Z relp-1 app - - - two'];
    r.write(`1 open ${Buffer.byteLength(offers)} ${offers}\n${msgs.map((m, i) => `${i + 2} syslog ${Buffer.byteLength(m)} ${m}\n`).join('')}4 close 0\n`);
    await new Promise((res) => r.once('close', res));
    const said = answers.join('');
    t.match(said, /^1 rsp \d+ 200 OK\nrelp_version=0\nrelp_software=logd\ncommands=syslog\n2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 6 200 OK\n/, 'RELP: open answered, each message acknowledged, then the close');
    for (const [device, message] of [['udp-1', 'over udp'], ['tls-1', 'over tls'], ['relp-1', 'one']]) {
      const [row] = await waitFor(`${device}`, async () => { const x = await rowsOf(device); return x.length > 0 && x; });
      t.equal(row.message, message, device);
    }
    t.same((await rowsOf('relp-1')).map((x) => x.message), ['one', 'two'], 'acknowledged RELP messages are in PostgreSQL');
  });

  await t.test('sources outside syslog.allow and journal.allow are refused, and counted', async (t) => {
    const s = await connect(tcp, '127.0.0.2');
    s.write('<14>1 2026-12-01T10:00:00Z refused-1 app - - - not allowed\n');
    t.ok(await closedWithin(s, 5000), 'TCP from 127.0.0.2: closed');
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.2', () => r()));
    await new Promise<void>((r) => u.send('<14>Dec  1 21:30:00 refused-1 app: not allowed', udp, '127.0.0.1', () => r()));
    u.close();
    const upload = await new Promise<number>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: logd.port, localAddress: '127.0.0.2', path: '/upload', method: 'POST', headers: { 'content-type': 'application/vnd.fdo.journal' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
      req.end('MESSAGE=x\n\n');
    });
    t.equal(upload, 403, 'POST /upload from 127.0.0.2: 403');
    await waitFor('refusals counted', async () => (await metric(logd, 'logd_listener_refused_total{listener="udp",reason="allow"}')) === 1
      && (await metric(logd, 'logd_listener_refused_total{listener="tcp",reason="allow"}')) === 1
      && (await metric(logd, 'logd_listener_refused_total{listener="journal",reason="allow"}')) === 1);
    t.same(await rowsOf('refused-1'), [], 'nothing stored');
  });

  await t.test('syslog.max_connections: one more is closed at once', async (t) => {
    const open = await Promise.all([connect(tcp), connect(tcp), connect(relp), connect(tlsPort)]);
    await waitFor('4 connections', async () => (await metric(logd, 'logd_listener_connections{listener="tcp"}')) === 2);
    const extra = await connect(tcp);
    t.ok(await closedWithin(extra, 5000), 'the fifth is closed');
    t.equal(await metric(logd, 'logd_listener_refused_total{listener="tcp",reason="max_connections"}'), 1);
    for (const s of open) s.destroy();
  });

  await t.test('a full backlog pauses TCP reading (nothing dropped) and drops UDP (counted)', async (t) => {
    const r = new Redis(redis.url);
    t.teardown(() => r.disconnect());
    await r.set('logs:stream:backlog', 1_000_000_000);
    const s = await connect(tcp);
    const lines = Array.from({ length: 3000 }, (_, i) => `<14>1 2026-12-01T10:00:00Z paused-1 app - - - line ${i}`);
    s.write(octets(lines));
    const u = dgram.createSocket('udp4');
    for (let i = 0; i < 5; i++) await new Promise<void>((res) => u.send(`<14>Dec  1 21:30:00 dropped-1 app: ${i}`, udp, '127.0.0.1', () => res()));
    u.close();
    await waitFor('5 UDP drops', async () => (await metric(logd, 'logd_listener_dropped_total{listener="udp",reason="backlog"}')) === 5);
    t.same(await rowsOf('paused-1'), [], 'nothing of the TCP connection stored while the backlog is full');
    await r.decrby('logs:stream:backlog', 1_000_000_000);
    s.end();
    const rows = await waitFor('3000 rows', async () => { const x = await rowsOf('paused-1'); return x.length >= 3000 && x; }, 30_000);
    t.same(rows.map((x) => x.message), lines.map((_, i) => `line ${i}`), 'then all of it, once, in order');
    t.same(await rowsOf('dropped-1'), []);
  });

  await t.test('SIGTERM: what an open connection had sent is stored', async (t) => {
    const s = await connect(tcp);
    const lines = Array.from({ length: 5000 }, (_, i) => `<14>1 2026-12-01T10:00:00Z term-1 app - - - line ${i}`);
    await new Promise<void>((res) => s.write(octets(lines), () => res()));
    s.on('error', () => undefined);
    t.equal(await logd.stop('SIGTERM'), 0);
    const again = await startLogd({ redis, pg, workers: 1 });
    t.teardown(() => again.stop());
    const rows = await waitFor('5000 rows', async () => { const x = await rowsOf('term-1'); return x.length >= 5000 && x; }, 30_000);
    t.equal(rows.length, 5000, 'every line, once');
  });
});
