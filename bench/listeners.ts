/**
 * Listeners benchmark (issue 13): `npm run bench:listeners`.
 *
 * One logd (default worker count, syslog TCP on) on the bench's own Redis
 * and PostgreSQL (bench/lib/stack.ts), and a load generator in a child
 * process (bench/lib/senders.ts). In rounds, the paths take turns, each for
 * a fixed time after a warm-up: the native JSON batch (100 logs/request),
 * syslog over 10 TCP connections, journal upload. Per path: the logs/s that
 * reached the stream (logd_logs_accepted_total), the CPU per log of each
 * process (/proc), and, once the persister has caught up, the rows in
 * PostgreSQL against what the sender delivered. Then the loss window of
 * plain TCP syslog: a paced, numbered stream while every logd process is
 * SIGKILLed (or the primary SIGTERMed), logd started again on the same
 * Redis and PostgreSQL, lines written vs rows stored.
 *
 * Writes the section between `<!-- bench:listeners:begin -->` and
 * `<!-- bench:listeners:end -->` of BENCHMARKS.md (after the ingest section
 * when absent) and prints it. See bench/README.md.
 *
 *   npm run bench:listeners   # BENCH_ROUNDS=3 BENCH_SECONDS=8 BENCH_WARMUP_S=2 BENCH_STOP_REPS=3 BENCH_OUT=BENCHMARKS.md (- = print only)
 */
import * as path from 'node:path';
import { freePort } from '../test/helpers/services';
import { QUIET_CORES, QuietGate, Sampler } from './lib/proc';
import { median } from './lib/run';
import {
  backlogWaits, benchServices, headerLines, int, measuredWindow, perLog, QUIET_PER_LOAD_MS, Sender, stackUs, us, versions, writeSection, type LoadMeasure, type RunHeader,
} from './lib/harness';
import type { Load, Result } from './lib/senders';
import { sleep, startLogd, stopAll, storage, type Logd } from './lib/stack';

const ROOT = path.resolve(__dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 2);
const STOP_REPS = Number(process.env.BENCH_STOP_REPS ?? 3);
const OUT = process.env.BENCH_OUT ?? path.join(ROOT, 'BENCHMARKS.md');
/** Lines/s of the paced sender whose loss is measured. */
const PACED_RATE = 20_000;
/** The paced sender writes this long before logd is stopped, in ms. */
const PACED_BEFORE_MS = 2000;
/** Budget of the quiet gate (waits while other processes use > QUIET_CORES cores) over the whole bench, in ms. */
const QUIET_BUDGET_MS = 30_000;
const BEGIN = '<!-- bench:listeners:begin -->';
const END = '<!-- bench:listeners:end -->';
const AFTER = '<!-- bench:ingest:end -->';

type PathKey = 'native' | 'syslog' | 'journal';

interface PathSpec {
  title: string;
  /** connections or concurrent uploads */
  conns: number;
  load(port: number, syslogPort: number, run: string): Load;
}

const NATIVE_CONNS = 20;
const SYSLOG_CONNS = 10;
const JOURNAL_UPLOADS = 4;
const JOURNAL_ENTRIES = 2000;

const PATHS: Record<PathKey, PathSpec> = {
  native: {
    title: 'native: POST /api/logs/batch, 100 logs/request',
    conns: NATIVE_CONNS,
    load: (port, _s, run) => ({ kind: 'native', port, run, connections: NATIVE_CONNS, per: 100 }),
  },
  syslog: {
    title: 'syslog TCP: RFC 5424, octet-counted',
    conns: SYSLOG_CONNS,
    load: (_p, syslogPort, run) => ({ kind: 'syslog', port: syslogPort, run, connections: SYSLOG_CONNS }),
  },
  journal: {
    title: `journal: POST /upload, ${JOURNAL_ENTRIES.toLocaleString('en-US')} entries/body, chunked`,
    conns: JOURNAL_UPLOADS,
    load: (port, _s, run) => ({ kind: 'journal', port, run, uploads: JOURNAL_UPLOADS, entries: JOURNAL_ENTRIES }),
  },
};
const ORDER: PathKey[] = ['native', 'syslog', 'journal'];

/** One load of one path. */
interface LoadRun extends LoadMeasure {
  path: PathKey;
  distinct: number;
}

/** One stop of logd under the paced syslog sender. */
interface StopRun {
  signal: 'SIGKILL' | 'SIGTERM';
  rep: number;
  result: Result;
  rows: number;
  distinct: number;
  /** highest line number stored, -1 when none */
  last: number;
  /** from the signal to the end of the sender's connection, ms */
  endedAfterMs?: number;
}

