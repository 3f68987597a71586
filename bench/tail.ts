/**
 * Live tail benchmark: `npm run bench:tail`.
 *
 * What live tails cost ingest. One logd (default worker count) on the
 * bench's own Redis and PostgreSQL (bench/lib/stack.ts) and a load generator
 * in a child process (this file with --sender): POST /api/logs/batch, 100
 * logs per request over 1,000 devices, closed loop on CONNECTIONS keep-alive
 * connections. In rounds, two phases take turns, each for a fixed time after
 * a warm-up: (a) no subscriber, (b) SUBSCRIBERS WebSocket tails (GET
 * /api/tail), each following one distinct device and reading everything it
 * receives. Per phase: the logs/s that reached the stream
 * (logd_logs_accepted_total) and the CPU of the HTTP workers; in (b), that
 * every tail got every log of its device (received + skipped = expected).
 * After (b), that the tails' stream reader is gone (no `logd:tail`
 * connection in CLIENT LIST): nothing is read while no one tails.
 *
 * Prints a markdown section; with BENCH_OUT=FILE, also writes it between
 * `<!-- bench:tail:begin -->` and `<!-- bench:tail:end -->` of FILE.
 *
 *   npm run bench:tail   # BENCH_ROUNDS=3 BENCH_SECONDS=10 BENCH_WARMUP_S=2 BENCH_OUT=- (print only)
 */
import * as fs from 'node:fs';
import { fork } from 'node:child_process';
import http from 'node:http';
import * as path from 'node:path';
import WebSocket from 'ws';
import { QUIET_CORES, QuietGate } from './lib/proc';
import { median } from './lib/run';
import { backlogWaits, benchServices, int, measuredWindow, QUIET_PER_LOAD_MS, versions, writeSection } from './lib/harness';
import { sleep, startLogd, stopAll, storage } from './lib/stack';

const ROOT = path.resolve(__dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 2);
const OUT = process.env.BENCH_OUT ?? '-';
const CONNECTIONS = 16;
const PER = 100;
const DEVICES = 1000;
const SUBSCRIBERS = 100;
/** Bodies the sender cycles through: together they hold every device once per PER logs (DEVICES / PER bodies). */
const BODIES = DEVICES / PER;
/** Tails follow dev-0000, dev-0010, ...: every body holds SUBSCRIBERS / BODIES of their devices. */
const STEP = DEVICES / SUBSCRIBERS;
/** Budget of the quiet gate (waits while other processes use > QUIET_CORES cores) over the whole bench, in ms. */
const QUIET_BUDGET_MS = 60_000;
/** How a logs message starts, and how each log in it starts (src/tail/messages.ts). */
const LOGS_PREFIX = '{"type":"logs"';
const LOG_MARK = '{"device_id":';
const FILLER = 'GET /api/v1/items?page=3 answered 200 in 12 ms for user alice';

type SenderMessage = { start: { port: number } } | { stop: true };
interface SenderResult { requests: number; logs: number; errors: Record<string, number> }

const device = (k: number): string => `dev-${String(k % DEVICES).padStart(4, '0')}`;

/** The child: sends batches until told to stop, then answers what it delivered. */
function sender(): void {
  const bodies = Array.from({ length: BODIES }, (_, b) => JSON.stringify({
    logs: Array.from({ length: PER }, (_, j) => ({
      device_id: device(b * PER + j), log_level: j % 10 === 9 ? 'ERROR' : 'INFO', message: `${b}:${j} ${FILLER}`,
      log_data: { seq: j, region: 'eu-west-1', path: '/api/v1/items' },
    })),
  }));
  let running = false;
  let result: SenderResult = { requests: 0, logs: 0, errors: {} };
  const post = (agent: http.Agent, port: number, body: string): Promise<number> => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/api/logs/batch', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
  const loop = async (port: number, i: number): Promise<void> => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let n = i;
    while (running) {
      const status = await post(agent, port, bodies[n++ % BODIES]);
      if (status === 200) {
        result.requests++;
        result.logs += PER;
      } else result.errors[status] = (result.errors[status] ?? 0) + 1;
    }
    agent.destroy();
  };
  let loops: Promise<void>[] = [];
  process.on('message', (m: SenderMessage) => {
    if ('start' in m) {
      running = true;
      result = { requests: 0, logs: 0, errors: {} };
      loops = Array.from({ length: CONNECTIONS }, (_, i) => loop(m.start.port, i));
    } else {
      running = false;
      void Promise.all(loops).then(() => process.send!({ result }));
    }
  });
}

