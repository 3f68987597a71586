/**
 * The "## Ingest" section of BENCHMARKS.md, between its markers: only that
 * part of the file is ever replaced (others write their own sections).
 */
import * as fs from 'node:fs';
import type { PreloadAccounting } from './account';
import type { CopyCeiling, XaddCeiling } from './ceilings';
import type { ProfileReport } from './cpuprofile';
import { QUIET_CORES } from './proc';
import { median, SCENARIOS, type RunResult, type Via } from './run';
import type { LogdConfig, Storage } from './stack';

export const BEGIN = '<!-- bench:ingest:begin -->';
export const END = '<!-- bench:ingest:end -->';

export interface Machine {
  nproc: number;
  memory: string;
  kernel: string;
  cpu: string;
  versions: Record<string, string>;
}

export interface Target {
  name: string;
  want: string;
  got: string;
  pass: boolean | null;
}

export interface StepResult {
  via: Via;
  logsPerS: number;
  achievedLogsPerS: number;
  p50: number;
  p95: number;
  p99: number;
  refused: number;
  pass: boolean;
}

export interface SustainStep {
  logsPerS: number;
  achievedLogsPerS: number;
  e2eLogsPerS: number;
  drainSeconds: number;
  maxBacklog: number;
  p95: number;
  p99: number;
  refused: number;
  pass: boolean;
  othersCores: number;
  /** CPU over the load by role, and of every process the bench started, in cores */
  cores: Record<string, number>;
  stackCores: number;
}

export interface DrainReport extends PreloadAccounting {
  frames: number;
  seconds: number;
  rowsPerS: number;
  /** raw COPY ceiling measured right before, rows/s */
  ceiling?: number;
}

export interface Report {
  command: string;
  started: string;
  minutes: number;
  quick: boolean;
  root: string;
  commit: string;
  machine: Machine;
  /** logd's options the figures are judged against */
  config: LogdConfig;
  storage: Storage;
  /** CPU used by processes outside the bench during the loads, in cores */
  others?: { median: number; max: number; loads: number };
  runs: RunResult[];
  copy: CopyCeiling[];
  xadd: XaddCeiling[];
  steady: RunResult[];
  steps: StepResult[];
  sustain: SustainStep[];
  sustainCeiling?: number;
  /** the sustained-rate steps: shares of the COPY ceiling offered, seconds each */
  sustainPlan?: { fractions: number[]; seconds: number };
  /** the persister drains; `drain` is the one with the median ratio to its ceiling */
  drains: DrainReport[];
  drain?: DrainReport;
  profile?: { scenario: string; http: ProfileReport; httpProfiles: number; persister?: ProfileReport; window: string };
  targets: Target[];
  notes: string[];
}

const f0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f2 = (x: number): string => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : '—');
const mb = (b: number): string => (b ? (b / 1024 / 1024).toFixed(0) : '—');
const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : '—');
const verdict = (p: boolean | null): string => (p === null ? 'n/a' : p ? '**PASS**' : '**FAIL**');
const CPU_ROLES = ['wrk', 'nginx: worker', 'logd: http', 'redis-server', 'logd: persister', 'postgres'];

export const copyCeilingMedian = (r: Report): number => median(r.copy.map((c) => c.rowsPerS));

export function group(runs: RunResult[], scenario: string, via: Via): RunResult[] {
  return runs.filter((r) => r.scenario === scenario && r.via === via);
}

/** Most processes of a role seen at once in any load (/proc), or undefined if none was seen. */
function seen(r: Report, role: string): number | undefined {
  const n = Math.max(0, ...[...r.runs, ...r.steady].map((x) => x.peakRss[role]?.count ?? 0));
  return n || undefined;
}

export const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

function storageLine(s: Storage): string {
  const tmpfs = s.postgres.fs === 'tmpfs' || s.redis.fs === 'tmpfs';
  return `Storage: PostgreSQL's data directory (\`${s.postgres.dataDirectory}\`; fsync ${s.postgres.fsync}, synchronous_commit ${s.postgres.synchronousCommit}) on ${s.postgres.fs}; `
    + `Redis' AOF (\`${s.redis.aofDirectory}\`; appendonly ${s.redis.appendonly}, appendfsync ${s.redis.appendfsync}) on ${s.redis.fs}.`
    + (tmpfs ? ' On tmpfs an fsync returns without device I/O: the figures leave out the disk writes and flushes that a deployment on disk pays for.' : '');
}