const log = (s: string): void => { process.stderr.write(`[bench:listeners ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`); };
const T0 = Date.now();

async function main(): Promise<void> {
  const startedAt = new Date();
  const { head, redisServer, redis, pgs } = await benchServices(ROOT, log);
  const syslogPort = await freePort();
  const env = {
    LOGD_SYSLOG_TCP_PORT: String(syslogPort),
    // nothing refused: each path is measured at the rate logd accepts, the persister catches up after each load
    LOGD_QUEUE_MAX_BACKLOG: '50000000',
    LOGD_RETENTION_DAYS: '36500',
    LOGD_INGEST_MAX_FUTURE_S: '31536000',
    // a restarted logd is the same consumer, so its persister takes back the entries it had read when killed
    INSTANCE_NAME: 'bench-listeners',
  };
  const start = (): Promise<Logd> => startLogd(ROOT, redisServer, pgs, { env });
  let logd = await start();
  const where = await storage(redis, pgs.pool);
  log(`logd on ${logd.url}, syslog TCP on ${syslogPort}, ${logd.children().map((c) => c.role).join(', ')}`);
  const sender = new Sender();
  const gate = new QuietGate(QUIET_BUDGET_MS, QUIET_CORES, QUIET_PER_LOAD_MS);
  const roots = (): number[] => [process.pid];

  const { drained, clean } = backlogWaits(redis, pgs.pool);

  const loads: LoadRun[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const key of ORDER) {
      await clean();
      await gate.wait(roots());
      const run = `${key[0]}${round}`;
      const whole = new Sampler(roots, 500).start();
      const done = sender.start(PATHS[key].load(logd.port, syslogPort, run));
      const { accepted, seconds, cpu: w } = await measuredWindow(logd, roots, WARMUP_S, SECONDS);
      sender.stop();
      const result = await done;
      const drainS = await drained();
      const all = whole.stop();
      const [{ rows, distinct }] = (await pgs.pool.query<{ rows: number; distinct: number }>('SELECT count(*)::int AS rows, count(DISTINCT message)::int AS distinct FROM logs')).rows;
      const l: LoadRun = {
        path: key, round, accepted, seconds, result, rows, distinct, drainS,
        windowUs: perLog(w.roles, accepted),
        cores: new Map([...w.roles].map(([role, r]) => [role, r.cpuS / w.seconds])),
        wholeUs: perLog(all.roles, rows),
        othersCores: w.othersCores,
      };
      loads.push(l);
      log(`${key} #${round}: ${int(accepted / seconds)} logs/s; HTTP workers ${us(l.windowUs.get('logd: http'))} µs/log; sent ${int(result.sent)}, delivered ${int(result.delivered)}, rows ${int(rows)} (${int(distinct)} distinct); drain ${drainS.toFixed(1)} s; others ${w.othersCores.toFixed(2)} cores`);
    }
  }

  await clean();
  const stops: StopRun[] = [];
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    for (let rep = 1; rep <= STOP_REPS; rep++) {
      await drained();
      const run = `${signal === 'SIGKILL' ? 'k' : 't'}${rep}`;
      const done = sender.start({ kind: 'paced', port: syslogPort, run, rate: PACED_RATE, maxMs: 60_000 });
      await sleep(PACED_BEFORE_MS);
      const pids = [...logd.children().map((c) => c.pid), logd.pid];
      const signalledAt = Date.now();
      if (signal === 'SIGKILL') for (const pid of pids) process.kill(pid, 'SIGKILL');
      // SIGTERM, or (after SIGKILL) only waits for the exit
      const exited = logd.stop();
      const result = await done;
      await exited;
      logd = await start();
      await drained();
      const [r] = (await pgs.pool.query<{ rows: number; distinct: number; last: number }>(
        "SELECT count(*)::int AS rows, count(DISTINCT message)::int AS distinct, coalesce(max(split_part(message, ':', 3)::int), -1) AS last FROM logs WHERE message LIKE $1",
        [`${run}:%`],
      )).rows;
      const s: StopRun = { signal, rep, result, ...r, endedAfterMs: result.endedAtMs === undefined ? undefined : result.endedAtMs - signalledAt };
      stops.push(s);
      log(`${signal} #${rep}: written ${int(result.delivered)} (sent ${int(result.sent)}), stored ${int(r.rows)} (${int(r.distinct)} distinct, last #${r.last}), lost ${int(result.delivered - r.rows)}; connection ended (${result.ending ?? '?'}) ${s.endedAfterMs ?? '—'} ms after the signal`);
    }
  }
  sender.close();

  const minutes = (Date.now() - T0) / 60_000;
  const section = report({ startedAt, minutes, head, where, loads, stops, machine: versions(), logd });
  await logd.stop();
  process.stdout.write(`${section}\n`);
  if (OUT !== '-') {
    writeSection(OUT, { begin: BEGIN, end: END, after: AFTER }, section);
    log(`wrote the listeners section of ${OUT}`);
  }
}

