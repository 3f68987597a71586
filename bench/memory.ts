/**
 * Memory benchmark (BENCHMARKS.md, "Memory under maximum-size batches"):
 * private Redis and PostgreSQL, a real `logd serve` with 2 HTTP workers, and
 * rounds of 16 concurrent maximum-size batches per worker (50 MiB bodies of
 * 1000 logs, each on its own connection). Each HTTP worker's RSS is sampled
 * from /proc every 20 ms; the report gives, per setting of
 * server.max_inflight_bytes, the answers, the peak RSS of each worker per
 * round (median over rounds) and whether any worker was restarted.
 *
 *   npm run bench:memory          # BENCH_ROUNDS=3; BENCH_BUDGETS=67108864,0 (0: no budget, to show the failure)
 */
import { readFileSync } from 'node:fs';
import { cleanupAll, startPostgres, startRedis } from '../test/helpers/services';
import { postAlone, startLogd } from '../test/helpers/logd';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BUDGETS = (process.env.BENCH_BUDGETS ?? '67108864,0').split(',').map(Number);
const WORKERS = 2;
const PER_WORKER = 16;

function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const data = 'd'.repeat(52_000);
  const body = Buffer.from(JSON.stringify({ logs: Array.from({ length: 1000 }, (_, i) => ({ device_id: 'mem', log_level: 'INFO', message: `m${i}`, log_data: { data } })) }));
  console.log(`body: ${body.length} bytes; ${WORKERS} HTTP workers; ${PER_WORKER * WORKERS} concurrent batches per round; ${ROUNDS} rounds per budget`);
  const lines: string[] = [];
  for (const budget of BUDGETS) {
    const redis = await startRedis();
    const pg = await startPostgres();
    // Redis takes seconds to append a 50 MiB frame: no command timeout gets in the way of what is measured.
    const logd = await startLogd({
      redis, pg, workers: WORKERS,
      env: { LOGD_SERVER_MAX_INFLIGHT_BYTES: String(budget || Number.MAX_SAFE_INTEGER), LOGD_REDIS_COMMAND_TIMEOUT_MS: '120000' },
    });
    const seen = new Set(logd.children('http'));
    const peaks: number[][] = [];
    const answers = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      const pids = logd.children('http');
      const peak = new Map<number, number>(pids.map((p) => [p, rssMb(p) ?? 0]));
      const sampler = setInterval(() => {
        for (const p of pids) peak.set(p, Math.max(peak.get(p) ?? 0, rssMb(p) ?? 0));
      }, 20);
      const got = (await Promise.all(Array.from({ length: PER_WORKER * WORKERS }, () => postAlone(logd.port, '/api/logs/batch', body))))
        .map((a) => (a.status === 200 ? '200' : a.status === 0 ? `error ${a.code}` : `${a.status} ${a.code}`));
      clearInterval(sampler);
      for (const a of got) answers.set(a, (answers.get(a) ?? 0) + 1);
      peaks.push([...peak.values()].sort((a, b) => b - a));
      // A crashed worker comes back after the primary's backoff: wait for it before the next round.
      const deadline = Date.now() + 30_000;
      while (logd.children('http').length < WORKERS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      for (const p of logd.children('http')) seen.add(p);
    }
    const restarted = seen.size - WORKERS;
    await logd.stop();
    await cleanupAll();
    const worst = peaks.map((p) => p[0]);
    const line = `max_inflight_bytes=${budget || 'none'}: answers ${JSON.stringify(Object.fromEntries(answers))}; peak RSS of the busier worker per round ${worst.map((x) => x.toFixed(0)).join(', ')} MB (median ${median(worst).toFixed(0)} MB); worker processes replaced: ${restarted}`;
    console.log(line);
    lines.push(line);
  }
  console.log(`\n${lines.join('\n')}`);
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  void cleanupAll().finally(() => process.exit(1));
});
