/**
 * GET /api/histogram against COUNT(*) over `logs`: logs posted over the last
 * ten hours, through the persister's rollups; ranges starting and ending
 * inside hours (the partial hours counted from the rows), within one hour,
 * across midnight-aligned steps, per level and for one device; and 422 for
 * bad ranges and steps.
 */
import t from 'tap';
import { postJson, request, startStack, waitRows } from './helpers/logd';
import { prng } from './helpers/faults';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const HOUR = 3_600_000;

t.test('histogram', async (t) => {
  const { pg, logd } = await startStack(t);
  const now = Date.now();
  const rand = prng(5);
  const logs = Array.from({ length: 3000 }, (_, i) => ({
    device_id: `h-${i % 3}`,
    log_level: LEVELS[Math.floor(rand() * LEVELS.length)],
    message: `m${i}`,
    timestamp: new Date(now - 10 * HOUR + Math.floor(rand() * 10 * HOUR)).toISOString(),
  }));
  for (let i = 0; i < logs.length; i += 500) t.equal((await postJson(`${logd.url}/api/logs/batch`, { logs: logs.slice(i, i + 500) })).status, 200);
  await waitRows(pg, logs.length);

  type Answer = { since: string; until: string; step: string; device_id?: string; buckets: { start: string; total: number; levels?: Record<string, number> }[] };
  const truth = async (since: number, until: number, step: number, device?: string): Promise<Map<string, { total: number; levels: Record<string, number> }>> => {
    const rows = await pg.query<{ b: string; level: string; n: string }>(
      `SELECT (floor(extract(epoch FROM created_at) / $3) * $3)::bigint::text AS b, log_level AS level, count(*)::text AS n
       FROM logs WHERE created_at >= to_timestamp($1::float8 / 1000) AND created_at < to_timestamp($2::float8 / 1000) AND ($4::text IS NULL OR device_id = $4)
       GROUP BY 1, 2`, [since, until, step, device ?? null]);
    const out = new Map<string, { total: number; levels: Record<string, number> }>();
    for (const r of rows) {
      const key = new Date(Number(r.b) * 1000).toISOString();
      const e = out.get(key) ?? { total: 0, levels: Object.fromEntries(LEVELS.map((l) => [l, 0])) };
      e.total += Number(r.n);
      e.levels[r.level] += Number(r.n);
      out.set(key, e);
    }
    return out;
  };
  const check = async (name: string, since: number, until: number, step: string, seconds: number, device?: string): Promise<void> => {
    const params = new URLSearchParams({ since: new Date(since).toISOString(), until: new Date(until).toISOString(), step, ...(device ? { device_id: device } : {}) });
    const r = await request(`${logd.url}/api/histogram?${params}`);
    t.equal(r.status, 200, `${name}: ${r.text.slice(0, 200)}`);
    const body = r.body as Answer;
    const expected = await truth(since, until, seconds, device);
    const first = Math.floor(since / (seconds * 1000)) * seconds * 1000;
    t.equal(body.buckets[0].start, new Date(first).toISOString(), `${name}: the first bucket holds since`);
    t.equal(body.buckets.length, Math.ceil(until / (seconds * 1000)) - Math.floor(since / (seconds * 1000)), `${name}: every bucket, empty ones too`);
    let sum = 0;
    for (const b of body.buckets) {
      const e = expected.get(b.start);
      t.equal(b.total, e?.total ?? 0, `${name}: ${b.start} total`);
      if (device) t.notOk(b.levels, `${name}: no levels for one device`);
      else t.same(b.levels, e?.levels ?? Object.fromEntries(LEVELS.map((l) => [l, 0])), `${name}: ${b.start} per level`);
      sum += b.total;
    }
    t.ok(sum > 0, `${name}: the range holds logs (${sum})`);
  };
  const odd = (ms: number): number => ms + 123_457;
  await check('inside hours at both ends, hourly', odd(now - 9.5 * HOUR), odd(now - 1.2 * HOUR), '1h', 3600);
  await check('inside hours at both ends, 2 hours', odd(now - 9.5 * HOUR), odd(now - 1.2 * HOUR), '2h', 7200);
  await check('whole hours', Math.floor(now / HOUR) * HOUR - 8 * HOUR, Math.floor(now / HOUR) * HOUR - 2 * HOUR, '1h', 3600);
  // each end is taken to its nearest hour: rows subtracted from a whole hour (x:10 ... y:50), or added to the whole hours (x:50 ... y:10)
  const hour = (ago: number): number => Math.floor(now / HOUR) * HOUR - ago * HOUR;
  await check('ends near the hour before them', hour(8) + 10 * 60_000 + 7, hour(2) + 50 * 60_000 + 7, '1h', 3600);
  await check('ends near the hour after them', hour(8) + 50 * 60_000 + 7, hour(2) + 10 * 60_000 + 7, '3h', 10_800);
  await check('ends near the hour before them, one device', hour(8) + 10 * 60_000, hour(2) + 50 * 60_000, '2h', 7200, 'h-2');
  await check('within one hour', odd(now - 5 * HOUR), odd(now - 4.6 * HOUR), '1h', 3600);
  await check('one day bucket', now - 10 * HOUR, now, '1d', 86_400);
  await check('one device', odd(now - 9.5 * HOUR), odd(now - 0.7 * HOUR), '3h', 10_800, 'h-1');

  const dflt = await request(`${logd.url}/api/histogram?since=${encodeURIComponent(new Date(now - 10 * HOUR).toISOString())}`);
  t.equal(dflt.status, 200);
  t.equal((dflt.body as Answer).step, '1h', 'default step: the smallest with at most 200 buckets');
  t.equal((dflt.body as Answer).buckets.reduce((s, b) => s + b.total, 0), logs.length, 'until defaults to now: every log');

  for (const [query, loc, type] of [
    ['', ['query', 'since'], 'missing'],
    ['since=2026-12-01T00:00:00Z&until=2026-11-30T00:00:00Z', ['query', 'until'], 'range_empty'],
    ['since=2026-12-01T00:00:00Z&step=5m', ['query', 'step'], 'enum'],
    ['since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z&step=1h', ['query', 'step'], 'too_many_buckets'],
    ['since=yesterday', ['query', 'since'], 'datetime_parsing'],
  ] as const) {
    const r = await request(`${logd.url}/api/histogram?${query}`);
    t.equal(r.status, 422, query);
    t.same(r.body.detail[0].loc, loc, `${query}: names ${loc.join('.')}`);
    t.equal(r.body.detail[0].type, type);
  }
});