function sharingLine(r: Report): string {
  if (!r.others) return '';
  const o = r.others;
  const figures = `on average over each of ${plural(o.loads, 'load')}, processes outside the bench used median ${f2(o.median)}, max ${f2(o.max)} of the ${r.machine.nproc} cores (the "others" columns give it per load)`;
  return o.max < QUIET_CORES ? `The machine was otherwise quiet: ${figures}. ` : `The machine was shared: ${figures}. `;
}

export function markdown(r: Report): string {
  const L: string[] = [];
  const ceiling = copyCeilingMedian(r);
  L.push('## Ingest', '');
  L.push(`Measured by \`${r.command}\` (bench/ingest.ts; how it works: bench/README.md) on ${r.started}, ${r.minutes.toFixed(1)} min${r.quick ? ', **quick run** (1 run per scenario, short loads: indicative only)' : ''}; logd at \`${r.commit}\`, with queue.max_backlog ${f0(r.config.maxBacklog)} logs and persister.batch_max_rows ${f0(r.config.batchRows)} (its configuration as \`logd serve\` loads it).`, '');
  L.push(`Machine: ${r.machine.nproc} cores (${r.machine.cpu}), ${r.machine.memory} RAM, Linux ${r.machine.kernel}; ${Object.entries(r.machine.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '');
  L.push(storageLine(r.storage), '');
  const nginxWorkers = seen(r, 'nginx: worker');
  const httpWorkers = seen(r, 'logd: http') ?? r.config.workers;
  L.push(`Everything runs on these ${r.machine.nproc} cores at once: wrk, nginx${nginxWorkers ? ` (${plural(nginxWorkers, 'worker')})` : ''}, logd (${plural(httpWorkers, 'HTTP worker')} + persister), Redis, PostgreSQL (process counts as /proc showed them during the loads). `
    + `${sharingLine(r)}Figures are medians over the runs, and ratios (logd vs the ceilings) are taken within this one run.`, '');

  L.push('### Targets (issue 6), through nginx unless said', '');
  L.push('| target | wanted | measured | |', '|---|---|---|---|');
  for (const t of r.targets) L.push(`| ${t.name} | ${t.want} | ${t.got} | ${verdict(t.pass)} |`);
  L.push('');

  L.push('### Closed-loop load (wrk: each connection sends its next request when the answer comes)', '');
  L.push('Medians over the runs. Latency: of 2xx answers, from the write of each request (ingest.lua; the first second left out; wrk\'s own percentiles, which also count 503s, are in the JSON). "Until full" = accepted logs/s from the start until the backlog reached queue.max_backlog, after which logd answers 503 (backpressure) and acceptance falls to the persisted rate. e2e persisted = rows / (first log received → backlog back to 0 after the load, i.e. last row committed); drain = rows/s the persister loaded after the load stopped (PostgreSQL no longer shares the CPU with ingest). Lost = the logs of 2xx requests minus the logs stored (a set difference, by request and position); dup = rows beyond the first of a message.', '');
  L.push('| scenario | via | conns | runs | accepted logs/s | until full | req/s | p50 ms | p95 ms | p99 ms | e2e persisted logs/s | e2e / COPY ceiling before the run | drain logs/s | max backlog | lost | dup | non-2xx | others (cores) |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const s of SCENARIOS) {
    for (const via of ['direct', 'nginx'] as Via[]) {
      const g = group(r.runs, s.key, via);
      if (!g.length) continue;
      const m = (fn: (x: RunResult) => number): number => median(g.map(fn));
      const drains = g.map((x) => x.drainLogsPerS).filter((x): x is number => x !== null);
      const doors = g.map((x) => x.doorLogsPerS).filter((x): x is number => x !== null);
      L.push(`| ${s.title} | ${via} | ${g[0].connections} | ${g.length} | ${f0(m((x) => x.acceptedLogsPerS))} | ${doors.length ? `${f0(median(doors))} (${doors.length}/${g.length})` : '—'} | ${f0(m((x) => x.requestsPerS))} | ${f2(m((x) => x.p50))} | ${f2(m((x) => x.p95))} | ${f2(m((x) => x.p99))} | `
        + `${f0(m((x) => x.e2eLogsPerS))} | ${g.some((x) => x.copyCeiling) ? pct(median(g.filter((x) => x.copyCeiling).map((x) => x.e2eLogsPerS / x.copyCeiling!))) : '—'} | ${drains.length ? f0(median(drains)) : '—'} | ${f0(Math.max(...g.map((x) => x.maxBacklog)))} | `
        + `${g.reduce((a, x) => a + x.acc.lost, 0)} | ${g.reduce((a, x) => a + x.acc.duplicated, 0)} | ${g.reduce((a, x) => a + x.acc.refusedRequests, 0)} | ${f1(m((x) => x.othersCores))} |`);
    }
  }
  L.push('');
  L.push('Per run (accepted logs/s; e2e persisted logs/s):', '');
  for (const s of SCENARIOS) {
    for (const via of ['direct', 'nginx'] as Via[]) {
      const g = group(r.runs, s.key, via);
      if (g.length) L.push(`- ${s.key} ${via}: ${g.map((x) => `${f0(x.acceptedLogsPerS)}; ${f0(x.e2eLogsPerS)}`).join(' | ')}`);
    }
  }
  L.push('');

  if (r.steady.length || r.steps.length) {
    L.push('### Constant rate (open loop), 5 logs/request, 200 connections', '');
    L.push('wrk paced by bench/lib/ingest.lua (wrk2\'s model): requests leave on a fixed schedule whatever the answers, and latency counts from the scheduled time, so a server that falls behind pays for the requests it delayed (no coordinated omission). The first second is left out.', '');
    if (r.steady.length) {
      L.push('| offered logs/s | via | runs | achieved logs/s | p50 ms | p95 ms | p99 ms | max ms | lost | dup | non-2xx | others (cores) |', '|---|---|---|---|---|---|---|---|---|---|---|---|');
      for (const via of ['direct', 'nginx'] as Via[]) {
        const g = r.steady.filter((x) => x.via === via);
        if (!g.length) continue;
        const m = (fn: (x: RunResult) => number): number => median(g.map(fn));
        L.push(`| ${f0(g[0].rate * g[0].per)} | ${via} | ${g.length} | ${f0(m((x) => x.acceptedLogsPerS))} | ${f2(m((x) => x.p50))} | ${f2(m((x) => x.p95))} | ${f2(m((x) => x.p99))} | ${f2(m((x) => x.max))} | `
          + `${g.reduce((a, x) => a + x.acc.lost, 0)} | ${g.reduce((a, x) => a + x.acc.duplicated, 0)} | ${g.reduce((a, x) => a + x.acc.refusedRequests, 0)} | ${f1(m((x) => x.othersCores))} |`);
      }
      L.push('');
    }
    if (r.steps.length) {
      L.push('Rate steps (one run each; a step passes with p95 < 50 ms, ≥ 97% of the offered rate achieved and no refusals; the search stops at the first failing step):', '');
      L.push('| via | offered logs/s | achieved logs/s | p50 ms | p95 ms | p99 ms | non-2xx | p95 < 50 ms |', '|---|---|---|---|---|---|---|---|');
      for (const s of r.steps) L.push(`| ${s.via} | ${f0(s.logsPerS)} | ${f0(s.achievedLogsPerS)} | ${f2(s.p50)} | ${f2(s.p95)} | ${f2(s.p99)} | ${s.refused} | ${s.pass ? 'yes' : 'no'} |`);
      L.push('');
    }
  }

  if (r.sustain.length) {
    L.push('### Sustained rate, 100 logs/request, constant rate through nginx, 50 connections', '');
    const plan = r.sustainPlan!;
    L.push(`Offered rates are ${plan.fractions.map(pct).join(', ')} of the COPY ceiling measured right before the steps, ${plan.seconds} s each; the steps stop at the first that does not hold. A step holds when the persister kept up: e2e ≥ 95% of the offered rate and every log committed within 1 s of the load's end; ≥ 97% of the offered rate accepted and nothing refused. e2e = rows / (first log received → last committed). COPY ceiling measured right before the steps: ${r.sustainCeiling ? `${f0(r.sustainCeiling)} rows/s` : '—'}.`, '');
    L.push('| offered logs/s | accepted logs/s | e2e persisted logs/s | e2e / COPY ceiling | committed after the load | max backlog | p95 ms | p99 ms | non-2xx | others (cores) | holds |', '|---|---|---|---|---|---|---|---|---|---|---|');
    for (const s of r.sustain) {
      L.push(`| ${f0(s.logsPerS)} | ${f0(s.achievedLogsPerS)} | ${f0(s.e2eLogsPerS)} | ${r.sustainCeiling ? pct(s.e2eLogsPerS / r.sustainCeiling) : '—'} | ${f2(s.drainSeconds)} s | ${f0(s.maxBacklog)} | ${f2(s.p95)} | ${f2(s.p99)} | ${s.refused} | ${f1(s.othersCores)} | ${s.pass ? 'yes' : 'no'} |`);
    }
    L.push('');
    L.push(`CPU during each step (cores averaged over the load, from /proc; ${r.machine.nproc}.0 = the whole machine; "bench's processes" = everything the bench started, itself included):`, '');
    L.push(`| offered logs/s | ${CPU_ROLES.join(' | ')} | bench's processes | others |`, `|---|${CPU_ROLES.map(() => '---|').join('')}---|---|`);
    for (const s of r.sustain) L.push(`| ${f0(s.logsPerS)} | ${CPU_ROLES.map((role) => f2(s.cores[role] ?? 0)).join(' | ')} | ${f2(s.stackCores)} | ${f2(s.othersCores)} |`);
    L.push('');
  }

  L.push('### Ceilings, measured in the same run on the same servers', '');
  L.push('| ceiling | figure |', '|---|---|');
  if (r.copy.length) {
    L.push(`| raw COPY of logd's rows into \`CREATE TABLE … (LIKE logs INCLUDING ALL)\` (indexes: ${r.copy[0].indexes.map((i) => `\`${i}\``).join(', ')}), ${f0(r.copy[0].rows)} rows, ${f0(r.copy[0].batchRows)} per COPY statement, one connection; median of ${r.copy.length} | ${f0(ceiling)} rows/s (each: ${r.copy.map((c) => `${f0(c.rowsPerS)} ${c.at}`).join('; ')}) |`);
    const cpu = r.copy.map((c) => c.postgresCpuUsPerRow);
    L.push(`| PostgreSQL's CPU per row in those COPYs (all its processes, /proc; compare with the postgres column of "CPU cost per log" below) | median ${f2(median(cpu))} µs (${f2(Math.min(...cpu))}-${f2(Math.max(...cpu))} over ${r.copy.length}) |`);
  }
  if (r.drain) {
    const d = r.drain;
    const wrong = r.drains.filter((x) => x.lost || x.duplicated || x.unknownRows);
    L.push(`| logd's persister alone: ${f0(d.logs)} logs preloaded in the stream as ${f0(d.frames)} frames, then logd started | ${f0(d.rowsPerS)} rows/s${d.ceiling ? ` = ${pct(d.rowsPerS / d.ceiling)} of the COPY ceiling measured right before (${f0(d.ceiling)})` : ''}`
      + `${r.drains.length > 1 ? ` (each run: ${r.drains.map((x) => `${f0(x.rowsPerS)}${x.ceiling ? ` vs ${f0(x.ceiling)}` : ''}`).join('; ')})` : ''}`
      + `${wrong.length ? ` — **${wrong.map((x) => `lost ${x.lost}, duplicated ${x.duplicated}, unknown rows ${x.unknownRows} of ${f0(x.logs)}`).join('; ')}**` : ''} |`);
  }
  for (const x of r.xadd) {
    L.push(`| raw XADD, ${x.per}-log frames (${f0(x.frameBytes)} B), redis-benchmark -c 8 -P 16 | ${f0(x.xaddFramesPerS)} frames/s = ${f0(x.xaddFramesPerS * x.per)} logs/s |`);
    L.push(`| logd's append.lua (EVALSHA), ${x.per}-log frames | ${f0(x.appendFramesPerS)} frames/s = ${f0(x.appendFramesPerS * x.per)} logs/s |`);
  }
  L.push('');

  L.push('### Memory and CPU', '');
  const roles = new Map<string, { rss: number; count: number }>();
  for (const x of [...r.runs, ...r.steady]) {
    for (const [role, v] of Object.entries(x.peakRss)) {
      const cur = roles.get(role) ?? { rss: 0, count: 0 };
      roles.set(role, { rss: Math.max(cur.rss, v.rss), count: Math.max(cur.count, v.count) });
    }
  }
  const shown = ['logd: http', 'logd: persister', 'logd: primary', 'redis-server', 'postgres', 'nginx: worker', 'nginx: master', 'wrk'];
  L.push('Peak RSS of one process (VmRSS sampled every 250 ms over all loads; postgres\' RSS includes the shared buffers it touched):', '');
  L.push('| process | processes | peak RSS MB |', '|---|---|---|');
  for (const role of shown) {
    const v = roles.get(role);
    if (v) L.push(`| ${role} | ${v.count} | ${mb(v.rss)} |`);
  }
  L.push('');
  L.push(`CPU during the load (cores, median over runs; ${r.machine.nproc}.0 = the whole machine):`, '');
  L.push(`| scenario | via | ${CPU_ROLES.join(' | ')} | others |`, `|---|---|${CPU_ROLES.map(() => '---|').join('')}---|`);
  for (const s of SCENARIOS) {
    for (const via of ['direct', 'nginx'] as Via[]) {
      const g = group(r.runs, s.key, via);
      if (!g.length) continue;
      L.push(`| ${s.key} | ${via} | ${CPU_ROLES.map((role) => f2(median(g.map((x) => (x.roles[role]?.cpuS ?? 0) / x.seconds)))).join(' | ')} | ${f2(median(g.map((x) => x.othersCores)))} |`);
    }
  }
  L.push('');
  L.push('CPU cost per log (µs of CPU over the load and the drain, per log sent for nginx and the HTTP workers, per row stored for the others; robust to the machine\'s other load, unlike rates):', '');
  const costRoles = ['nginx: worker', 'logd: http', 'redis-server', 'logd: persister', 'postgres'];
  L.push(`| scenario | via | ${costRoles.join(' | ')} | total logd path |`, `|---|---|${costRoles.map(() => '---|').join('')}---|`);
  for (const s of SCENARIOS) {
    for (const via of ['direct', 'nginx'] as Via[]) {
      const g = group(r.runs, s.key, via);
      if (!g.length) continue;
      const per = costRoles.map((role) => median(g.map((x) => x.cpuPerLogUs[role] ?? 0)));
      L.push(`| ${s.key} | ${via} | ${per.map(f2).join(' | ')} | ${f2(per.reduce((a, b) => a + b, 0))} |`);
    }
  }
  L.push('');

  if (r.profile) {
    const p = r.profile;
    L.push(`### CPU profile (node --cpu-prof), ${p.scenario}`, '');
    L.push(`Samples from ${p.window}. Shares are of the process's busy (non-idle) time; each sample counts for the deepest frame of its stack that falls in a category (JSON.stringify called from validate.ts counts as validation).`, '');
    const table = (title: string, rep: ProfileReport): void => {
      L.push(`**${title}** — busy ${f0(rep.busyMs)} ms of ${f0(rep.wallMs)} ms sampled (${pct(rep.busyMs / rep.wallMs)})`, '');
      L.push('| where | ms | % of busy |', '|---|---|---|');
      for (const c of rep.categories) L.push(`| ${c.name} | ${f0(c.ms)} | ${f1(c.pctBusy)} |`);
      L.push('');
      L.push('Top functions by self time:', '');
      L.push('| function | ms | % of busy |', '|---|---|---|');
      for (const t of rep.topSelf) L.push(`| \`${t.fn.replace(/\|/g, '\\|')}\` | ${f0(t.ms)} | ${f1(t.pctBusy)} |`);
      L.push('');
    };
    table(p.httpProfiles === 1 ? 'HTTP worker' : `HTTP workers (all ${p.httpProfiles} merged)`, p.http);
    if (p.persister) table('Persister', p.persister);
  }

  if (r.notes.length) {
    L.push('### Notes', '');
    for (const n of r.notes) L.push(`- ${n}`);
    L.push('');
  }
  return L.join('\n');
}

/** Replaces the section between the markers (re-reading the file right before), or appends it. */
export function writeSection(file: string, body: string): void {
  const block = `${BEGIN}\n${body.trimEnd()}\n${END}`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  if (b >= 0 && e > b) text = text.slice(0, b) + block + text.slice(e + END.length);
  else text = `${text.trimEnd()}\n\n${block}\n`;
  fs.writeFileSync(file, text);
}