interface ReportInput extends Omit<RunHeader, 'workers'> {
  loads: LoadRun[];
  stops: StopRun[];
  logd: Logd;
}

function report(r: ReportInput): string {
  const of = (k: PathKey): LoadRun[] => r.loads.filter((l) => l.path === k);
  const rate = (l: LoadRun): number => l.accepted / l.seconds;
  const med = (k: PathKey, f: (l: LoadRun) => number): number => median(of(k).map(f));
  const native = med('native', rate);
  const syslog = med('syslog', rate);
  const journal = med('journal', rate);
  const want = Math.min(100_000, 0.7 * native);
  const pass = syslog >= want;
  const httpUs = (k: PathKey): number => med(k, (l) => l.windowUs.get('logd: http') ?? NaN);
  const exact = r.loads.every((l) => l.rows === l.result.delivered && l.distinct === l.rows && Object.keys(l.result.errors).length === 0);
  const others = r.loads.map((l) => l.othersCores);
  const stopsOf = (s: StopRun['signal']): StopRun[] => r.stops.filter((x) => x.signal === s);
  const lost = (x: StopRun): number => x.result.delivered - x.rows;
  const lostMs = (x: StopRun): number => (lost(x) / PACED_RATE) * 1000;
  const tail = (x: StopRun): boolean => x.distinct === x.rows && x.last + 1 === x.rows;
  const kill = stopsOf('SIGKILL');
  const term = stopsOf('SIGTERM');
  const roles = ['logd: http', 'bench-sender', 'logd: persister', 'redis-server', 'postgres'];
  const allUs = (k: PathKey): number => med(k, (l) => stackUs(l.wholeUs));

  const lines: string[] = [];
  const p = (s = ''): void => { lines.push(s); };
  p('## Listeners: syslog TCP and journal upload beside the native batch path (issue 13)');
  p();
  p('```');
  p('npm run bench:listeners   # bench/listeners.ts; BENCH_ROUNDS=3 BENCH_SECONDS=8 BENCH_WARMUP_S=2 BENCH_STOP_REPS=3');
  p('```');
  p();
  for (const line of headerLines({ ...r, workers: r.logd.config.workers }, others)) p(line);
  p();
  p('### Targets');
  p();
  p('| target | wanted | measured | |');
  p('|---|---|---|---|');
  p(`| syslog over ${SYSLOG_CONNS} TCP connections, accepted lines/s, in the same run as the native 100-log batch path | ≥ min(100,000, 70% × native ${int(native)}) = ${int(want)} | ${int(syslog)} (${((syslog / native) * 100).toFixed(0)}% of native) | **${pass ? 'PASS' : 'FAIL'}** |`);
  p(`| CPU µs per log in the HTTP workers, each path | reported | native ${us(httpUs('native'))}, syslog ${us(httpUs('syslog'))}, journal ${us(httpUs('journal'))} | n/a |`);
  p(`| every log delivered is in PostgreSQL once, each load | sent = stored, 0 duplicates | ${exact ? 'yes, all ' + r.loads.length + ' loads' : 'NO (see the per-load table)'} | **${exact ? 'PASS' : 'FAIL'}** |`);
  p(`| plain TCP syslog, loss window on kill -9 of every logd process (${int(PACED_RATE)} lines/s) | measured | median ${int(median(kill.map(lost)))} lines = ${median(kill.map(lostMs)).toFixed(1)} ms, max ${int(Math.max(...kill.map(lost)))} lines = ${Math.max(...kill.map(lostMs)).toFixed(1)} ms | n/a |`);
  p(`| the same on SIGTERM of the primary | 0 lost | median ${int(median(term.map(lost)))}, max ${int(Math.max(...term.map(lost)))} lines | **${term.every((x) => lost(x) === 0) ? 'PASS' : 'FAIL'}** |`);
  p();
  p(`### Throughput and CPU per log (${ROUNDS} rounds × [native, syslog, journal], ${SECONDS} s each after ${WARMUP_S} s of warm-up; medians)`);
  p();
  p('Accepted = logd_logs_accepted_total over the window (logs in the Redis stream). CPU µs per log = utime + stime of the processes of a role over the window (/proc) / logs accepted in it; persister, Redis and PostgreSQL: over the whole load and until the persister caught up / rows stored. Cores = CPU of the role over the window / its length. All = every process of the stack and the sender, from the load\'s start until the persister caught up / rows stored: what one log costs the machine from sender to PostgreSQL.');
  p();
  p('| path | conns | accepted logs/s | per round | HTTP workers µs/log | HTTP workers cores | sender µs/log | persister µs/log | redis-server µs/log | postgres µs/log | all µs/log | catch-up after the load s |');
  p('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const k of ORDER) {
    const ls = of(k);
    p(`| ${PATHS[k].title} | ${PATHS[k].conns} | ${int(med(k, rate))} | ${ls.map((l) => int(rate(l))).join(', ')} | ${us(httpUs(k))} | ${med(k, (l) => l.cores.get('logd: http') ?? 0).toFixed(2)} | ${us(med(k, (l) => l.windowUs.get('bench-sender') ?? NaN))} | ${us(med(k, (l) => l.wholeUs.get('logd: persister') ?? NaN))} | ${us(med(k, (l) => l.wholeUs.get('redis-server') ?? NaN))} | ${us(med(k, (l) => l.wholeUs.get('postgres') ?? NaN))} | ${us(allUs(k))} | ${med(k, (l) => l.drainS).toFixed(1)} |`);
  }
  p();
  p('Per load (in the order run): logs/s; CPU µs per log over the window for ' + roles.slice(0, 2).join(', ') + '; over the load and catch-up for ' + roles.slice(2).join(', ') + '; logs the sender delivered (2xx answers; syslog: writes completed without error) and rows in PostgreSQL (distinct messages); other processes\' cores.');
  p();
  p('| path | round | logs/s | ' + roles.map((x) => `${x} µs`).join(' | ') + ' | delivered | rows (distinct) | sender errors | others |');
  p('|---|---|---|' + roles.map(() => '---').join('|') + '|---|---|---|---|');
  for (const l of r.loads) {
    const u = roles.map((x, i) => us((i < 2 ? l.windowUs : l.wholeUs).get(x)));
    const errs = Object.entries(l.result.errors).map(([c, n]) => `${c}: ${n}`).join(', ') || '0';
    p(`| ${l.path} | ${l.round} | ${int(rate(l))} | ${u.join(' | ')} | ${int(l.result.delivered)} | ${int(l.rows)} (${int(l.distinct)}) | ${errs} | ${l.othersCores.toFixed(2)} |`);
  }
  p();
  p('### Loss window of plain TCP syslog');
  p();
  p(`One connection writes numbered RFC 5424 lines at ${int(PACED_RATE)} lines/s; after ${PACED_BEFORE_MS / 1000} s every logd process (primary, HTTP workers, persister) is sent SIGKILL, or the primary SIGTERM; the sender keeps writing until its connection ends. logd is then started again on the same Redis and PostgreSQL and its persister catches up. Written = lines in writes whose callback reported no error (what the sender believes it delivered); lost = written − rows stored; lost ms = lost / rate. "Tail" = the rows stored are exactly lines 0..n, so every lost line came after the last one stored. How the connection ended: a reset (ECONNRESET) means logd's socket still held unread data when it was closed (Linux resets such a close); an orderly close (FIN) means logd had read everything sent before it.`);
  p();
  p('| stop | rep | written | stored (distinct) | lost lines | lost ms | tail | connection ended after the signal | how |');
  p('|---|---|---|---|---|---|---|---|---|');
  for (const x of r.stops) {
    p(`| ${x.signal} | ${x.rep} | ${int(x.result.delivered)} | ${int(x.rows)} (${int(x.distinct)}) | ${int(lost(x))} | ${lostMs(x).toFixed(1)} | ${tail(x) ? 'yes' : 'no'} | ${x.endedAfterMs === undefined ? '—' : `${int(x.endedAfterMs)} ms`} | ${x.result.ending === 'FIN' ? 'closed by logd (FIN)' : x.result.ending ?? '—'} |`);
  }
  p(`| SIGKILL | median / max | | | ${int(median(kill.map(lost)))} / ${int(Math.max(...kill.map(lost)))} | ${median(kill.map(lostMs)).toFixed(1)} / ${Math.max(...kill.map(lostMs)).toFixed(1)} | | | |`);
  p(`| SIGTERM | median / max | | | ${int(median(term.map(lost)))} / ${int(Math.max(...term.map(lost)))} | ${median(term.map(lostMs)).toFixed(1)} / ${Math.max(...term.map(lostMs)).toFixed(1)} | | | |`);
  p();
  p('### Interpretation');
  p();
  p(interpretation({ native, syslog, journal, want, pass, httpUs, allUs, exact, kill, term, lost, lostMs }));
  return lines.join('\n');
}

