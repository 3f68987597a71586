/**
 * The ingest benchmark (issue 6): `npm run bench` (or `npm run bench -- --quick`).
 *
 * Starts its own stack on 127.0.0.1 (Redis with conf/redis.conf's settings,
 * PostgreSQL, logd with its default worker count, nginx with the shipped conf
 * rendered with a rate limit far above the offered load), measures the
 * ceilings (raw COPY, raw XADD), drives each scenario with wrk from separate
 * processes, direct to logd and through nginx, accounts for every log in
 * PostgreSQL, profiles logd under the 100-log load, and writes the
 * "## Ingest" section of BENCHMARKS.md. Stops everything it started, also on
 * Ctrl-C or errors. See bench/README.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyCeiling, xaddCeiling, type CopyCeiling, type XaddCeiling } from './lib/ceilings';
import { preload, timeDrain } from './lib/drain';
import { analyse, HTTP_LINE_RULES, HTTP_RULES, merge, PERSISTER_RULES } from './lib/cpuprofile';
import { group, markdown, plural, writeSection, type DrainReport, type Machine, type Report, type StepResult, type SustainStep, type Target } from './lib/report';
import { cleanSlate, measure, median, SCENARIOS, warmUp, type RunContext, type RunResult, type Via } from './lib/run';
import { benchPostgres, benchRedis, installReaper, redisClient, startLogd, startNginx, stopAll, storage, type Logd } from './lib/stack';
import { QUIET_CORES, QuietGate } from './lib/proc';
import { ensureWrk } from './lib/wrk';

// ---------------------------------------------------------------------------
// options

/** The repository holding this bench (dist/bench/bench/ingest.js once built). */
function benchRepo(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bench', 'ingest.ts'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root above ' + __dirname);
    dir = up;
  }
}

const HELP = `npm run bench [-- options]

  --quick             short run: 1 run per scenario, 4 s loads, fewer rate steps (~4 min)
  --runs N            runs per scenario (default 3; quick 1)
  --seconds S         load duration of each closed-loop run (default 8; quick 4)
  --only KEYS         parts to run, comma-separated: single,stress,batch100,rate,sustain,drain
  --via LIST          direct,nginx (default both)
  --quiet-wait S      before each run, wait while other processes use > ${QUIET_CORES} cores (shared
                      machine), at most 20 s per run and S seconds in all (default 150; quick 30; 0 = off)
  --no-profile        skip the node --cpu-prof run
  --profile KEY       scenario profiled (direct): batch100 (default), stress or single
  --no-ceilings       skip the COPY / XADD ceilings (then leave sustain out of --only: its steps are shares of the COPY ceiling)
  --root DIR          logd tree to benchmark (built: DIR/dist), default this repository
  --node-args ARGS    node options for logd (its children get them too), e.g. "--max-semi-space-size=64"
  --workers N         logd's HTTP workers (default: logd's own, the number of CPUs)
  --out FILE          markdown file to update (default BENCHMARKS.md of this repository); --out - prints only
  --json FILE         also write the raw results as JSON
  -h, --help          this text
`;

interface Options {
  quick: boolean;
  runs: number;
  seconds: number;
  only: Set<string>;
  via: Via[];
  profile: boolean;
  ceilings: boolean;
  root: string;
  out: string;
  json?: string;
  quietWaitS: number;
  nodeArgs: string[];
  workers?: number;
  profileScenario: string;
}

