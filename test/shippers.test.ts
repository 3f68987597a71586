/**
 * The real shippers of a Debian VM, configured with the blocks of
 * docs/collect-vm-logs.md (test/helpers/shippers.ts), against one logd:
 * rsyslog omfwd over TCP and UDP, syslog-ng network() and http(), then
 * rsyslog omrelp across a SIGTERM and a kill -9 of logd, and
 * systemd-journal-upload through a refused upload, a kill -9 of logd and a
 * resume from its saved cursor. Each part sends numbered lines, each unique,
 * and checks that PostgreSQL holds every one exactly once with the device,
 * level, message and fields the guide's mapping promises.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { isDeepStrictEqual, promisify } from 'node:util';
import Redis from 'ioredis';
import t, { type Test } from 'tap';
import { cleanupAll, freePort, startPostgres, startRedis, waitFor } from './helpers/services';
import { LOGD_BIN, serviceEnv, startLogd, type Logd } from './helpers/logd';
import {
  DOC, JOURNAL_REMOTE, journalExport, makeJournal, makeShipperDir, missingShippers, runJournalUpload, snippet, startRsyslog,
  startSyslogNg, type JournalEntry, type Shipper,
} from './helpers/shippers';

const execFileP = promisify(execFile);

/** Lines per part. */
const N = 200;
/** rsyslog and syslog-ng write the short host name (no FQDN by default) of the machine as HOSTNAME / $HOST. */
const HOST = os.hostname().split('.')[0].slice(0, 50);
/** logd's [queue] max_backlog, in logs. */
const MAX_BACKLOG = 1_000_000;
const BACKLOG_KEY = 'logs:stream:backlog';

/** The priorities the lines are sent with, in turn (N / 5 lines each), and what logd makes of them. */
const GROUPS = [
  { priority: 'user.debug', level: 'DEBUG', facility: 'user', severity: 'debug' },
  { priority: 'daemon.notice', level: 'INFO', facility: 'daemon', severity: 'notice' },
  { priority: 'local3.warning', level: 'WARNING', facility: 'local3', severity: 'warning' },
  { priority: 'mail.err', level: 'ERROR', facility: 'mail', severity: 'err' },
  { priority: 'auth.crit', level: 'CRITICAL', facility: 'auth', severity: 'crit' },
] as const;
type Group = (typeof GROUPS)[number];
const groupOf = (i: number): Group => GROUPS[Math.floor((i * GROUPS.length) / N)];
const PID = 4242;

/** Line i of a part: the part's name, its number, and characters JSON and syslog must carry as they are. */
const line = (part: string, i: number): string => `${part} ${String(i).padStart(4, '0')} "q" \\ ü`;
const LINE = /^(\S+) (\d{4}) "q" \\ ü$/;

/**
 * Feeds lines from..to-1 of `part` through `logger`, tagged `part` with PID:
 * one call per priority group, or per line when `oneByOne` (a stream that
 * lasts a few hundred ms, for a fault to land in).
 */
async function feed(shipper: Shipper, part: string, from: number, to: number, oneByOne = false): Promise<void> {
  for (let i = from; i < to;) {
    const g = groupOf(i);
    const lines: string[] = [];
    for (; i < to && groupOf(i) === g && !(oneByOne && lines.length); i++) lines.push(line(part, i));
    await shipper.feedLines(lines, { tag: part, pid: PID, priority: g.priority });
  }
}

interface Row { device_id: string; log_level: string; message: string; log_data: Record<string, unknown>; created_at: Date; us: string }

/** What row of line i holds and what it should hold (device, level, fields, time). */
type Expect = (i: number, row: Row) => [got: unknown, want: unknown];
const mapped = (row: Row, more: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ device_id: row.device_id, log_level: row.log_level, log_data: row.log_data, ...more });

/**
 * Checks the rows of `part`: every line of `want` there, nothing else, each
 * once unless `duplicatesAllowed` (then returns how many rows are extra
 * copies), and each row as `expect` says (the first mismatches are shown).
 */
