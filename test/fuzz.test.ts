/**
 * Fuzzing the door: 10,000 generated malformed,
 * adversarial and valid requests against one logd with small body limits,
 * plus slow senders dribbling bytes and a flood of 200 simultaneous
 * connections. Checks: logd never crashes (same worker, persister and
 * primary pids at the end) or hangs (every request answered within a
 * deadline); every answer to a bad request is a JSON 4xx with a `code` and a
 * `detail`; PostgreSQL holds exactly the logs of the requests answered 200.
 *
 * The generator is seeded: the seed is printed; LOGD_TEST_SEED=<seed> replays.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import t from 'tap';
import { cleanupAll, startPostgres, startRedis } from './helpers/services';
import { childPids, startLogd } from './helpers/logd';
import { alive, prng, stopLogd, testRedis, testSeed, waitDrained } from './helpers/faults';
import {
  CODES_BY_STATUS, FUZZ_WINDOW, Generator, KINDS, checkErrorAnswer, collect, connect, int, parseResponse, pick, send, sleep,
  type Case, type ExpectedLog, type Outcome, type RawResult, type Rnd,
} from './helpers/fuzz';

const CASES = 10_000;
const CONCURRENCY = 32;
/** A request not answered within this counts as a hang. */
const DEADLINE_MS = 10_000;
const LIMITS = { single: 32 * 1024, batch: 128 * 1024 };
const SLOW_SENDERS = 16;
const FLOOD = 200;
/** uWS closes a connection idle for 10 s (checked every 4 s): malformed HTTP may wait for that. */
const BAD_HTTP_DEADLINE_MS = 20_000;

const seed = testSeed();
t.comment(`seed ${seed} (replay with LOGD_TEST_SEED=${seed})`);

/** Key-order-independent JSON text, to compare log_data with what JSONB hands back. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

interface Failure {
  kind: string;
  why: string;
}

const isJsonError = (r: { status: number; headers: Record<string, string> | http.IncomingHttpHeaders; body: Buffer }): boolean => {
  const check = checkErrorAnswer({ kind: 'response', status: r.status, headers: r.headers as http.IncomingHttpHeaders, body: r.body, ms: 0 });
  return check.ok && r.status >= 400 && r.status < 500;
};

/** A digest of generated cases: equal digests, same requests. */
function digest(cases: Iterable<Case>): string {
  const h = createHash('sha256');
  for (const c of cases) {
    h.update(JSON.stringify([c.kind, c.method, c.path, c.headers, c.chunked ?? false, c.expect, c.code ?? '', c.body.length]));
    h.update(c.body);
  }
  return h.digest('hex');
}

/** The request line and headers of a single-log POST with a body of `length` bytes. */
const head = (length: number, extra = ''): string =>
  `POST /api/log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extra}\r\n`;