function parseArgs(argv: string[], repo: string): Options {
  const o: Options = { quick: false, runs: 0, seconds: 0, only: new Set(['single', 'stress', 'batch100', 'rate', 'sustain', 'drain']), via: ['direct', 'nginx'], profile: true, ceilings: true, root: repo, out: path.join(repo, 'BENCHMARKS.md'), quietWaitS: -1, nodeArgs: [], profileScenario: 'batch100' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '-h' || a === '--help') {
      process.stdout.write(HELP);
      process.exit(0);
    } else if (a === '--quick') o.quick = true;
    else if (a === '--runs') o.runs = Number(val());
    else if (a === '--seconds') o.seconds = Number(val());
    else if (a === '--only') o.only = new Set(val().split(','));
    else if (a === '--via') o.via = val().split(',') as Via[];
    else if (a === '--no-profile') o.profile = false;
    else if (a === '--profile') o.profileScenario = val();
    else if (a === '--no-ceilings') o.ceilings = false;
    else if (a === '--root') o.root = path.resolve(val());
    else if (a === '--out') o.out = val();
    else if (a === '--json') o.json = val();
    else if (a === '--quiet-wait') o.quietWaitS = Number(val());
    else if (a === '--node-args') o.nodeArgs = val().split(/\s+/).filter(Boolean);
    else if (a === '--workers') o.workers = Number(val());
    else throw new Error(`unknown option ${a}\n${HELP}`);
  }
  o.runs ||= o.quick ? 1 : 3;
  o.seconds ||= o.quick ? 4 : 8;
  if (o.quietWaitS < 0) o.quietWaitS = o.quick ? 30 : 150;
  if (!o.ceilings && o.only.has('sustain')) throw new Error('the sustained-rate steps offer shares of the COPY ceiling: drop --no-ceilings, or sustain from --only');
  return o;
}

// ---------------------------------------------------------------------------
// machine

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

function machine(wrkVersion: string): Machine {
  const cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?').replace(/\s+/g, ' ');
  return {
    nproc: os.availableParallelism(),
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: os.release(),
    cpu,
    versions: {
      Node: process.version,
      'redis-server': /v=(\S+)/.exec(sh('redis-server', ['--version']))?.[1] ?? '?',
      PostgreSQL: /(\d+\.\d+)/.exec(sh('/usr/lib/postgresql/15/bin/postgres', ['--version']))?.[1] ?? '?',
      nginx: /nginx\/(\S+)/.exec(sh('nginx', ['-v']))?.[1] ?? '?',
      wrk: /wrk (\S+)/.exec(wrkVersion)?.[1] ?? wrkVersion,
    },
  };
}