function checkRows(t: Test, part: string, rows: Row[], want: number[], expect: Expect, duplicatesAllowed = false): number {
  const wanted = new Set(want);
  const count = new Map<number, number>();
  const unexpected: string[] = [];
  const wrong: unknown[] = [];
  for (const row of rows) {
    const m = LINE.exec(row.message);
    if (m === null || m[1] !== part || !wanted.has(Number(m[2]))) {
      unexpected.push(row.message);
      continue;
    }
    const i = Number(m[2]);
    count.set(i, (count.get(i) ?? 0) + 1);
    const [got, should] = expect(i, row);
    if (!isDeepStrictEqual(got, should)) wrong.push({ line: i, got, want: should });
  }
  const missing = want.filter((i) => !count.has(i));
  const twice = [...count].filter(([, c]) => c > 1).map(([i]) => i);
  t.same({ missing, unexpected }, { missing: [], unexpected: [] }, `${part}: all ${want.length} lines stored, nothing else`);
  if (!duplicatesAllowed) t.same(twice, [], `${part}: each line once (${rows.length} rows)`);
  t.same(wrong.slice(0, 3), [], `${part}: device, level, fields and time of every row (${wrong.length} wrong)`);
  return rows.length - count.size;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, k) => from + k);

/** A time between `from` and `to` (epoch ms), with a second of slack each side for second-precision sources. */
const within = (at: Date, from: number, to: number): boolean => at.getTime() >= from - 1000 && at.getTime() <= to + 1000;