function interpretation(x: {
  native: number; syslog: number; journal: number; want: number; pass: boolean; httpUs(k: PathKey): number; allUs(k: PathKey): number; exact: boolean;
  kill: StopRun[]; term: StopRun[]; lost(s: StopRun): number; lostMs(s: StopRun): number;
}): string {
  const ratio = (k: PathKey): string => `${(x.httpUs(k) / x.httpUs('native')).toFixed(1)}×`;
  const endings = (ss: StopRun[]): string => [...new Set(ss.map((s) => (s.result.ending === 'FIN' ? 'an orderly close' : s.result.ending ?? 'no end seen')))].join(' or ');
  const termLost = x.term.map(x.lost);
  return [
    `Syslog over TCP reached ${int(x.syslog)} lines/s, ${((x.syslog / x.native) * 100).toFixed(0)}% of the native batch path's ${int(x.native)} logs/s in the same run (target ${int(x.want)}: ${x.pass ? 'met' : 'missed'}); journal upload reached ${int(x.journal)} entries/s.`,
    `All processes share the cores, so a path's rate depends on the CPU its HTTP worker needs per log and on what Redis, the persister and PostgreSQL take meanwhile; the µs per log are the figures that carry over to other machines: a syslog line costs the HTTP workers ${us(x.httpUs('syslog'))} µs (${ratio('syslog')} a log of a 100-log JSON batch, ${us(x.httpUs('native'))} µs) and a journal entry ${us(x.httpUs('journal'))} µs (${ratio('journal')}). From sender to PostgreSQL, every process included, a syslog line costs ${us(x.allUs('syslog'))} µs of CPU and a native log ${us(x.allUs('native'))} µs: where all of them share the cores, syslog's rate can reach about ${((x.allUs('native') / x.allUs('syslog')) * 100).toFixed(0)}% of native's.`,
    x.exact ? 'After every load, once the persister had caught up, PostgreSQL held exactly the logs each sender delivered, none twice.' : 'At least one load did not end with exactly the delivered logs in PostgreSQL: see the per-load table.',
    `Plain TCP syslog has no acknowledgement: on kill -9 a sender loses what logd had read but not yet appended (src/listen/batcher.ts: a connection's frame goes out 5 ms or 1000 lines after its first line, and up to 4,000 lines wait behind a frame being appended), what sat unread in logd's socket, and what it wrote after logd died until its connection ended (${endings(x.kill)}, median ${int(median(x.kill.map((s) => s.endedAfterMs ?? NaN)))} ms after the signal): median ${int(median(x.kill.map(x.lost)))} lines (${median(x.kill.map(x.lostMs)).toFixed(1)} ms of its stream at ${int(PACED_RATE)} lines/s), at most ${int(Math.max(...x.kill.map(x.lost)))}.`,
    termLost.every((n) => n === 0)
      ? 'On SIGTERM nothing was lost: logd stops accepting, reads each connection until it is quiet or server.drain_ms has passed, and stores what it read before it closes it.'
      : `On SIGTERM a sender that keeps writing lost median ${int(median(termLost))} lines, at most ${int(Math.max(...termLost))}: its connection is never quiet, so at the deadline (server.drain_ms; median ${int(median(x.term.map((s) => s.endedAfterMs ?? NaN)))} ms after the signal, ${endings(x.term)}) logd stops reading it, stores what it had taken in and closes it (src/listen/syslog.ts stop()); what the sender wrote after that is lost, as plain TCP syslog has no acknowledgement (RELP resends what was not acknowledged).`,
  ].join(' ');
}

main().then(
  () => stopAll().then(() => process.exit(0)),
  (err) => {
    process.stderr.write(`bench:listeners: ${(err as Error).stack ?? err}\n`);
    void stopAll().finally(() => process.exit(1));
  },
);