/** HEAD of the tree under test, and the paths logd is built or configured from that differ from it. */
function commitOf(root: string): string {
  const paths = ['src', 'bin', 'schema.sql', 'conf', 'package.json', 'package-lock.json'];
  try {
    const head = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim();
    const dirty = execFileSync('git', ['-C', root, 'status', '--porcelain', '--', ...paths]).toString().trim();
    const touched = [...new Set(dirty.split('\n').filter(Boolean).map((l) => l.slice(3).split('/')[0]))];
    return dirty ? `${head} + uncommitted changes in ${touched.join(', ')}` : head;
  } catch {
    return '?';
  }
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = Date.now();
  const repo = benchRepo();
  const o = parseArgs(process.argv.slice(2), repo);
  // the tree as it is built and measured; others may commit while the bench runs
  const commit = commitOf(o.root);
  installReaper();
  const log = (s: string): void => { process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`); };
  if (!fs.existsSync(path.join(o.root, 'dist', 'bin', 'logd.js'))) throw new Error(`${o.root}/dist/bin/logd.js is missing: run npm run build there`);
  const wrkVersion = ensureWrk();
  const script = path.join(repo, 'bench', 'lib', 'ingest.lua');

  log('starting redis-server, postgres');
  const redisServer = await benchRedis(o.root);
  const pgs = await benchPostgres();
  const logds: Logd[] = [];
  const started = (l: Logd): Logd => { logds.push(l); return l; };
  let logd = started(await startLogd(o.root, redisServer, pgs, { nodeArgs: o.nodeArgs, workers: o.workers }));
  // as `logd serve` loaded it (no option is set by the bench but the addresses, auth and log level)
  const config = logd.config;
  const { maxBacklog, batchRows } = config;
  log(`logd on ${logd.url} (${logd.children().map((c) => c.role).join(', ')}), queue.max_backlog ${maxBacklog}, persister.batch_max_rows ${batchRows}`);
  // rate limit far above any offered load (10,000 r/s is the shipped one)
  const nginx = await startNginx(o.root, `127.0.0.1:${logd.port}`, '1000000r/s');
  log(`nginx on ${nginx.url}`);
  const redis = redisClient(redisServer);
  const stored = await storage(redis, pgs.pool);
  log(`PostgreSQL data in ${stored.postgres.dataDirectory} (${stored.postgres.fs}), Redis AOF in ${stored.redis.aofDirectory} (${stored.redis.fs})`);
  const gate = o.quietWaitS > 0 ? new QuietGate(o.quietWaitS * 1000) : undefined;
  const ctx: RunContext = { redis, redisServer, pg: pgs, urls: { direct: logd.url, nginx: nginx.url }, script, backlogKey: 'logs:stream:backlog', log, gate, maxBacklog, stream: 'logs:stream' };

  const copy: CopyCeiling[] = [];
  const xadd: XaddCeiling[] = [];
  const ceilingRows = o.quick ? 200_000 : 300_000;
  const measureCopy = async (at: string): Promise<CopyCeiling> => {
    await cleanSlate(ctx);
    const c = await copyCeiling(pgs.pool, pgs.pid, o.root, ceilingRows, batchRows, at);
    copy.push(c);
    log(`COPY ceiling (${at}): ${Math.round(c.rowsPerS)} rows/s (${c.rows} rows in ${c.seconds.toFixed(2)} s, PostgreSQL ${c.postgresCpuUsPerRow.toFixed(2)} µs CPU per row)`);
    return c;
  };
  if (o.ceilings) {
    await measureCopy('start');
    for (const per of [1, 5, 100]) {
      const x = await xaddCeiling(redis, redisServer.port, o.root, per, o.quick ? 1 : 2);
      xadd.push(x);
      log(`XADD ${per}-log frames: ${Math.round(x.xaddFramesPerS)} frames/s raw, ${Math.round(x.appendFramesPerS)} frames/s append.lua`);
    }
  }

  log('warm-up (not recorded)');
  await warmUp(ctx, o.quick ? 1 : 2);

  // --- closed-loop scenarios; runs interleaved so that drifting noise spreads over all of them
  const runs: RunResult[] = [];
  const threadsFor = (conns: number): number => (conns >= 100 ? 2 : 1);
  for (let i = 0; i < o.runs; i++) {
    for (const s of SCENARIOS) {
      if (!o.only.has(s.key)) continue;
      for (const via of o.via) {
        // the 100-log runs are compared with a COPY ceiling measured right before them (noise drifts)
        const before = o.ceilings && s.key === 'batch100' ? await measureCopy(`before ${s.key} ${via} #${i + 1}`) : undefined;
        const r = await measure(ctx, s, via, { seconds: o.seconds, threads: threadsFor(s.connections) });
        if (before) r.copyCeiling = before.rowsPerS;
        runs.push(r);
        log(`${s.key} ${via} #${i + 1}: ${Math.round(r.acceptedLogsPerS)} logs/s (${Math.round(r.requestsPerS)} req/s), p50 ${r.p50.toFixed(2)} p95 ${r.p95.toFixed(2)} p99 ${r.p99.toFixed(2)} ms, `
          + `e2e ${Math.round(r.e2eLogsPerS)} logs/s, lost ${r.acc.lost}, dup ${r.acc.duplicated}, non-2xx ${r.acc.refusedRequests}, others ${r.othersCores.toFixed(2)} cores`);
      }
    }
  }

  // --- constant rate, 5 logs/request, 200 connections
  const stress = SCENARIOS.find((s) => s.key === 'stress')!;
  const steady: RunResult[] = [];
  const steps: StepResult[] = [];
  if (o.only.has('rate')) {
    const rateVia: Via[] = o.quick ? o.via.filter((v) => v === 'nginx') : o.via;
    for (let i = 0; i < o.runs; i++) {
      for (const via of rateVia) {
        const r = await measure(ctx, stress, via, { seconds: o.seconds, threads: 2, rate: 10_000 / stress.per });
        steady.push(r);
        log(`10k logs/s ${via} #${i + 1}: achieved ${Math.round(r.acceptedLogsPerS)}, p50 ${r.p50.toFixed(2)} p95 ${r.p95.toFixed(2)} p99 ${r.p99.toFixed(2)} ms`);
      }
    }
    const ladder = o.quick ? [20_000, 40_000, 60_000, 80_000, 100_000] : [20_000, 40_000, 60_000, 70_000, 80_000, 90_000, 100_000, 120_000, 140_000];
    for (const via of o.via) {
      for (const logsPerS of ladder) {
        const r = await measure(ctx, stress, via, { seconds: Math.max(4, o.seconds - 2), threads: 2, rate: logsPerS / stress.per });
        const pass = r.p95 < 50 && r.acceptedLogsPerS >= 0.97 * logsPerS && r.acc.refusedRequests === 0;
        steps.push({ via, logsPerS, achievedLogsPerS: r.acceptedLogsPerS, p50: r.p50, p95: r.p95, p99: r.p99, refused: r.acc.refusedRequests, pass });
        steady.push({ ...r, scenario: 'step' });
        log(`step ${via} ${logsPerS} logs/s: achieved ${Math.round(r.acceptedLogsPerS)}, p95 ${r.p95.toFixed(2)} ms -> ${pass ? 'pass' : 'fail'}`);
        if (!pass) break;
      }
    }
  }

  // --- sustained rate: 100 logs/request at constant rates through nginx; a step holds when the
  // persister keeps up (e2e ≥ 95% of the offered rate, every log committed within 1 s of the load's end, nothing refused)
  const sustain: SustainStep[] = [];
  let sustainCeiling: number | undefined;
  let sustainPlan: Report['sustainPlan'];
  if (o.only.has('sustain')) {
    const b100 = SCENARIOS.find((x) => x.key === 'batch100')!;
    const base = (await measureCopy('before the sustained-rate steps')).rowsPerS;
    sustainCeiling = base;
    // steps as shares of the COPY ceiling just measured: the 80% step answers the target directly.
    // Long steps: e2e counts from the first log received to the last committed, so the pipeline's
    // fixed delay at both ends weighs less the longer the step.
    sustainPlan = { fractions: o.quick ? [0.5, 0.8] : [0.5, 0.65, 0.8, 0.85, 0.9, 0.95, 1.0], seconds: o.quick ? 5 : 20 };
    for (const logsPerS of sustainPlan.fractions.map((f) => Math.round((f * base) / 1000) * 1000)) {
      const r = await measure(ctx, b100, 'nginx', { seconds: sustainPlan.seconds, threads: 1, rate: logsPerS / b100.per });
      const pass = r.acceptedLogsPerS >= 0.97 * logsPerS && r.e2eLogsPerS >= 0.95 * logsPerS && r.drainSeconds < 1 && r.acc.refusedRequests === 0 && r.acc.lost === 0;
      const cores = Object.fromEntries(Object.entries(r.roles).map(([role, v]) => [role, v.cpuS / r.seconds]));
      sustain.push({ logsPerS, achievedLogsPerS: r.acceptedLogsPerS, e2eLogsPerS: r.e2eLogsPerS, drainSeconds: r.drainSeconds, maxBacklog: r.maxBacklog, p95: r.p95, p99: r.p99, refused: r.acc.refusedRequests, pass, othersCores: r.othersCores, cores, stackCores: r.oursCores });
      steady.push({ ...r, scenario: 'sustain' });
      log(`sustain ${logsPerS} logs/s: achieved ${Math.round(r.acceptedLogsPerS)}, e2e ${Math.round(r.e2eLogsPerS)}, drained ${r.drainSeconds.toFixed(2)} s after, max backlog ${r.maxBacklog}, p95 ${r.p95.toFixed(1)} ms -> ${pass ? 'holds' : 'does not hold'}`);
      if (!pass) break;
    }
  }

  // --- the persister alone: preloaded stream, then logd started; compared with a COPY ceiling right before
  let drain: DrainReport | undefined;
  const drains: DrainReport[] = [];
  if (o.only.has('drain')) {
    const logs = o.quick ? 200_000 : 500_000;
    for (let i = 0; i < (o.quick ? 1 : 2); i++) {
      const before = o.ceilings ? await measureCopy(`before persister drain #${i + 1}`) : undefined;
      await cleanSlate(ctx);
      await logd.stop();
      const run = `drain${Date.now().toString(36)}`;
      const frameCount = await preload(redis, o.root, run, logs);
      logd = started(await startLogd(o.root, redisServer, pgs, { nodeArgs: o.nodeArgs, workers: o.workers }));
      ctx.urls.direct = logd.url;
      const d = await timeDrain(redis, pgs, run, frameCount);
      drains.push({ ...d, ceiling: before?.rowsPerS });
      log(`persister alone #${i + 1}: ${Math.round(d.rowsPerS)} rows/s (${d.rows} rows of ${d.logs} preloaded, lost ${d.lost}, dup ${d.duplicated}, in ${d.seconds.toFixed(2)} s)${before ? `, ${((100 * d.rowsPerS) / before.rowsPerS).toFixed(0)}% of the COPY ceiling` : ''}`);
    }
    // the run with the median ratio (or rate) stands for all; every run is listed
    const key = (d: DrainReport): number => (d.ceiling ? d.rowsPerS / d.ceiling : d.rowsPerS);
    drain = [...drains].sort((a, b) => key(a) - key(b))[Math.floor((drains.length - 1) / 2)];
  }

  const earlyNotes: string[] = [];
  // --- profile: logd under node --cpu-prof during one scenario's load (direct; default the 100-log one)
  let profile: Report['profile'];
  let profiled: RunResult | undefined;
  if (o.profile) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'logd-bench-prof-'));
    try {
      await cleanSlate(ctx);
      await logd.stop();
      // A long shutdown timeout: a child killed by the primary writes no profile, and after an overload
      // logd can take longer than its default 15 s to stop (see the notes).
      logd = started(await startLogd(o.root, redisServer, pgs, { nodeArgs: [...o.nodeArgs, '--cpu-prof', `--cpu-prof-dir=${dir}`], workers: o.workers, env: { LOGD_SERVER_SHUTDOWN_TIMEOUT_MS: '120000' } }));
      ctx.urls.direct = logd.url;
      const roles = new Map(logd.children().map((c) => [c.pid, c.role]));
      await warmUp(ctx, 1);
      const s = SCENARIOS.find((x) => x.key === o.profileScenario);
      if (!s) throw new Error(`--profile ${o.profileScenario}: no such scenario`);
      const r = await measure(ctx, s, 'direct', { seconds: o.seconds, threads: s.connections >= 100 ? 2 : 1 });
      profiled = r;
      log(`profiled run: ${Math.round(r.acceptedLogsPerS)} logs/s, e2e ${Math.round(r.e2eLogsPerS)} logs/s`);
      const stopAt = Date.now();
      const code = await logd.stop();
      const stopS = (Date.now() - stopAt) / 1000;
      const files = await fsp.readdir(dir);
      const missing = [...roles].filter(([pid]) => !files.some((f) => f.split('.')[3] === String(pid)));
      if (stopS > 10) earlyNotes.push(`The profiled logd (shutdown timeout raised to 120 s) took ${stopS.toFixed(1)} s to stop after the load (exit code ${code}).`);
      if (missing.length) {
        earlyNotes.push(`The profiled logd took ${stopS.toFixed(1)} s to stop (exit code ${code}) and ${missing.map(([pid, role]) => `${role} ${pid}`).join(', ')} wrote no profile: a child killed by the primary's shutdown timeout (or a crash) writes none.`);
        log(`profile: no profile from ${missing.map(([pid, role]) => `${role} ${pid}`).join(', ')} (logd stopped in ${stopS.toFixed(1)} s, exit ${code})`);
      }
      const byPid = (pid: number): string | undefined => files.find((f) => f.split('.')[3] === String(pid));
      const window = { fromUs: r.mono.start, toUs: r.mono.end };
      const http = [...roles].filter(([, role]) => role === 'logd: http').map(([pid]) => byPid(pid)).filter((f): f is string => !!f)
        .map((f) => analyse(path.join(dir, f), HTTP_RULES, window, HTTP_LINE_RULES));
      const persisterPid = [...roles].find(([, role]) => role === 'logd: persister')?.[0];
      const pf = persisterPid ? byPid(persisterPid) : undefined;
      // the persister works until the backlog is drained: its window runs to the drain
      const persister = pf ? analyse(path.join(dir, pf), PERSISTER_RULES, { fromUs: r.mono.start, toUs: r.mono.drained }) : undefined;
      if (http.length) {
        profile = {
          scenario: `${s.title}, direct, ${s.connections} connections, ${o.seconds} s (${Math.round(r.acceptedLogsPerS).toLocaleString('en-US')} logs/s accepted under the profiler)`,
          http: merge(http), httpProfiles: http.length, persister,
          window: 'the load window (HTTP workers) and the load plus drain window (persister)',
        };
      }
      const keep = path.join(repo, 'dist', 'bench-ingest', 'profiles');
      await fsp.rm(keep, { recursive: true, force: true });
      await fsp.mkdir(keep, { recursive: true });
      for (const f of files) {
        const pid = Number(f.split('.')[3]);
        const role = (roles.get(pid) ?? 'primary').replace('logd: ', '');
        await fsp.copyFile(path.join(dir, f), path.join(keep, `${role}-${pid}.cpuprofile`));
      }
      log(`profiles kept in ${keep} (open them in Chrome DevTools or speedscope)`);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  // --- targets
  const med = (g: RunResult[], fn: (r: RunResult) => number): number => median(g.map(fn));
  const targets: Target[] = [];
  const b100 = group(runs, 'batch100', 'nginx');
  if (b100.length) {
    const acc = med(b100, (r) => r.acceptedLogsPerS);
    const p99 = med(b100, (r) => r.p99);
    const doors = b100.map((r) => r.doorLogsPerS).filter((x): x is number => x !== null);
    targets.push({ name: '100 logs/request: accepted over the whole run (once the backlog reaches queue.max_backlog, logd answers 503 by design and acceptance falls to the persisted rate)', want: '≥ 150,000 logs/s',
      got: `${Math.round(acc).toLocaleString('en-US')} logs/s (median of ${b100.length} runs of ${o.seconds} s)${doors.length ? `; until the backlog was full, in the ${doors.length} of ${b100.length} runs that filled it: ${Math.round(median(doors)).toLocaleString('en-US')} logs/s` : ''}`, pass: acc >= 150_000 });
    targets.push({ name: '100 logs/request: p99 of accepted requests', want: '< 50 ms', got: `${p99.toFixed(1)} ms`, pass: p99 < 50 });
    const paired = b100.filter((r) => r.copyCeiling);
    if (paired.length) {
      const e2e = med(paired, (r) => r.e2eLogsPerS);
      const ratio = med(paired, (r) => r.e2eLogsPerS / r.copyCeiling!);
      // Not the issue's target, which is the sustained rate (next row): wrk's closed loop offers more
      // than can be persisted, so accepting at full speed takes the CPU the persister and PostgreSQL need.
      targets.push({ name: '(diagnostic) 100 logs/request, closed loop (an overload: logs accepted at full speed until the backlog is full): e2e persisted vs raw COPY ceiling measured right before each run', want: '—', got: `median ${Math.round(e2e).toLocaleString('en-US')} rows/s; ratio per run ${paired.map((r) => `${((100 * r.e2eLogsPerS) / r.copyCeiling!).toFixed(0)}%`).join(', ')} (median ${(100 * ratio).toFixed(0)}%)`, pass: null });
    }
  }
  if (sustain.length && sustainCeiling) {
    const held = sustain.filter((x) => x.pass);
    const best = held.length ? held[held.length - 1] : undefined;
    targets.push({ name: '100 logs/request: sustained persisted rate (constant rate held: all committed ≤ 1 s after the load) vs raw COPY ceiling', want: '≥ 80%',
      got: best ? `${Math.round(best.e2eLogsPerS).toLocaleString('en-US')} rows/s at ${best.logsPerS.toLocaleString('en-US')} offered${sustain.every((x) => x.pass) ? ' (highest step tried)' : ''} / ${Math.round(sustainCeiling).toLocaleString('en-US')} = ${((100 * best.e2eLogsPerS) / sustainCeiling).toFixed(0)}%` : `no step held (lowest ${sustain[0].logsPerS.toLocaleString('en-US')} logs/s)`,
      pass: best ? best.e2eLogsPerS >= 0.8 * sustainCeiling : false });
  }
  if (drain?.ceiling) {
    targets.push({ name: '(diagnostic) persister alone, preloaded stream, vs COPY ceiling', want: '—', got: `${Math.round(drain.rowsPerS).toLocaleString('en-US')} / ${Math.round(drain.ceiling).toLocaleString('en-US')} rows/s = ${((100 * drain.rowsPerS) / drain.ceiling).toFixed(0)}%`, pass: null });
  }
  const single = group(runs, 'single', 'nginx');
  if (single.length) {
    const rps = med(single, (r) => r.requestsPerS);
    const p99 = med(single, (r) => r.p99);
    targets.push({ name: '1 log/request: requests/s', want: '≥ 15,000 req/s', got: `${Math.round(rps).toLocaleString('en-US')} req/s`, pass: rps >= 15_000 });
    targets.push({ name: '1 log/request: p99 of accepted requests', want: '< 15 ms', got: `${p99.toFixed(1)} ms`, pass: p99 < 15 });
  }
  const steadyNginx = steady.filter((r) => r.via === 'nginx' && r.scenario === 'stress');
  if (steadyNginx.length) {
    const p95 = med(steadyNginx, (r) => r.p95);
    targets.push({ name: '5 logs/request, 200 clients, constant 10,000 logs/s: p95', want: '< 10 ms', got: `${p95.toFixed(2)} ms`, pass: p95 < 10 });
  }
  const nSteps = steps.filter((s) => s.via === 'nginx');
  if (nSteps.length) {
    const best = Math.max(0, ...nSteps.filter((s) => s.pass).map((s) => s.logsPerS));
    const capped = nSteps.every((s) => s.pass);
    targets.push({ name: '5 logs/request, 200 clients: highest constant rate with p95 < 50 ms', want: '≥ 60,000 logs/s', got: `${best.toLocaleString('en-US')} logs/s${capped ? ' (highest step tried)' : ''}`, pass: best >= 60_000 });
  }
  const all = [...runs, ...steady];
  const httpRss = Math.max(0, ...all.map((r) => r.peakRss['logd: http']?.rss ?? 0));
  if (all.length) {
    targets.push({ name: 'memory: each HTTP worker under load', want: '< 150 MB RSS', got: `${(httpRss / 1024 / 1024).toFixed(0)} MB peak`, pass: httpRss < 150 * 1024 * 1024 });
    const mb = Math.max(0, ...all.map((r) => r.maxBacklog));
    const refused503 = all.reduce((a, r) => a + (r.acc.statuses['503'] ?? 0), 0);
    // append.lua appends a frame while the backlog is below the limit: it can pass it by one frame less one log
    const frame = Math.max(...SCENARIOS.map((x) => x.per));
    targets.push({ name: 'backlog bounded by configuration', want: `< queue.max_backlog (${maxBacklog.toLocaleString('en-US')}) + the largest frame sent (${frame} logs)`, got: `${mb.toLocaleString('en-US')} logs at most${refused503 ? `, ${refused503} requests answered 503` : ''}`, pass: mb < maxBacklog + frame });
  }
  // every load (the profiled one too) and every persister drain
  const loads = profiled ? [...all, profiled] : all;
  if (loads.length || drains.length) {
    const sum = (fn: (r: RunResult) => number): number => loads.reduce((a, r) => a + fn(r), 0);
    const lost = sum((r) => r.acc.lost) + drains.reduce((a, d) => a + d.lost, 0);
    const dup = sum((r) => r.acc.duplicated) + drains.reduce((a, d) => a + d.duplicated, 0);
    const odd = [
      [sum((r) => r.acc.refusedButStored), 'logs of refused requests stored'],
      [sum((r) => r.acc.unknownRows) + drains.reduce((a, d) => a + d.unknownRows, 0), 'rows of logs never sent'],
      [sum((r) => r.acc.unmatchedAnswers), '2xx answers not matched to one request'],
    ].filter(([n]) => n) as [number, string][];
    const preloaded = drains.reduce((a, d) => a + d.logs, 0);
    targets.push({ name: 'lost / duplicated logs (every load, the profiled one included, and every persister drain)', want: '0 / 0',
      got: `${lost} / ${dup} of ${sum((r) => r.acc.ackedLogs).toLocaleString('en-US')} acknowledged in ${plural(loads.length, 'load')}${drains.length ? ` and ${preloaded.toLocaleString('en-US')} preloaded in ${plural(drains.length, 'drain')}` : ''}${odd.map(([n, what]) => `; ${n} ${what}`).join('')}`,
      pass: lost === 0 && dup === 0 && !odd.length });
  }

  const notes: string[] = [...earlyNotes];
  const others = loads.map((r) => r.othersCores);
  const unanswered = loads.reduce((a, r) => a + r.acc.unansweredRequests, 0);
  const unansweredStored = loads.reduce((a, r) => a + r.acc.unansweredStored, 0);
  notes.push(`Requests in flight when wrk stopped (no answer seen, fate unknown to the client): ${unanswered}; ${unansweredStored} of their logs reached PostgreSQL (allowed: accepted while the client hung up). They are not counted as acknowledged.`);
  if (gate) {
    const waited = loads.reduce((a, r) => a + (r.gateWaitMs ?? 0), 0);
    notes.push(`Quiet gate: before each run the bench waited (at most 20 s, ${o.quietWaitS} s in all) for the other processes to use < ${QUIET_CORES} cores; it waited ${(waited / 1000).toFixed(0)} s in all; the others' load just before the runs: median ${median(loads.map((r) => r.othersBefore ?? NaN)).toFixed(2)} cores.`);
  }
  const stops = logds.map((l) => l.stopped()).filter((x) => x.seconds !== undefined);
  if (stops.length) notes.push(`logd stops (SIGTERM → exit, server.drain_ms included): ${stops.map((x) => `${x.seconds!.toFixed(1)} s (exit ${x.code})`).join(', ')}.`);
  const events = new Map<string, number>();
  for (const l of logds) for (const [k, n] of l.events()) events.set(k, (events.get(k) ?? 0) + n);
  if (events.size) {
    notes.push(`logd's own warnings and errors during the bench (by message): ${[...events].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, n]) => `${n} × "${k.replace(/\|/g, '\\|')}"`).join('; ')}.`);
  }
  const commitAtEnd = commitOf(o.root);
  if (commitAtEnd !== commit) notes.push(`The tree changed while the bench ran: \`${commit}\` at its start (the build measured), \`${commitAtEnd}\` at its end.`);
  const sockErr = all.reduce((a, r) => a + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout, 0);
  if (sockErr) notes.push(`wrk socket errors over all runs: ${sockErr}.`);

  const argv = process.argv.slice(2).join(' ');
  const report: Report = {
    command: `npm run bench${argv ? ` -- ${argv}` : ''}`,
    started: new Date(t0).toISOString().replace(/\.\d+Z$/, 'Z'),
    minutes: (Date.now() - t0) / 60_000,
    quick: o.quick,
    root: o.root,
    commit,
    machine: machine(wrkVersion),
    config,
    storage: stored,
    others: others.length ? { median: median(others), max: Math.max(...others), loads: others.length } : undefined,
    runs, copy, xadd, steady: steady.filter((r) => r.scenario === 'stress'), steps, sustain, sustainCeiling, sustainPlan, drains, drain, profile, targets, notes,
  };
  const md = markdown(report);
  if (o.out === '-') process.stdout.write(`${md}\n`);
  else {
    writeSection(o.out, md);
    process.stdout.write(`${md}\n\nbench: wrote the ## Ingest section of ${o.out}\n`);
  }
  const jsonFile = o.json ?? path.join(repo, 'dist', 'bench-ingest', 'last-ingest.json');
  await fsp.mkdir(path.dirname(jsonFile), { recursive: true });
  await fsp.writeFile(jsonFile, JSON.stringify({ ...report, steadyAll: steady }, null, 1));
  log(`raw results in ${jsonFile}`);
  redis.disconnect();
  await pgs.pool.end();
  await stopAll();
  log('done');
}

main().then(
  () => process.exit(0),
  async (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    await stopAll().catch(() => undefined);
    process.exit(1);
  },
);