t.test('fuzz the ingest endpoints', async (t) => {
  const rnd: Rnd = prng(seed);
  const prefix = `fz${seed}`;
  const [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
  const r = testRedis(redis);
  const logd = await startLogd({
    redis, pg, workers: 2,
    env: {
      LOGD_SERVER_BODY_LIMIT_SINGLE: String(LIMITS.single),
      LOGD_SERVER_BODY_LIMIT_BATCH: String(LIMITS.batch),
      LOGD_PERSISTER_RETRY_MAX_BACKOFF_MS: '500',
      LOGD_RETENTION_DAYS: String(FUZZ_WINDOW.days),
      LOGD_INGEST_MAX_FUTURE_S: String(FUZZ_WINDOW.futureS),
    },
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  t.teardown(async () => {
    agent.destroy();
    await stopLogd(logd);
    if (!t.passing()) t.comment(`logd output, last lines:\n${logd.output().trimEnd().split('\n').slice(-30).map((l) => l.slice(0, 400)).join('\n')}`);
    r.disconnect();
    await cleanupAll();
  });
  const primary = logd.proc.pid!;
  const workers = logd.children('http').sort();
  const persisters = logd.children('persister');
  t.equal(workers.length, 2, 'two HTTP workers');

  const now = Date.now();
  const gen = new Generator(rnd, prefix, LIMITS, now);
  // LOGD_FUZZ_SKIP=<regexp of kinds>: a debugging aid to look past a known failure; a run with it set fails.
  const skipEnv = process.env.LOGD_FUZZ_SKIP;
  const skip = skipEnv ? new RegExp(skipEnv) : undefined;
  if (skip) t.comment(`skipping kinds matching ${skip}`);
  const cases: Case[] = Array.from({ length: CASES }, () => gen.next(skip));
  // The seed alone decides the requests: a second generator from it makes the same ones, so a failing run replays.
  const replay = new Generator(prng(seed), prefix, LIMITS, now);
  const replayed = digest((function* () { for (let i = 0; i < CASES; i++) yield replay.next(skip); })());
  const failures: Failure[] = [];
  const accepted: ExpectedLog[] = [];
  const stats = new Map<string, number>();
  const count = (key: string): void => { stats.set(key, (stats.get(key) ?? 0) + 1); };
  let slowest = 0;

  /** Judges one answered case. */
  const judge = (c: Case, o: Outcome): void => {
    slowest = Math.max(slowest, o.ms);
    const fail = (why: string): void => { failures.push({ kind: c.kind, why: `${c.method} ${c.path} (${c.body.length} bytes): ${why}` }); };
    if (o.kind === 'deadline') { count(`${c.kind} -> hang`); return fail(`no answer within ${DEADLINE_MS} ms`); }
    if (o.kind === 'error') {
      count(`${c.kind} -> ${o.error}`);
      if (c.mayReset && /^(ECONNRESET|EPIPE)$/.test(o.error ?? '')) return;
      return fail(`connection failed: ${o.error}`);
    }
    const status = o.status!;
    count(`${c.kind} -> ${status}`);
    if (!c.expect.includes(status)) {
      return fail(`status ${status}, expected ${c.expect.join(' or ')}: ${o.body!.toString('utf8').slice(0, 300)}`);
    }
    if (status === 200) {
      accepted.push(...c.logs);
      return;
    }
    const check = checkErrorAnswer(o);
    if (!check.ok) return fail(`malformed error answer: ${check.why}`);
    if (!CODES_BY_STATUS[status]?.includes(check.code!)) return fail(`status ${status} with code ${check.code}`);
    if (c.code && check.code !== c.code) return fail(`code ${check.code}, expected ${c.code}`);
  };

  // --- the slow senders and the flood run alongside the main fuzz -------------

  const rawFailures: Failure[] = [];
  const rawStats = new Map<string, number>();
  const rawCount = (key: string): void => { rawStats.set(key, (rawStats.get(key) ?? 0) + 1); };
  let slowMessages = 0;
  let badHttpSlowest = 0;

  /**
   * A raw exchange's outcome. A `complete` request (sent whole, well framed) must be answered: 200
   * when it carries a `valid` log (then stored), else a JSON 4xx. An incomplete one may instead be
   * closed unanswered. `badHttp`: framing the server refuses itself (any 4xx, or a close).
   */
  const judgeRaw = (kind: string, res: RawResult, opts: { complete?: boolean; valid?: ExpectedLog; badHttp?: boolean } = {}): void => {
    const reply = parseResponse(res.received);
    const received = JSON.stringify(res.received.toString('latin1').slice(0, 200));
    if (res.end === 'deadline' && !reply) {
      rawCount(`${kind} -> hang`);
      rawFailures.push({ kind, why: `no answer and no close within the deadline (received ${received})` });
      return;
    }
    if (!reply) {
      rawCount(`${kind} -> ${res.end}${res.received.length ? ' (partial answer)' : ''}`);
      if (res.received.length) rawFailures.push({ kind, why: `incomplete answer ${received}` });
      else if (opts.complete) rawFailures.push({ kind, why: `a complete request closed (${res.end}${res.error ? ` ${res.error}` : ''}) without an answer` });
      return;
    }
    rawCount(`${kind} -> ${reply.status}`);
    if (opts.valid) {
      if (reply.status === 200) accepted.push(opts.valid);
      else rawFailures.push({ kind, why: `a valid log answered ${reply.status} ${reply.body.toString('utf8').slice(0, 200)}, not 200` });
      return;
    }
    if (opts.badHttp && reply.status >= 400 && reply.status < 500) return;
    if (!isJsonError(reply)) rawFailures.push({ kind, why: `answer ${reply.status} ${reply.body.toString('utf8').slice(0, 200)} is not a JSON 4xx` });
  };

  const slowSender = async (i: number): Promise<void> => {
    const variant = i % 4;
    const message = `${prefix}-slow-${i}`;
    const log: ExpectedLog = { device_id: 'slow', log_level: 'INFO', message, log_data: { i } };
    const body = Buffer.from(JSON.stringify({ device_id: 'slow', log_level: 'INFO', message, log_data: { i } }));
    slowMessages++;
    // One generator per sender: 16 senders drawing from one would take turns in whatever order the event loop runs them.
    const slowRnd = prng((seed ^ 0x5eed) + i);
    const s = await connect(logd.port);
    const answer = collect(s, DEADLINE_MS + 5000);
    const gap = (): Promise<void> => sleep(int(slowRnd, 5, 30));
    const budget = Date.now() + 5000; // dribbling is bounded in time
    const dribble = async (bytes: Buffer, upTo = bytes.length): Promise<boolean> => {
      for (let k = 0; k < upTo; k++) {
        if (s.destroyed || Date.now() > budget) return false;
        s.write(bytes.subarray(k, k + 1));
        await gap();
      }
      return true;
    };
    try {
      if (variant === 0) {
        // headers at once, the body byte by byte, complete
        s.write(head(body.length));
        const complete = await dribble(body);
        if (!complete) s.end();
        return judgeRaw(`slow-body (${complete ? 'complete' : 'time budget ran out'})`, await answer, complete ? { complete, valid: log } : {});
      }
      if (variant === 1) {
        // the headers byte by byte too (slowloris), then the body
        const complete = (await dribble(Buffer.from(head(body.length)))) && (await dribble(body));
        if (!complete) s.end();
        return judgeRaw(`slow-headers (${complete ? 'complete' : 'time budget ran out'})`, await answer, complete ? { complete, valid: log } : {});
      }
      if (variant === 2) {
        // a part of the body, then the client stops writing (half-close): Content-Length is never met
        s.write(head(body.length));
        await dribble(body, int(slowRnd, 1, body.length - 1));
        s.end();
        return judgeRaw('slow-then-half-close', await answer);
      }
      // a part of the body, then silence, then the client goes away
      s.write(head(body.length));
      await dribble(body, int(slowRnd, 1, body.length - 1));
      await sleep(500);
      s.destroy();
      const res = await answer;
      rawCount(`slow-then-abort -> ${parseResponse(res.received)?.status ?? 'no answer (client left)'}`);
    } finally {
      s.destroy();
    }
  };

  const flood = async (): Promise<void> => {
    const sockets = await Promise.all(Array.from({ length: FLOOD }, () => connect(logd.port)));
    rawCount(`flood: ${sockets.length} connections open at once`);
    const floodRnd = prng(seed ^ 0xf100d);
    await Promise.all(sockets.map(async (s, i) => {
      const v = i % 10;
      // Broken HTTP framing is uWS's to handle before logd sees a request: it may leave the
      // connection open until its idle timeout (about 10 s), so that wait is allowed there.
      const answer = collect(s, v === 7 ? BAD_HTTP_DEADLINE_MS : DEADLINE_MS);
      const t0 = Date.now();
      try {
        if (v < 6) {
          // a valid log
          const message = `${prefix}-flood-${i}`;
          const body = JSON.stringify({ device_id: 'flood', log_level: 'WARNING', message });
          s.write(head(Buffer.byteLength(body)) + body);
          return judgeRaw('flood-valid', await answer, { complete: true, valid: { device_id: 'flood', log_level: 'WARNING', message, log_data: {} } });
        }
        if (v === 6) {
          // an invalid body
          const body = `{"device_id":"flood","log_level":"NOPE","message":"${prefix}-flood-${i}"}`;
          s.write(head(body.length) + body);
          return judgeRaw('flood-invalid', await answer, { complete: true });
        }
        if (v === 7) {
          // broken HTTP framing: the server may refuse it itself (any 4xx) or close
          s.write(pick(floodRnd, [
            'GARBAGE\r\n\r\n',
            'POST /api/log HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}',
            'POST /api/log HTTP/1.1\r\nno colon here\r\n\r\n',
            `POST /api/log HTTP/1.1\r\nX-Big: ${'h'.repeat(int(floodRnd, 20_000, 100_000))}\r\n\r\n`,
            'POST /api/log HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\n{}12345',
            '\x00\x01\x02\x03\r\n\r\n',
          ]));
          const res = await answer;
          badHttpSlowest = Math.max(badHttpSlowest, Date.now() - t0);
          return judgeRaw('flood-bad-http', res, { badHttp: true });
        }
        // the client disappears mid-request
        s.write(head(100) + '{"device_id":"fl');
        await sleep(int(floodRnd, 0, 50));
        s.destroy();
        await answer;
        rawCount('flood-abort -> client left');
      } finally {
        s.destroy();
      }
    }));
  };

  // --- the main fuzz ----------------------------------------------------------

  const t0 = Date.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++];
      judge(c, await send(agent, logd.port, c, DEADLINE_MS));
    }
  };
  /** A side task that throws (say, connection refused) is a failure, not the end of the test. */
  const guarded = (kind: string, fn: () => Promise<void>) => async (): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      rawCount(`${kind} -> ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      rawFailures.push({ kind, why: `failed: ${(err as Error).message}` });
    }
  };
  const side = (async () => {
    await Promise.all(Array.from({ length: SLOW_SENDERS }, (_, i) => guarded('slow sender', () => slowSender(i))()));
    await guarded('flood', flood)();
  })();
  await Promise.all([...Array.from({ length: CONCURRENCY }, worker), side]);
  const took = Date.now() - t0;

  t.comment(`${cases.length} requests + ${SLOW_SENDERS} slow senders + ${FLOOD} flood connections in ${took} ms; slowest answer ${slowest} ms`);
  t.comment(`outcomes:\n${[...stats].sort().map(([k, n]) => `  ${k}: ${n}`).join('\n')}`);
  t.comment(`broken HTTP framing: the slowest was closed by the server after ${badHttpSlowest} ms`);
  t.comment(`raw sockets:\n${[...rawStats].sort().map(([k, n]) => `  ${k}: ${n}`).join('\n')}`);
  const summarize = (fs: Failure[]): string => {
    const byKind = new Map<string, Failure[]>();
    for (const f of fs) byKind.set(f.kind, [...(byKind.get(f.kind) ?? []), f]);
    const top = [...byKind].sort((a, b) => b[1].length - a[1].length);
    return top.slice(0, 8).map(([k, list]) => `${k} x${list.length}: ${list.slice(0, 3).map((f) => f.why).join(' | ')}`).join('\n') +
      (top.length > 8 ? `\n(and ${top.length - 8} more kinds)` : '');
  };
  t.equal(replayed, digest(cases), `the seed replays the ${cases.length} requests`);
  t.equal(failures.length, 0, `every request answered in time with an allowed status, errors as JSON {code, detail}${failures.length ? `\n${summarize(failures)}` : ''}`);
  t.equal(rawFailures.length, 0, `slow senders and the flood: a complete request answered (200 for a valid log, else a JSON 4xx), an incomplete one answered or closed; never a hang${rawFailures.length ? `\n${summarize(rawFailures)}` : ''}`);
  const kinds = new Set(cases.map((c) => c.kind.replace(/\+oversized$/, '')));
  t.same([...kinds].sort(), [...KINDS].sort(), `the generator covered every kind (${kinds.size} of ${KINDS.length})`);
  t.equal(skipEnv, undefined, 'LOGD_FUZZ_SKIP is not set: a run that skips kinds does not pass');

  // --- nothing crashed ----------------------------------------------------------

  t.ok(alive(primary) && logd.proc.exitCode === null, 'the primary is alive');
  t.same(logd.children('http').sort(), workers, 'the same HTTP workers (none crashed and was replaced)');
  t.same(logd.children('persister'), persisters, 'the same persister');
  t.same(childPids(primary, 'logd: http').length, 2, 'still two workers');
  t.notMatch(logd.output(), /child exited/, 'the primary never saw a child exit');

  // --- PostgreSQL holds exactly the accepted logs ---------------------------------

  try {
    await waitDrained(r, 30_000);
  } catch (err) {
    t.fail((err as Error).message);
  }
  const rows = await pg.query<{ device_id: string; log_level: string; message: string; log_data: unknown; n: string }>(
    `SELECT device_id, log_level, message, (array_agg(log_data))[1] AS log_data, count(*) AS n
       FROM logs WHERE starts_with(message, $1) GROUP BY device_id, log_level, message`, [prefix]);
  const dupes = await pg.query<{ message: string }>(
    'SELECT message FROM logs WHERE starts_with(message, $1) GROUP BY message HAVING count(*) > 1', [prefix]);
  const stored = new Map(rows.map((row) => [row.message, row]));
  const expected = new Map(accepted.map((l) => [l.message, l]));
  const missing = [...expected.keys()].filter((m) => !stored.has(m));
  const unexpected = [...stored.keys()].filter((m) => !expected.has(m));
  const mismatched: string[] = [];
  for (const [m, want] of expected) {
    const got = stored.get(m);
    if (!got) continue;
    if (got.device_id !== want.device_id || got.log_level !== want.log_level || canonical(got.log_data) !== canonical(want.log_data)) {
      mismatched.push(`${JSON.stringify(m)}: stored ${JSON.stringify([got.device_id, got.log_level, got.log_data]).slice(0, 300)}, sent ${JSON.stringify([want.device_id, want.log_level, want.log_data]).slice(0, 300)}`);
    }
  }
  const deadLetters = await r.xlen('logs:dead');
  t.comment(`accepted ${expected.size} logs (${accepted.length} with duplicates); stored ${rows.length} distinct; duplicates ${dupes.length}; missing ${missing.length}; unexpected ${unexpected.length}; dead letters ${deadLetters}`);
  t.equal(accepted.length, expected.size, 'every accepted log had its own message');
  t.ok(expected.size > 1000, `${expected.size} valid logs accepted`);
  t.same(missing.slice(0, 5), [], `every accepted log is in PostgreSQL (${missing.length} missing)`);
  t.same(unexpected.slice(0, 5).map((m) => m.slice(0, 120)), [], `nothing else is (${unexpected.length} stored without a 200)`);
  t.same(dupes.slice(0, 5), [], `no log stored twice (${dupes.length})`);
  t.same(mismatched.slice(0, 5), [], `stored fields equal the sent ones (${mismatched.length} differ)`);
  t.equal(deadLetters, 0, 'nothing accepted at the door was refused by PostgreSQL (logs:dead is empty)');
  t.comment(`slow-sender messages: ${slowMessages}`);
});
