/**
 * Reads cannot starve each other, and no number reaches PostgreSQL out of
 * range, against `logd serve`:
 * - a storm of 12 concurrent scans (a rare 200-character `q`) used to take
 *   every PostgreSQL connection of the HTTP workers, so even a one-row device
 *   query answered 503 after seconds; now scans get their own small pool and
 *   device queries, statistics and ingest keep answering promptly;
 * - `limit=1e400`, `Infinity` and a cursor id past bigint answered 500.
 */
import pg from 'pg';
import t from 'tap';
import { loadConfig } from '../src/config';
import { createPartitions } from '../src/storage/partitions';
import { postJson, request, startStack, type Reply } from './helpers/logd';
import { waitFor } from './helpers/services';

/** One HTTP worker: its one scan leaves a core of a 2-core machine to everything else (the limit is per worker). */
const WORKERS = 1;
const SCANS = 12;
/** postgres.search_concurrency (its default) */
const SEARCH_CONCURRENCY = 1;
/**
 * What "promptly" means for a device query, the statistics or an ingest while
 * scans run: far below a scan's duration (which a read waiting for a busy
 * connection would add), with room for a 2-core machine that also runs another
 * test file.
 */
const PROMPT_MS = 2000;
/** The storm's pattern nearly matches at every position of every message, so each row costs ~200 x 1000 comparisons. */
const RARE = `${'a'.repeat(199)}b`;
const ROWS = 10_000;

