/**
 * /proc sampling: which processes belong to the stack (descendants of the
 * pids the bench started), their role (process title), RSS and CPU time;
 * and the machine's total CPU time, so that the CPU used by processes that
 * are not ours (other engineers' test runs) can be reported as noise.
 */
import * as fs from 'node:fs';

export const CLK_TCK = 100; // USER_HZ on Linux

export interface ProcInfo {
  pid: number;
  ppid: number;
  role: string;
  /** VmRSS, bytes */
  rss: number;
  /** utime + stime, clock ticks */
  cpu: number;
}

function readStat(pid: number): { ppid: number; cpu: number } | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0] = state (field 3), ppid = field 4, utime = 14, stime = 15
    return { ppid: Number(rest[1]), cpu: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return undefined;
  }
}

function readRss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function readCmd(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The role a process plays, from its command line / title. */
export function roleOf(cmd: string): string {
  if (cmd.startsWith('logd: ')) return cmd.trim();
  if (cmd.startsWith('nginx: master')) return 'nginx: master';
  if (cmd.startsWith('nginx: worker')) return 'nginx: worker';
  if (/redis-server/.test(cmd)) return 'redis-server';
  if (/^postgres:|\/postgres\b|^postgres\b/.test(cmd)) return 'postgres';
  if (/(^|\/)wrk\b/.test(cmd)) return 'wrk';
  if (/(^|\/)redis-benchmark\b/.test(cmd)) return 'redis-benchmark';
  if (/node/.test(cmd) && /logd\.js/.test(cmd)) return 'logd: primary';
  return cmd.split(' ')[0] || '?';
}

/** Every process that descends from one of `roots` (roots included). */
export function descendants(roots: number[]): ProcInfo[] {
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const st = readStat(pid);
    if (!st) continue;
    parent.set(pid, st.ppid);
    cpu.set(pid, st.cpu);
  }
  const wanted = new Set(roots.filter((p) => parent.has(p)));
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!wanted.has(pid) && wanted.has(ppid)) {
        wanted.add(pid);
        grew = true;
      }
    }
  }
  return [...wanted].map((pid) => ({ pid, ppid: parent.get(pid)!, role: roleOf(readCmd(pid)), rss: readRss(pid), cpu: cpu.get(pid) ?? 0 }));
}

/** Busy and total CPU ticks of the whole machine (/proc/stat first line). */
export function machineCpu(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

export interface RoleStats {
  /** highest RSS of one process of this role, bytes */
  peakRss: number;
  /** most processes of this role seen at once */
  count: number;
  /** CPU seconds used by the role over the window */
  cpuS: number;
}

/**
 * Samples the processes under `roots()` every `everyMs` until stop():
 * peak RSS per role, CPU seconds per role over the window, and CPU seconds
 * used by everything else on the machine (noise).
 */
export class Sampler {
  private timer: NodeJS.Timeout | undefined;
  private readonly peak = new Map<string, { rss: number; count: number }>();
  private readonly firstCpu = new Map<number, { role: string; cpu: number }>();
  private readonly lastCpu = new Map<number, { role: string; cpu: number }>();
  private m0 = machineCpu();
  private t0 = Date.now();
  private m1 = this.m0;
  private t1 = this.t0;

  constructor(private readonly roots: () => number[], private readonly everyMs = 200) {}

  start(): this {
    this.m0 = machineCpu();
    this.t0 = Date.now();
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    return this;
  }

  private sample(): void {
    const procs = descendants(this.roots());
    const counts = new Map<string, number>();
    for (const p of procs) {
      counts.set(p.role, (counts.get(p.role) ?? 0) + 1);
      const pk = this.peak.get(p.role) ?? { rss: 0, count: 0 };
      pk.rss = Math.max(pk.rss, p.rss);
      this.peak.set(p.role, pk);
      if (!this.firstCpu.has(p.pid)) this.firstCpu.set(p.pid, { role: p.role, cpu: p.cpu });
      this.lastCpu.set(p.pid, { role: p.role, cpu: p.cpu });
    }
    for (const [role, n] of counts) {
      const pk = this.peak.get(role)!;
      pk.count = Math.max(pk.count, n);
    }
    this.m1 = machineCpu();
    this.t1 = Date.now();
  }

  /** Stops and returns per-role figures, our total CPU, the others' CPU (both in cores, averaged). */
  stop(): { roles: Map<string, RoleStats>; oursCores: number; othersCores: number; seconds: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    const roles = new Map<string, RoleStats>();
    let ours = 0;
    for (const [pid, last] of this.lastCpu) {
      const first = this.firstCpu.get(pid)!;
      const d = (last.cpu - first.cpu) / CLK_TCK;
      ours += d;
      const pk = this.peak.get(last.role) ?? { rss: 0, count: 0 };
      const r = roles.get(last.role) ?? { peakRss: pk.rss, count: pk.count, cpuS: 0 };
      r.cpuS += d;
      roles.set(last.role, r);
    }
    const seconds = Math.max((this.t1 - this.t0) / 1000, 1e-3);
    const busy = (this.m1.busy - this.m0.busy) / CLK_TCK;
    return { roles, oursCores: ours / seconds, othersCores: Math.max(0, busy - ours) / seconds, seconds };
  }
}

/** CPU (in cores) used over `ms` by processes that do not descend from `roots`. */
export async function othersCores(roots: number[], ms = 1000): Promise<number> {
  const ours = (): number => descendants(roots).reduce((a, p) => a + p.cpu, 0);
  const m0 = machineCpu();
  const o0 = ours();
  await new Promise((r) => setTimeout(r, ms));
  const m1 = machineCpu();
  const o1 = ours();
  return Math.max(0, (m1.busy - m0.busy) - (o1 - o0)) / CLK_TCK / (ms / 1000);
}

/** Other processes' CPU below which the machine counts as quiet (cores). */
export const QUIET_CORES = 0.3;

/**
 * Waits (within a budget shared by the whole bench) until the machine's other
 * load is below `maxCores` for one second, so that runs start on a quiet
 * machine when there is one. Returns the last reading.
 */
export class QuietGate {
  constructor(private budgetMs: number, private readonly maxCores = QUIET_CORES, private readonly perRunMs = 20_000) {}

  async wait(roots: number[]): Promise<{ others: number; waitedMs: number }> {
    const t0 = Date.now();
    let others = await othersCores(roots, 1000);
    while (others > this.maxCores && this.budgetMs - (Date.now() - t0) > 0 && Date.now() - t0 < this.perRunMs) {
      others = await othersCores(roots, 1000);
    }
    const waitedMs = Date.now() - t0;
    this.budgetMs = Math.max(0, this.budgetMs - waitedMs);
    return { others, waitedMs };
  }

  get remainingMs(): number {
    return this.budgetMs;
  }
}
