/**
 * Protocols benchmark: `npm run bench:protocols`.
 *
 * One logd (default worker count) on the bench's own Redis and PostgreSQL
 * (bench/lib/stack.ts), and a load generator in a child process
 * (bench/lib/senders.ts, its `http` load). In rounds, the paths take turns,
 * each for a fixed time after a warm-up (and once, unmeasured, before the
 * first round): the native JSON batch (the reference), then OTLP/HTTP
 * protobuf and JSON, Loki protobuf, Elasticsearch bulk and NDJSON, each
 * plain and gzipped (the native batch gzipped too); 100 logs per request on
 * the same number of keep-alive connections, bodies from a pool built
 * before the load (bench/lib/protocols.ts). Per path: the logs/s that
 * reached the stream (logd_logs_accepted_total), its ratio to the native
 * path's in the same round, the CPU per log of each process (/proc), and,
 * once the persister has caught up, the rows in PostgreSQL from each body
 * against what the sender had answers for. A path whose route does not take
 * a probe request (before the rounds) is left out and named in the report.
 *
 * Writes the section between `<!-- bench:protocols:begin -->` and
 * `<!-- bench:protocols:end -->` of BENCHMARKS.md (after the listeners
 * section when absent) and prints it. See bench/README.md.
 *
 *   npm run bench:protocols   # BENCH_ROUNDS=3 BENCH_SECONDS=8 BENCH_WARMUP_S=2 BENCH_OUT=BENCHMARKS.md (- = print only) BENCH_PATHS=<regex of path keys>
 */
import * as path from 'node:path';
import { QUIET_CORES, QuietGate, Sampler } from './lib/proc';
import { buildBodies, FORMATS, taken, type Format } from './lib/protocols';
import { median } from './lib/run';
import {
  backlogWaits, benchServices, headerLines, int, measuredWindow, perLog, QUIET_PER_LOAD_MS, Sender, stackUs, us, versions, writeSection, type LoadMeasure, type RunHeader,
} from './lib/harness';
import type { Load } from './lib/senders';
import { sleep, startLogd, stopAll, storage, type Logd } from './lib/stack';

const ROOT = path.resolve(__dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 2);
const OUT = process.env.BENCH_OUT ?? path.join(ROOT, 'BENCHMARKS.md');
const ONLY = new RegExp(process.env.BENCH_PATHS ?? '.');
/** Keep-alive connections of every path. */
const CONNS = 20;
/** Logs per request. */
const PER = 100;
/** Distinct bodies per load, sent in turn. */
const POOL = 64;
/** A path must reach this share of the native path's accepted logs/s (median of the per-round ratios). */
const TARGET = 0.7;
/** Budget of the quiet gate (waits while other processes use > QUIET_CORES cores) over the whole bench, in ms. */
const QUIET_BUDGET_MS = 60_000;
const BEGIN = '<!-- bench:protocols:begin -->';
const END = '<!-- bench:protocols:end -->';
const AFTER = '<!-- bench:listeners:end -->';

interface PathSpec {
  key: string;
  format: Format;
  gzip: boolean;
  title: string;
}

const TITLES: Record<Format, string> = {
  native: 'native: POST /api/logs/batch, JSON',
  ndjson: 'NDJSON: POST /api/logs/batch, application/x-ndjson',
  'otlp-protobuf': 'OTLP/HTTP protobuf: POST /v1/logs',
  'otlp-json': 'OTLP/HTTP JSON: POST /v1/logs',
  'loki-protobuf': 'Loki protobuf (snappy): POST /loki/api/v1/push',
  'es-bulk': 'Elasticsearch bulk: POST /_bulk',
};
const ALL: PathSpec[] = FORMATS.flatMap((format) => [false, true].map((gzip) => ({
  key: `${format}${gzip ? '+gzip' : ''}`, format, gzip, title: `${TITLES[format]}${gzip ? ', gzip' : ''}`,
})));
const NATIVE = 'native';

/** One load of one path. */
interface LoadRun extends LoadMeasure {
  path: string;
  /** bodies whose rows in PostgreSQL differ from the logs the sender had answers for */
  bodiesOff: number;
}

const pct = (r: number): string => `${(r * 100).toFixed(0)}%`;
const log = (s: string): void => { process.stderr.write(`[bench:protocols ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`); };
const T0 = Date.now();