t.test('reads under a scan storm, and numbers out of range', async (t) => {
  // No cache: every device query and /api/stats below is answered by PostgreSQL.
  const { pg: db, logd } = await startStack(t, {
    workers: WORKERS, env: { LOGD_CACHE_ENABLED: 'false', LOGD_POSTGRES_SEARCH_CONCURRENCY: String(SEARCH_CONCURRENCY) },
  });
  // Straight into `logs`, which is cheap (the rollups /api/stats reads stay empty: it only has to answer);
  // their partitions first, since the rows reach back before this hour (and before midnight, run just after it).
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await createPartitions(client, loadConfig(undefined, {}), [Date.now() - ROWS * 1000, Date.now()]).finally(() => client.end());
  await db.query(`INSERT INTO logs (device_id, log_level, message, log_data, created_at)
    SELECT 'd' || (i % 50), 'INFO', repeat('a', 1000), jsonb_build_object('i', i), now() - i * interval '1 second'
    FROM generate_series(1, ${ROWS}) i`);
  await db.query('ANALYZE logs');
  const get = (p: string): Promise<Reply> => request(`${logd.url}${p}`);

  await t.test('numbers out of range: 422 naming the parameter, never 500', async (t) => {
    const cursor = (id: string): string => Buffer.from(`0001-01-01T00:00:00.000000Z|${id}`).toString('base64url');
    const cases: [string, string][] = [
      ['/api/logs?limit=1e400', 'limit'],
      ['/api/logs?limit=Infinity', 'limit'],
      ['/api/logs?limit=-Infinity', 'limit'],
      ['/api/logs?limit=-1', 'limit'],
      ['/api/logs?limit=NaN', 'limit'],
      ['/api/logs?limit=0x10', 'limit'],
      ['/api/logs?limit=1e2', 'limit'],
      ['/api/logs?limit=5.0', 'limit'],
      ['/api/logs?limit=99999999999999999999999', 'limit'],
      ['/api/logs/d1?limit=1e400', 'limit'],
      ['/api/logs/d1?limit=Infinity', 'limit'],
      ['/api/logs/d1?limit=0x10', 'limit'],
      [`/api/logs?cursor=${cursor('99999999999999999999')}`, 'cursor'],
      [`/api/logs?cursor=${cursor('9223372036854775808')}`, 'cursor'],
      ['/api/logs?since=1e400', 'since'],
      ['/api/logs?until=-1', 'until'],
      ['/api/stats?since=999999999999999', 'since'],
    ];
    const got = await Promise.all(cases.map(async ([p]) => {
      const r = await get(p);
      return [p, r.status, r.body?.code, r.body?.detail?.[0]?.loc];
    }));
    t.same(got, cases.map(([p, name]) => [p, 422, 'LOGD_VALIDATION_FAILED', ['query', name]]));
    // The largest bigint is still a valid cursor id (nothing is older than year 1), and a decimal limit still works.
    const edge = await Promise.all([`/api/logs?limit=3&cursor=${cursor('9223372036854775807')}`, '/api/logs/d1?limit=007'].map(get));
    t.same(edge.map((r) => [r.status, r.body?.total]), [[200, 0], [200, 7]], 'cursor id 2^63 - 1: no logs; limit=007: 7 logs');
  });

  await t.test('a storm of scans leaves device queries, stats and ingest answering', async (t) => {
    /** Searches PostgreSQL is running right now (pg_stat_activity shows the start of src/sql/search-logs.sql). */
    const running = async (): Promise<number> => {
      const [row] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity
        WHERE application_name = 'logd:http' AND backend_type = 'client backend' AND state = 'active' AND query LIKE '-- GET /api/logs: search,%'`);
      return Number(row.n);
    };
    let settled = 0;
    const scans = Array.from({ length: SCANS }, () => get(`/api/logs?q=${RARE}`).finally(() => { settled++; }));
    await waitFor('a scan to run in PostgreSQL', async () => (await running()) > 0, 10_000, 10);

    const probes: { what: string; status: number; ms: number }[] = [];
    const concurrent: number[] = [];
    let rounds = 0;
    while (settled < SCANS) {
      const timed = async (what: string, send: () => Promise<Reply>): Promise<void> => {
        const t0 = performance.now();
        const r = await send();
        probes.push({ what, status: r.status, ms: Math.round(performance.now() - t0) });
      };
      // Counted before the probes: the search by device runs the same statement.
      concurrent.push(await running());
      await Promise.all([
        timed('search by device', () => get('/api/logs?device_id=d1&limit=1')),
        timed('device query', () => get('/api/logs/d1')),
        timed('stats', () => get('/api/stats')),
        timed('ingest', () => postJson(`${logd.url}/api/log`, { device_id: 'storm', log_level: 'INFO', message: `round ${rounds}` })),
      ]);
      rounds++;
    }
    const answers = await Promise.all(scans);

    const during = concurrent.filter((n) => n > 0).length;
    t.ok(during >= 3, `${during} of ${rounds} probe rounds ran while scans were running`);
    t.ok(Math.max(...concurrent) <= WORKERS * SEARCH_CONCURRENCY,
      `at most ${WORKERS * SEARCH_CONCURRENCY} scans ran at once in PostgreSQL (seen: ${concurrent.join(' ')})`);
    const late = probes.filter((p) => p.status !== 200 || p.ms >= PROMPT_MS);
    const slowest = (what: string): number => Math.max(...probes.filter((p) => p.what === what).map((p) => p.ms));
    t.same(late, [], `all ${probes.length} probes answered 200 within ${PROMPT_MS} ms (slowest, ms: ${
      ['search by device', 'device query', 'stats', 'ingest'].map((w) => `${w} ${slowest(w)}`).join(', ')})`);

    const outcome = (r: Reply): string => (r.status === 200 ? 'ok' : `${r.status} ${r.body?.code} retry-after=${r.headers.get('retry-after')}`);
    const outcomes = answers.map(outcome);
    const allowed = ['ok', '503 LOGD_BUSY retry-after=1', '503 LOGD_QUERY_TIMEOUT retry-after=1'];
    t.same(outcomes.filter((o) => !allowed.includes(o)), [], 'each scan is answered 200, 503 LOGD_BUSY or 503 LOGD_QUERY_TIMEOUT, with Retry-After');
    const busy = answers.filter((r) => r.body?.code === 'LOGD_BUSY');
    t.ok(busy.length >= SCANS - 2 * WORKERS * SEARCH_CONCURRENCY, `the scans over the limit were refused: ${outcomes.join(', ')}`);
    t.ok(busy.every((r) => /postgres\.search_concurrency/.test(r.body.detail)), `LOGD_BUSY names the limit: ${busy[0]?.body.detail}`);
  });
});