interface Phase {
  kind: 'a' | 'b';
  round: number;
  rate: number;
  /** cores used by the HTTP workers, all of them together */
  httpCores: number;
  /** CPU of the HTTP workers per accepted log, µs */
  httpUs: number;
  /** cores other processes of the machine used over the phase (noise) */
  others: number;
  /** cores used by each role (logd's processes, redis-server, postgres, the sender, this process with the tails) */
  roles: Map<string, number>;
  delivered: number;
  /** (b) logs the tails received and were told they skipped, and what their devices got */
  received?: number;
  skipped?: number;
  expected?: number;
}

const log = (s: string): void => { process.stderr.write(`[bench:tail ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`); };
const T0 = Date.now();

async function main(): Promise<void> {
  const startedAt = new Date();
  const { head, redisServer, redis, pgs } = await benchServices(ROOT, log);
  const logd = await startLogd(ROOT, redisServer, pgs, { env: { LOGD_QUEUE_MAX_BACKLOG: '50000000', LOGD_TAIL_MAX_SUBSCRIBERS: String(SUBSCRIBERS * 2) } });
  const where = await storage(redis, pgs.pool);
  log(`logd on ${logd.url}, ${logd.config.workers} HTTP workers; postgres on ${where.postgres.fs}, redis AOF on ${where.redis.fs}`);
  const child = fork(__filename, ['--sender'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const run = (): { stop(): Promise<SenderResult> } => {
    child.send({ start: { port: logd.port } } satisfies SenderMessage);
    return {
      stop: () => new Promise((resolve) => {
        child.once('message', (m: { result: SenderResult }) => resolve(m.result));
        child.send({ stop: true } satisfies SenderMessage);
      }),
    };
  };
  const { clean } = backlogWaits(redis, pgs.pool);
  // logd, and this process with the sender and the tails: the rest of the machine is noise
  const roots = (): number[] => [process.pid];
  const readers = async (): Promise<number> => ((await redis.call('CLIENT', 'LIST')) as string).split('\n').filter((l) => / name=logd:tail /.test(l)).length;

  const gate = new QuietGate(QUIET_BUDGET_MS, QUIET_CORES, QUIET_PER_LOAD_MS);
  log('warm-up, not measured');
  const warm = run();
  await sleep(WARMUP_S * 3000);
  await warm.stop();
  const phases: Phase[] = [];
  let readerLeft = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const kind of ['a', 'b'] as const) {
      await clean();
      const quiet = await gate.wait([process.pid]);
      let received = 0;
      let skipped = 0;
      const tails: WebSocket[] = [];
      if (kind === 'b') {
        await Promise.all(Array.from({ length: SUBSCRIBERS }, (_, i) => new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${logd.port}/api/tail?device_id=${device(i * STEP)}`);
          tails.push(ws);
          // Counted without parsing: the tails share this process's core with the load, and the bench measures logd.
          ws.on('message', (data) => {
            const text = data.toString();
            if (text.startsWith(LOGS_PREFIX)) received += text.split(LOG_MARK).length - 1;
            else {
              const m = JSON.parse(text) as { type: string; count?: number };
              if (m.type === 'ready') resolve();
              else if (m.type === 'skipped') skipped += m.count ?? 0;
            }
          });
          ws.on('error', reject);
        })));
      }
      const load = run();
      const { accepted, seconds, cpu: w } = await measuredWindow(logd, roots, WARMUP_S, SECONDS);
      const result = await load.stop();
      const httpS = w.roles.get('logd: http')?.cpuS ?? NaN;
      if (!(httpS > 0)) throw new Error(`no CPU of logd's HTTP workers sampled: roles ${[...w.roles.keys()].join(', ')}`);
      const p: Phase = { kind, round, rate: accepted / seconds, httpCores: httpS / w.seconds, httpUs: (httpS * 1e6) / accepted, others: w.othersCores, delivered: result.logs,
        roles: new Map([...w.roles].map(([role, r]) => [role, r.cpuS / w.seconds])) };
      if (kind === 'b') {
        // every body holds SUBSCRIBERS / BODIES followed devices, one log each
        const expected = (result.logs / PER) * (SUBSCRIBERS / BODIES);
        const t = Date.now();
        while (received + skipped < expected && Date.now() - t < 30_000) await sleep(50);
        Object.assign(p, { received, skipped, expected });
        for (const ws of tails) ws.close();
        await Promise.all(tails.map((ws) => new Promise((r) => (ws.readyState === WebSocket.CLOSED ? r(undefined) : ws.once('close', r)))));
        const t2 = Date.now();
        while ((readerLeft = await readers()) > 0 && Date.now() - t2 < 10_000) await sleep(50);
      }
      phases.push(p);
      log(`${kind} #${round}: ${int(p.rate)} logs/s; HTTP workers ${p.httpCores.toFixed(2)} cores, ${p.httpUs.toFixed(1)} µs/log; delivered ${int(result.logs)}; `
        + `cores ${[...p.roles].map(([role, c]) => `${role} ${c.toFixed(2)}`).join(', ')}; others ${p.others.toFixed(2)} cores (${quiet.others.toFixed(2)} before, waited ${quiet.waitedMs} ms)`
        + `${Object.keys(result.errors).length ? `, errors ${JSON.stringify(result.errors)}` : ''}`
        + `${kind === 'b' ? `; tails received ${int(p.received!)} + skipped ${int(p.skipped!)} of ${int(p.expected!)}; reader connections after they left: ${readerLeft}` : ''}`);
    }
  }
  child.kill();
  const section = report(phases, { startedAt, head, where: `PostgreSQL data on ${where.postgres.fs} (fsync ${where.postgres.fsync}), Redis AOF on ${where.redis.fs} (appendfsync ${where.redis.appendfsync})`, workers: logd.config.workers, readerLeft });
  await logd.stop();
  process.stdout.write(`${section}\n`);
  if (OUT !== '-') {
    if (!fs.existsSync(OUT)) fs.writeFileSync(OUT, '');
    writeSection(OUT, { begin: '<!-- bench:tail:begin -->', end: '<!-- bench:tail:end -->', after: '<!-- bench:protocols:end -->' }, section);
  }
}

function report(phases: Phase[], h: { startedAt: Date; head: string; where: string; workers: number; readerLeft: number }): string {
  const of = (k: 'a' | 'b') => phases.filter((p) => p.kind === k);
  const med = (k: 'a' | 'b', f: (p: Phase) => number): number => median(of(k).map(f));
  const ratios = of('b').map((b) => b.rate / of('a').find((a) => a.round === b.round)!.rate);
  const b = of('b');
  const lines = [
    '## Live tail: the cost of subscribers to ingest',
    '',
    `Run ${h.startedAt.toISOString()} at ${h.head}: \`npm run bench:tail\` (BENCH_ROUNDS=${ROUNDS} BENCH_SECONDS=${SECONDS} BENCH_WARMUP_S=${WARMUP_S}).`,
    `${versions()}. ${h.where}. logd with ${h.workers} HTTP workers, everything on loopback.`,
    '',
    `Load: POST /api/logs/batch, ${PER} logs/request over ${int(DEVICES)} devices, closed loop on ${CONNECTIONS} keep-alive connections, ${SECONDS} s per phase after ${WARMUP_S} s of warm-up, `
      + `${ROUNDS} rounds alternating (a) no subscriber and (b) ${SUBSCRIBERS} WebSocket tails, each following one distinct device and reading everything it receives.`,
    '',
    '| phase | logs/s per round | median logs/s | HTTP workers, cores (median) | HTTP workers, µs/log (median) |',
    '|---|---|---|---|---|',
    `| (a) no subscriber | ${of('a').map((p) => int(p.rate)).join(', ')} | ${int(med('a', (p) => p.rate))} | ${med('a', (p) => p.httpCores).toFixed(2)} | ${med('a', (p) => p.httpUs).toFixed(1)} |`,
    `| (b) ${SUBSCRIBERS} tails | ${b.map((p) => int(p.rate)).join(', ')} | ${int(med('b', (p) => p.rate))} | ${med('b', (p) => p.httpCores).toFixed(2)} | ${med('b', (p) => p.httpUs).toFixed(1)} |`,
    '',
    '',
    '| phase | cores by process (median) |',
    '|---|---|',
    ...(['a', 'b'] as const).map((k) => `| (${k}) | ${[...of(k)[0].roles.keys()].map((role) => `${role} ${med(k, (p) => p.roles.get(role) ?? 0).toFixed(2)}`).join(', ')} |`),
    '',
    `Other processes on the machine used ${phases.map((p) => p.others.toFixed(2)).join(', ')} cores during the phases (a1, b1, a2, ...).`,
    `Ratio (b)/(a) per round: ${ratios.map((r) => r.toFixed(3)).join(', ')}; median **${median(ratios).toFixed(3)}** (target ≥ 0.90).`,
    `Tails: received ${b.map((p) => int(p.received!)).join(', ')} logs and were told of ${b.map((p) => int(p.skipped!)).join(', ')} skipped, of ${b.map((p) => int(p.expected!)).join(', ')} sent to their devices.`,
    `After the last tail left, \`logd:tail\` connections in CLIENT LIST: ${h.readerLeft} (the reader stops when no one tails).`,
  ];
  return lines.join('\n');
}

if (process.argv[2] === '--sender') sender();
else {
  main().then(() => stopAll()).then(() => process.exit(0), (err) => {
    process.stderr.write(`bench:tail failed: ${(err as Error).stack ?? err}\n`);
    void stopAll().finally(() => process.exit(1));
  });
}