/** One request of a path's first body: undefined when the route takes all its logs, else what it answered. */
async function probe(logd: Logd, p: PathSpec): Promise<string | undefined> {
  const b = buildBodies(p.format, 'probe', 1, PER, p.gzip);
  try {
    const res = await fetch(`${logd.url}${b.path}`, { method: 'POST', headers: b.headers, body: b.bodies[0] });
    const answer = Buffer.from(await res.arrayBuffer());
    const n = taken(p.format, res.status, answer, PER);
    return n === PER ? undefined : typeof n === 'string' ? n : `${res.status}: took ${n} of ${PER} logs`;
  } catch (err) {
    return (err as Error).message;
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const { head, redisServer, redis, pgs } = await benchServices(ROOT, log);
  const env = {
    // nothing refused: each path is measured at the rate logd accepts, the persister catches up after each load
    LOGD_QUEUE_MAX_BACKLOG: '50000000',
    LOGD_RETENTION_DAYS: '36500',
    LOGD_INGEST_MAX_FUTURE_S: '31536000',
  };
  const logd = await startLogd(ROOT, redisServer, pgs, { env });
  const where = await storage(redis, pgs.pool);
  log(`logd on ${logd.url}, ${logd.children().map((c) => c.role).join(', ')}`);

  const { drained, clean } = backlogWaits(redis, pgs.pool);

  const paths: PathSpec[] = [];
  const missing: { path: PathSpec; why: string }[] = [];
  for (const p of ALL.filter((x) => x.key === NATIVE || ONLY.test(x.key))) {
    const why = await probe(logd, p);
    if (why === undefined) paths.push(p);
    else if (p.key === NATIVE) throw new Error(`the native path does not take a batch: ${why}`);
    else {
      missing.push({ path: p, why });
      log(`${p.key}: left out, the probe request was answered ${why}`);
    }
  }

  const sender = new Sender();
  const gate = new QuietGate(QUIET_BUDGET_MS, QUIET_CORES, QUIET_PER_LOAD_MS);
  const roots = (): number[] => [process.pid];
  const load = (p: PathSpec, run: string): Load => ({ kind: 'http', port: logd.port, run, connections: CONNS, format: p.format, gzip: p.gzip, per: PER, bodies: POOL });
  // one unmeasured load of each path first: the first round starts with every route's code compiled
  for (const [i, p] of paths.entries()) {
    await clean();
    const done = sender.start(load(p, `w${i}`));
    await sleep(WARMUP_S * 1000);
    sender.stop();
    await done;
  }
  log(`warmed up ${paths.map((p) => p.key).join(', ')}`);

  const loads: LoadRun[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, p] of paths.entries()) {
      await clean();
      await gate.wait(roots());
      const run = `r${round}p${i}`;
      const whole = new Sampler(roots, 500).start();
      const done = sender.start(load(p, run));
      const { accepted, seconds, cpu: w } = await measuredWindow(logd, roots, WARMUP_S, SECONDS);
      sender.stop();
      const result = await done;
      const drainS = await drained();
      const all = whole.stop();
      const byBody = (await pgs.pool.query<{ b: number; n: number }>(
        "SELECT split_part(message, ':', 3)::int AS b, count(*)::int AS n FROM logs WHERE message LIKE $1 GROUP BY 1",
        [`${run}:0:%`],
      )).rows;
      const [{ rows }] = (await pgs.pool.query<{ rows: number }>('SELECT count(*)::int AS rows FROM logs')).rows;
      const stored = new Map(byBody.map((r) => [r.b, r.n]));
      const perBody = result.perBody ?? [];
      const bodiesOff = perBody.filter((n, b) => (stored.get(b) ?? 0) !== n).length + byBody.filter((r) => !(r.b < perBody.length)).length;
      const l: LoadRun = {
        path: p.key, round, accepted, seconds, result, rows, bodiesOff, drainS,
        windowUs: perLog(w.roles, accepted),
        cores: new Map([...w.roles].map(([role, r]) => [role, r.cpuS / w.seconds])),
        wholeUs: perLog(all.roles, rows),
        othersCores: w.othersCores,
      };
      loads.push(l);
      log(`${p.key} #${round}: ${int(accepted / seconds)} logs/s; HTTP workers ${us(l.windowUs.get('logd: http'))} µs/log; sent ${int(result.sent)}, delivered ${int(result.delivered)}, rows ${int(rows)} (bodies off: ${bodiesOff}); drain ${drainS.toFixed(1)} s; others ${w.othersCores.toFixed(2)} cores`);
    }
  }
  sender.close();

  const minutes = (Date.now() - T0) / 60_000;
  const section = report({ startedAt, minutes, head, where, paths, missing, loads, machine: versions(), logd });
  await logd.stop();
  process.stdout.write(`${section}\n`);
  if (OUT !== '-') {
    writeSection(OUT, { begin: BEGIN, end: END, after: AFTER }, section);
    log(`wrote the protocols section of ${OUT}`);
  }
}