t.test('the real shippers, with the guide\'s blocks, into one logd', async (t) => {
  const missing = missingShippers();
  if (missing.length) throw new Error(`not installed (run scripts/bootstrap.sh --test): ${missing.join(', ')}`);

  const [tcp, relp] = [await freePort(), await freePort()];
  const [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
  const env = {
    LOGD_AUTH_MODE: 'token',
    // TCP and UDP on one number, as the guide has them
    LOGD_SYSLOG_TCP_PORT: String(tcp), LOGD_SYSLOG_UDP_PORT: String(tcp), LOGD_SYSLOG_RELP_PORT: String(relp),
    // Each start gets a new HTTP port, which is in the persister's default consumer name: one name across
    // restarts, as a real restart has, so a killed persister's pending entries are its successor's at once.
    INSTANCE_NAME: 'shippers-test',
    LOGD_QUEUE_MAX_BACKLOG: String(MAX_BACKLOG),
  };
  const shippers: Shipper[] = [];
  const dirs: string[] = [];
  const dirFor = async (name: string): Promise<string> => {
    const dir = await makeShipperDir(name);
    dirs.push(dir);
    return dir;
  };
  const r = new Redis(redis.url);
  let logd!: Logd; // the running one: started below, again after each stop
  t.teardown(async () => {
    r.disconnect();
    await Promise.all(shippers.map((s) => s.stop()));
    if (logd) await kill9(logd); // also a persister the journal part may have left stopped
    await cleanupAll();
    // LOGD_TEST_KEEP_DIRS=1 keeps the daemons' directories (configuration, logs, queues, journal) as for the servers
    if (process.env.LOGD_TEST_KEEP_DIRS !== '1') await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
  });
  logd = await startLogd({ redis, pg, env });

  const cli = async (...args: string[]): Promise<string> =>
    (await execFileP(process.execPath, [LOGD_BIN, ...args], { env: { ...process.env, ...serviceEnv(redis, pg) } })).stdout.trim();
  const [ingestToken, adminToken] = [await cli('token', 'create', '--name', 'syslog-ng', '--scope', 'ingest'), await cli('token', 'create', '--name', 'test', '--scope', 'admin')];

  const metric = async (series: string): Promise<number | undefined> => {
    const text = await (await fetch(`${logd.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text();
    const found = text.split('\n').find((l) => l.startsWith(`${series} `));
    return found === undefined ? undefined : Number(found.slice(series.length + 1));
  };
  const rowsOf = (part: string): Promise<Row[]> => pg.query<Row>(
    `SELECT device_id, log_level, message, log_data, created_at, (extract(epoch FROM created_at) * 1000000)::bigint::text AS us
     FROM logs WHERE message LIKE $1 ORDER BY id`, [`${part} %`]);
  /** The rows of `part` once at least `n` distinct lines are stored and nothing is left in the stream (or the deadline passed). */
  const settle = async (part: string, n: number, timeoutMs = 30_000): Promise<Row[]> => {
    try {
      return await waitFor(`${n} lines of ${part} stored and the stream drained`, async () => {
        const rows = await rowsOf(part);
        return new Set(rows.map((x) => x.message)).size >= n && (await r.get(BACKLOG_KEY)) === '0' && rows;
      }, timeoutMs);
    } catch (err) {
      t.comment((err as Error).message);
      return rowsOf(part); // checkRows says what is missing
    }
  };
  const restart = async (): Promise<void> => { logd = await startLogd({ redis, pg, env }); };

  const local = { [DOC.host]: '127.0.0.1' };
  const [rsTcp, rsUdp, rsRelp, ngTcp, ngHttp] = await Promise.all([
    dirFor('rs-tcp').then((dir) => startRsyslog(dir, snippet('rsyslog-tcp', { ...local, [DOC.tcpPort]: String(tcp) }))),
    dirFor('rs-udp').then((dir) => startRsyslog(dir, snippet('rsyslog-udp', { ...local, [DOC.udpPort]: String(tcp) }))),
    dirFor('rs-relp').then((dir) => startRsyslog(dir, snippet('rsyslog-relp', { ...local, [DOC.relpPort]: String(relp) }))),
    dirFor('ng-tcp').then((dir) => startSyslogNg(dir, snippet('syslog-ng-tcp', { ...local, [DOC.tcpPort]: String(tcp), [DOC.syslogNgDir]: dir }))),
    dirFor('ng-http').then((dir) => startSyslogNg(dir, snippet('syslog-ng-http', { ...local, [DOC.httpPort]: String(logd.port), [DOC.token]: ingestToken }))),
  ]);
  shippers.push(rsTcp, rsUdp, rsRelp, ngTcp, ngHttp);

  /** rsyslog's RSYSLOG_SyslogProtocol23Format: RFC 5424 with the tag as APP-NAME and the pid as PROCID, microsecond times. */
  const rfc5424 = (part: string, from: number, to: number): Expect => (i, row) => [mapped(row, { sent: within(row.created_at, from, to) }), {
    device_id: HOST,
    log_level: groupOf(i).level,
    log_data: { facility: groupOf(i).facility, severity: groupOf(i).severity, app_name: part, procid: String(PID) },
    sent: true,
  }];

  await t.test('rsyslog omfwd (TCP octet-counted, UDP), syslog-ng network() and http(): every line once, mapped', async (t) => {
    const from = Date.now();
    await Promise.all([feed(rsTcp, 'rs-tcp', 0, N), feed(rsUdp, 'rs-udp', 0, N), feed(ngTcp, 'ng-tcp', 0, N), feed(ngHttp, 'ng-http', 0, N)]);
    const [tcpRows, udpRows, ngTcpRows, ngHttpRows] = await Promise.all(['rs-tcp', 'rs-udp', 'ng-tcp', 'ng-http'].map((p) => settle(p, N)));
    const to = Date.now();
    checkRows(t, 'rs-tcp', tcpRows, range(0, N), rfc5424('rs-tcp', from, to));
    checkRows(t, 'rs-udp', udpRows, range(0, N), rfc5424('rs-udp', from, to));
    // RFC 3164 times carry no zone: the sender's local time, read as UTC
    const local3164 = -new Date().getTimezoneOffset() * 60_000;
    checkRows(t, 'ng-tcp', ngTcpRows, range(0, N), (i, row) => [mapped(row, { sent: within(new Date(row.created_at.getTime() - local3164), from, to) }), {
      device_id: HOST,
      log_level: groupOf(i).level,
      log_data: { facility: groupOf(i).facility, severity: groupOf(i).severity, tag: `ng-tcp[${PID}]`, app_name: 'ng-tcp', procid: String(PID) },
      sent: true,
    }]);
    // the guide's format-json template: severity through its rewrite, program, pid and facility in log_data
    checkRows(t, 'ng-http', ngHttpRows, range(0, N), (i, row) => [mapped(row, { sent: within(row.created_at, from, to) }), {
      device_id: HOST,
      log_level: groupOf(i).level,
      log_data: { program: 'ng-http', pid: String(PID), facility: groupOf(i).facility },
      sent: true,
    }]);
  });

  /**
   * Feeds lines 0..N-1 of `part` to rsyslog's omrelp, the second half line by line, and once logd has received a
   * quarter of them more, stops it with `fault` while rsyslog is sending; starts logd again and returns the rows.
   */
  const relpAcross = async (part: string, fault: () => Promise<void>): Promise<{ rows: Row[]; from: number }> => {
    const from = Date.now();
    const received = async (): Promise<number> => (await metric('logd_listener_messages_total{listener="relp"}')) ?? 0;
    const before = await received();
    await feed(rsRelp, part, 0, N / 2);
    let fed = false;
    const feeding = feed(rsRelp, part, N / 2, N, true).then(() => { fed = true; });
    const at = await waitFor(`logd to receive ${N / 2 + N / 4} lines of ${part}`, async () => {
      const n = (await received()) - before;
      return n >= N / 2 + N / 4 && n;
    }, 10_000);
    t.comment(`${part}: fault after logd had received ${at} lines, ${fed ? 'after' : 'while'} logger was feeding`);
    await fault();
    await feeding; // the rest waits in rsyslog's action queue
    await restart();
    return { rows: await settle(part, N, 60_000), from };
  };

  await t.test('rsyslog omrelp across a SIGTERM of logd: every line once', async (t) => {
    // startLogd runs logd with server.drain_ms = 0 (no proxy in front of it); the promise does not depend on it
    const { rows, from } = await relpAcross('relp-term', async () => { t.equal(await logd.stop('SIGTERM'), 0, 'logd exits 0 on SIGTERM'); });
    checkRows(t, 'relp-term', rows, range(0, N), rfc5424('relp-term', from, Date.now()));
  });

  await t.test('rsyslog omrelp across a kill -9 of logd: nothing lost (at least once)', async (t) => {
    const { rows, from } = await relpAcross('relp-kill', () => kill9(logd));
    const twice = checkRows(t, 'relp-kill', rows, range(0, N), rfc5424('relp-kill', from, Date.now()), true);
    t.comment(`RELP across kill -9: ${N} lines, ${twice} stored twice (resent: their acknowledgement died with logd)`);
  });

  await t.test('systemd-journal-upload: resumed after a refused upload and a kill -9 of logd, every entry once', async (t) => {
    const dir = await dirFor('journal');
    const state = path.join(dir, 'state');
    const at = BigInt(Date.now() - 60_000) * 1000n; // µs; entry i was written at `at + i`
    const entries = (from: number, to: number): JournalEntry[] => Array.from({ length: to - from + 1 }, (_, k) => {
      const i = from + k;
      return { __REALTIME_TIMESTAMP: String(at + BigInt(i)), _HOSTNAME: 'jrn-vm', PRIORITY: i % 8, SYSLOG_IDENTIFIER: 'jrn-app', TEST_N: i, MESSAGE: line('jrn', i) };
    });
    const LEVELS = ['CRITICAL', 'CRITICAL', 'CRITICAL', 'ERROR', 'WARNING', 'INFO', 'INFO', 'DEBUG'];
    // journal-remote numbers the entries of a new file from 1: entry i has __SEQNUM i
    const expect: Expect = (i, row) => [mapped(row, { us: row.us }), {
      device_id: 'jrn-vm',
      log_level: LEVELS[i % 8],
      log_data: { _BOOT_ID: '0123456789abcdef0123456789abcdef', SYSLOG_IDENTIFIER: 'jrn-app', TEST_N: String(i) },
      us: String(at + BigInt(i)),
    }];
    const TOTAL = 5000;

    // 1. entries 1..1000 uploaded; journal-upload saves the cursor of entry 1000
    const file = await makeJournal(dir, entries(1, 1000));
    const upload = () => runJournalUpload(file, logd.url, state);
    let run = await upload();
    t.equal(run.code, 0, `first upload: exit 0 ${run.stderr}`);
    t.equal((await settle('jrn', 1000)).length, 1000, '1000 entries stored');
    t.match(fs.readFileSync(state, 'utf8'), /LAST_CURSOR=s=[0-9a-f]{32};i=3e8;/, 'the cursor of entry 1000 (0x3e8) saved');

    // 2. entries 1001..5000 appended to the same journal file
    const more = journalExport(entries(1001, TOTAL));
    await new Promise<void>((resolve, reject) => {
      const child = execFile(JOURNAL_REMOTE, [`--output=${file}`, '-'], (err) => (err ? reject(err) : resolve()));
      child.stdin!.end(more);
    });

    // 3. the next upload refused after its first frame: the persister stopped and the backlog one log short of
    //    max_backlog, so the frame of entries 1000..1999 (1000 already stored, 999 new) goes in and the next
    //    gets 503 LOGD_BACKLOG_FULL; journal-upload exits non-zero and keeps its cursor
    const [persister] = logd.children('persister');
    process.kill(persister, 'SIGSTOP');
    try {
      await r.incrby(BACKLOG_KEY, MAX_BACKLOG - 1);
      run = await upload();
      t.not(run.code, 0, 'the refused upload: journal-upload exits non-zero');
      t.match(run.stderr, /503/, 'it names the 503');
    } finally {
      // 4. kill -9 with that frame in the stream, unpersisted
      await kill9(logd);
      await r.decrby(BACKLOG_KEY, MAX_BACKLOG - 1);
    }
    await restart();
    t.equal((await settle('jrn', 1999)).length, 1999, 'after the restart: the 999 entries of the refused upload stored, once');

    // 5. journal-upload again with the same state: entries 1000..5000 resent, 1000..1999 skipped
    run = await upload();
    t.equal(run.code, 0, `resumed upload: exit 0 ${run.stderr}`);
    t.equal(await metric('logd_listener_messages_total{listener="journal"}'), TOTAL - 1000 + 1, 'entries 1000..5000 sent');
    t.equal(await metric('logd_listener_dropped_total{listener="journal",reason="duplicate"}'), 1000, '1000..1999 skipped');
    checkRows(t, 'jrn', await settle('jrn', TOTAL), range(1, TOTAL + 1), expect);

    // 6. and once more: only the last entry, resent and skipped
    run = await upload();
    t.equal(run.code, 0, `upload with nothing new: exit 0 ${run.stderr}`);
    t.equal(await metric('logd_listener_dropped_total{listener="journal",reason="duplicate"}'), 1001, 'entry 5000 resent and skipped');
    t.equal((await settle('jrn', TOTAL)).length, TOTAL, `still ${TOTAL} rows`);
  });
});

/** kill -9 of a whole logd: the primary and its children at once. */
async function kill9(logd: Logd): Promise<void> {
  const children = [...logd.children('http'), ...logd.children('persister')];
  for (const pid of [logd.proc.pid!, ...children]) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  await logd.stop();
  await waitFor('the killed logd\'s children gone', () => children.every((pid) => !alive(pid)), 10_000);
}

/** Whether `pid` is a live process (not gone, not a zombie waiting for its reaper). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