interface ReportInput extends Omit<RunHeader, 'workers'> {
  paths: PathSpec[];
  missing: { path: PathSpec; why: string }[];
  loads: LoadRun[];
  logd: Logd;
}

/** Whether a load ended with exactly the logs the sender had answers for in PostgreSQL, each body's. */
const exact = (l: LoadRun): boolean => l.rows === l.result.delivered && l.bodiesOff === 0 && l.result.delivered === l.result.sent && Object.keys(l.result.errors).length === 0;

function report(r: ReportInput): string {
  const of = (k: string): LoadRun[] => r.loads.filter((l) => l.path === k);
  const rate = (l: LoadRun): number => l.accepted / l.seconds;
  const med = (k: string, f: (l: LoadRun) => number): number => median(of(k).map(f));
  const nativeIn = (round: number): number => rate(r.loads.find((l) => l.path === NATIVE && l.round === round)!);
  const ratio = (l: LoadRun): number => rate(l) / nativeIn(l.round);
  const httpUs = (k: string): number => med(k, (l) => l.windowUs.get('logd: http') ?? NaN);
  const allUs = (k: string): number => med(k, (l) => stackUs(l.wholeUs));
  const bytesPerLog = (k: string): number => med(k, (l) => (l.result.bytes ?? 0) / Math.max(l.result.sent, 1));
  const pass = (k: string): boolean => med(k, ratio) >= TARGET;
  const others = r.loads.map((l) => l.othersCores);
  const candidates = r.paths.filter((p) => p.key !== NATIVE);
  const allExact = r.loads.every(exact);
  const roles = ['logd: http', 'bench-sender', 'logd: persister', 'redis-server', 'postgres'];

  const lines: string[] = [];
  const p = (s = ''): void => { lines.push(s); };
  p('## Protocols: OTLP, Loki, Elasticsearch bulk and NDJSON beside the native batch path');
  p();
  p('```');
  p('npm run bench:protocols   # bench/protocols.ts; BENCH_ROUNDS=3 BENCH_SECONDS=8 BENCH_WARMUP_S=2');
  p('```');
  p();
  for (const line of headerLines({ ...r, workers: r.logd.config.workers }, others)) p(line);
  p();
  p(`Every path: ${PER} logs per request, ${CONNS} keep-alive connections, closed loop, bodies cycled from ${POOL} distinct ones built before the load (bench/lib/protocols.ts), gzip at zlib's default level. ${ROUNDS} rounds × ${r.paths.length} paths, ${SECONDS} s each after ${WARMUP_S} s of warm-up, after one unmeasured ${WARMUP_S} s load of each path; the native path runs first in each round. Logs/s = logd_logs_accepted_total over the window (logs in the Redis stream), median of the rounds; % of native = median of the rounds' ratios to the native path's logs/s in the same round. HTTP workers µs/log = their CPU (utime + stime, /proc) over the window / logs accepted in it; all µs/log = every process of the stack and the sender from the load's start until the persister caught up / rows stored. Rows: after every load, the rows in PostgreSQL from each body = the logs the sender had answers for from that body, and every log sent was answered as taken.`);
  p();
  if (r.missing.length) {
    p(`Left out (the route did not take a probe request before the rounds): ${r.missing.map((m) => `${m.path.key} (${m.why.replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 120)})`).join('; ')}.`);
    p();
  }
  p(`| path | logs/s | % of native | target ≥ ${pct(TARGET)} | HTTP workers µs/log | all µs/log | rows |`);
  p('|---|---|---|---|---|---|---|');
  for (const x of r.paths) {
    const verdict = x.key === NATIVE ? 'reference' : `**${pass(x.key) ? 'PASS' : 'FAIL'}**`;
    const rows = of(x.key).every(exact) ? `exact (${of(x.key).length} loads)` : `**off** in ${of(x.key).filter((l) => !exact(l)).length} of ${of(x.key).length} loads`;
    p(`| ${x.title} | ${int(med(x.key, rate))} | ${x.key === NATIVE ? '100%' : pct(med(x.key, ratio))} | ${verdict} | ${us(httpUs(x.key))} | ${us(allUs(x.key))} | ${rows} |`);
  }
  p();
  p('Per path (medians): body bytes per log on the wire, the rounds\' logs/s and ratios, the HTTP workers\' cores over the window, CPU µs per log of the sender over the window and of the persister, Redis and PostgreSQL over the load and catch-up, and the catch-up after the load.');
  p();
  p('| path | bytes/log | logs/s per round | % of native per round | HTTP workers cores | sender µs/log | persister µs/log | redis-server µs/log | postgres µs/log | catch-up s |');
  p('|---|---|---|---|---|---|---|---|---|---|');
  for (const x of r.paths) {
    const ls = of(x.key);
    p(`| ${x.key} | ${bytesPerLog(x.key).toFixed(0)} | ${ls.map((l) => int(rate(l))).join(', ')} | ${ls.map((l) => pct(ratio(l))).join(', ')} | ${med(x.key, (l) => l.cores.get('logd: http') ?? 0).toFixed(2)} | ${us(med(x.key, (l) => l.windowUs.get('bench-sender') ?? NaN))} | ${us(med(x.key, (l) => l.wholeUs.get('logd: persister') ?? NaN))} | ${us(med(x.key, (l) => l.wholeUs.get('redis-server') ?? NaN))} | ${us(med(x.key, (l) => l.wholeUs.get('postgres') ?? NaN))} | ${med(x.key, (l) => l.drainS).toFixed(1)} |`);
  }
  p();
  p('Per load (in the order run): logs/s; CPU µs per log over the window for ' + roles.slice(0, 2).join(', ') + '; over the load and catch-up for ' + roles.slice(2).join(', ') + '; logs sent, logs the answers took, rows in PostgreSQL, bodies whose rows differ from what their answers took; other processes\' cores.');
  p();
  p('| path | round | logs/s | ' + roles.map((x) => `${x} µs`).join(' | ') + ' | sent | taken | rows | bodies off | sender errors | others |');
  p('|---|---|---|' + roles.map(() => '---').join('|') + '|---|---|---|---|---|---|');
  for (const l of r.loads) {
    const u = roles.map((x, i) => us((i < 2 ? l.windowUs : l.wholeUs).get(x)));
    const errs = Object.entries(l.result.errors).map(([c, n]) => `${c.replace(/\s+/g, ' ').replace(/\|/g, '\\|')}: ${n}`).join(', ') || '0';
    p(`| ${l.path} | ${l.round} | ${int(rate(l))} | ${u.join(' | ')} | ${int(l.result.sent)} | ${int(l.result.delivered)} | ${int(l.rows)} | ${l.bodiesOff} | ${errs} | ${l.othersCores.toFixed(2)} |`);
  }
  p();
  p('### Interpretation');
  p();
  const passed = candidates.filter((x) => pass(x.key));
  const failed = candidates.filter((x) => !pass(x.key));
  const native = med(NATIVE, rate);
  p([
    `The native 100-log JSON batch reached ${int(native)} logs/s (median of ${ROUNDS} rounds), its HTTP workers spending ${us(httpUs(NATIVE))} µs per log.`,
    passed.length ? `At ≥ ${pct(TARGET)} of it in the same rounds: ${passed.map((x) => `${x.key} ${pct(med(x.key, ratio))}`).join(', ')}.` : '',
    failed.length ? `Below ${pct(TARGET)}: ${failed.map((x) => `${x.key} ${pct(med(x.key, ratio))} (HTTP workers ${us(httpUs(x.key))} µs/log, ${(httpUs(x.key) / httpUs(NATIVE)).toFixed(1)}× native's)`).join(', ')}.` : '',
    'All processes share the cores, so a path\'s rate follows the CPU its HTTP worker needs per log and what Redis, the persister and PostgreSQL take meanwhile; the µs per log are the figures that carry over to other machines.',
    allExact ? 'After every load, once the persister had caught up, PostgreSQL held exactly the logs each body\'s answers took, and every log sent was taken.' : 'At least one load did not end with exactly the logs its answers took in PostgreSQL, or had logs refused: see the per-load table.',
  ].filter(Boolean).join(' '));
  return lines.join('\n');
}

main().then(
  () => stopAll().then(() => process.exit(0)),
  (err) => {
    process.stderr.write(`bench:protocols: ${(err as Error).stack ?? err}\n`);
    void stopAll().finally(() => process.exit(1));
  },
);
