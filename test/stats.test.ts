/**
 * GET /api/stats and the rollups behind it: equal to COUNT(*) over `logs`
 * after mixed ingest (devices, levels, timestamps, batch sizes, concurrent
 * clients), after frames without a summary, a refused frame in a batch, a
 * replayed dead letter, and a redelivery of a committed frame (no double
 * counting); and ?since= windows of hours and of days exact to the microsecond.
 */
import Redis from 'ioredis';
import pg from 'pg';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config';
import { countParams } from '../src/persist/summary';
import { parseSummary } from '../src/queue/frame';
import { Queue } from '../src/queue/stream';
import { SQL } from '../src/sql';
import { prng } from './helpers/faults';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { postJson, request, startLogd, waitRows, type Logd, type Reply } from './helpers/logd';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const DAY = Date.UTC(2026, 2, 1);
/** The epoch hour of a time on DAY (the hour field of a frame summary). */
const hour = (h: number): number => DAY / 3_600_000 + h;

/** The time of a log in one of the forms the door accepts, spread over six hours (or none: receive time). */
function timestamp(rand: () => number): string | number | undefined {
  const at = DAY + Math.floor(rand() * 6 * 3_600_000);
  const iso = new Date(at).toISOString();
  switch (Math.floor(rand() * 5)) {
    case 0: return iso;
    case 1: return at;
    case 2: return `${iso.slice(0, 19)}.${String(Math.floor(rand() * 1e6)).padStart(6, '0')}`; // no offset: UTC
    case 3: return new Date(at + 19_800_000).toISOString().replace('Z', '+05:30');
    default: return undefined;
  }
}

t.test('statistics', async (t) => {
  const redis = await startRedis();
  const db = await startPostgres();
  let logd: Logd = await startLogd({ redis, pg: db, env: { LOGD_QUEUE_CLAIM_IDLE_MS: '300' } });
  const client = new Redis(redis.port, redis.host);
  t.teardown(async () => {
    client.disconnect();
    await logd.stop();
    await cleanupAll();
  });
  const get = (p: string): Promise<Reply> => request(`${logd.url}${p}`);
  const count = async (where = 'TRUE'): Promise<number> => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM logs WHERE ${where}`))[0].n);

  /** Every rollup table equals its GROUP BY over `logs`. */
  const rollupsMatch = async (t: Test, when: string): Promise<void> => {
    const pairs: [string, string, string][] = [
      ['by level', 'SELECT log_level AS k, n::int FROM logd_counts_by_level ORDER BY 1', 'SELECT log_level AS k, count(*)::int AS n FROM logs GROUP BY 1 ORDER BY 1'],
      ['by device', 'SELECT device_id AS k, n::int FROM logd_counts_by_device ORDER BY 1', 'SELECT device_id AS k, count(*)::int AS n FROM logs GROUP BY 1 ORDER BY 1'],
      ['hourly by level', "SELECT bucket || ' ' || log_level AS k, n::int FROM logd_hourly_by_level ORDER BY 1",
        "SELECT date_trunc('hour', created_at, 'UTC') || ' ' || log_level AS k, count(*)::int AS n FROM logs GROUP BY 1 ORDER BY 1"],
      ['hourly by device', "SELECT bucket || ' ' || device_id AS k, n::int FROM logd_hourly_by_device ORDER BY 1",
        "SELECT date_trunc('hour', created_at, 'UTC') || ' ' || device_id AS k, count(*)::int AS n FROM logs GROUP BY 1 ORDER BY 1"],
      ['daily by level', "SELECT day || ' ' || log_level AS k, n::int FROM logd_daily_by_level ORDER BY 1",
        "SELECT date_trunc('day', created_at, 'UTC') || ' ' || log_level AS k, count(*)::int AS n FROM logs GROUP BY 1 ORDER BY 1"],
      ['daily by device', "SELECT day || ' ' || device_id AS k, n::int FROM logd_daily_by_device ORDER BY 1",
        "SELECT date_trunc('day', created_at, 'UTC') || ' ' || device_id AS k, count(*)::int AS n FROM logs GROUP BY 1 ORDER BY 1"],
    ];
    for (const [name, rollup, truth] of pairs) t.same(await db.query(rollup), await db.query(truth), `${when}: rollup ${name} = GROUP BY over logs`);
  };

  /** /api/stats (with `since` or not) equals COUNT(*) over `logs`; polls while the last batch's invalidation lands. */
  const statsMatch = async (t: Test, since?: string): Promise<void> => {
    const where = since === undefined ? 'TRUE' : 'created_at >= $1';
    const params = since === undefined ? [] : [since];
    const total = Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM logs WHERE ${where}`, params))[0].n);
    const p = since === undefined ? '/api/stats' : `/api/stats?since=${encodeURIComponent(since)}`;
    const r = await waitFor(`${p} to count ${total} logs`, async () => {
      const a = await get(p);
      return a.body?.total_logs === total ? a : undefined;
    }, 10_000);
    const levels = Object.fromEntries(LEVELS.map((l) => [l, 0]));
    for (const row of await db.query<{ log_level: string; n: string }>(`SELECT log_level, count(*) AS n FROM logs WHERE ${where} GROUP BY 1`, params)) levels[row.log_level] = Number(row.n);
    const top = (await db.query<{ device_id: string; n: string }>(
      `SELECT device_id, count(*) AS n FROM logs WHERE ${where} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10`, params)).map((row) => ({ device_id: row.device_id, count: Number(row.n) }));
    t.same(r.body.logs_by_level, levels, `${p}: logs_by_level`);
    t.same(r.body.top_devices, top, `${p}: top_devices`);
    t.same(r.body.recent_devices, top.map((d) => d.device_id), `${p}: recent_devices`);
  };

  await t.test('mixed ingest: stats = COUNT(*)', async (t) => {
    const rand = prng(20260301);
    let sent = 0;
    const client = async (c: number): Promise<void> => {
      for (let i = 0; i < 12; i++) {
        const size = i % 4 === 0 ? 1 : 1 + Math.floor(rand() * (i % 3 === 0 ? 400 : 40));
        const logs = Array.from({ length: size }, () => {
          // device k gets ~1/(k+1) of the logs: a real top 10, with ties at the tail.
          const device = `stat-${Math.floor(1 / (rand() + 1 / 14))}`;
          const ts = timestamp(rand);
          return { device_id: device, log_level: LEVELS[Math.floor(rand() * rand() * 5)], message: `m ${c}-${i}`, ...(ts === undefined ? {} : { timestamp: ts }) };
        });
        const r = size === 1 ? await postJson(`${logd.url}/api/log`, logs[0]) : await postJson(`${logd.url}/api/logs/batch`, { logs });
        t.equal(r.status, 200, r.text.slice(0, 200));
        sent += size;
      }
    };
    await Promise.all([0, 1, 2, 3].map(client));
    await waitRows(db, sent);
    t.equal(await count(), sent, `${sent} logs stored`);
    await rollupsMatch(t, 'after mixed ingest');
    await statsMatch(t);
    const [mid] = await db.query<{ at: string }>("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at FROM logs ORDER BY created_at OFFSET 700 LIMIT 1");
    for (const since of ['2026-03-01T02:00:00Z', '2026-03-01T03:27:41.123456Z', mid.at, '2026-03-01T05:59:59.999999+05:30', '1970-01-01T00:00:00Z', '2100-01-01T00:00:00Z', new Date(Date.now() - 60_000).toISOString()]) {
      await statsMatch(t, since);
    }
    const r = await get(`/api/stats?since=${encodeURIComponent('2026-03-01T05:59:59.999999+05:30')}`);
    t.equal(r.body.since, '2026-03-01T05:59:59.999999+05:30', 'the answer names its window');
  });

  await t.test('windows over several days: stats?since= = COUNT(*)', async (t) => {
    const rand = prng(20260224);
    const now = Date.now();
    const midnight = Math.floor(now / 86_400_000) * 86_400_000;
    // The eight days before DAY and the last four days (windows of a few days
    // read their days forward; windows of most days subtract the days before them
    // from the all-time counts), and logs on the edges the windows start at.
    const edges = ['2026-02-20T00:00:00Z', '2026-02-23T00:00:00Z', '2026-02-22T23:59:59.999999Z', '2026-02-24T13:17:42.123456Z',
      '2026-02-24T13:17:42.123455Z', '2026-02-26T04:00:00Z', '2026-02-27T21:50:00Z', new Date(midnight - 2 * 86_400_000).toISOString()];
    const spread = (from: number, days: number): string => new Date(from + Math.floor(rand() * days * 86_400_000)).toISOString();
    const logs = [
      ...edges.map((at, i) => ({ device_id: `edge-${i % 3}`, log_level: LEVELS[i % 5], message: `edge ${at}`, timestamp: at })),
      ...Array.from({ length: 992 }, (_, i) => ({
        device_id: `days-${Math.floor(1 / (rand() + 1 / 14))}`,
        log_level: LEVELS[Math.floor(rand() * rand() * 5)],
        message: `d ${i}`,
        timestamp: i % 2 ? spread(Date.UTC(2026, 1, 20), 8) : spread(now - 4 * 86_400_000, 4),
      })),
    ];
    const r = await postJson(`${logd.url}/api/logs/batch`, { logs });
    t.equal(r.status, 200, r.text.slice(0, 200));
    await waitRows(db, logs.length, "device_id LIKE 'days-%' OR device_id LIKE 'edge-%'");
    await rollupsMatch(t, 'after logs over several days');
    // Inside a day near its start and near its end, inside an hour near its start and near its end,
    // on a log and a microsecond after it, at midnight, on an hour, before the first log, in the future.
    for (const since of ['2026-02-24T13:17:42.123456Z', '2026-02-24T13:17:42.123457Z', '2026-02-21T02:10:00Z', '2026-02-27T21:50:00Z',
      '2026-02-25T18:45:30.5Z', '2026-02-23T00:00:00Z', '2026-02-26T04:00:00Z', '2026-02-20T00:00:00Z',
      new Date(now - 2.5 * 86_400_000 + 1234).toISOString(), new Date(now - 3 * 86_400_000 - 10 * 60_000).toISOString(),
      new Date(midnight - 2 * 86_400_000).toISOString(), new Date(midnight - 86_400_000 + 3 * 3_600_000).toISOString(),
      '1970-01-01T00:00:00Z', '2100-01-01T00:00:00Z']) {
      await statsMatch(t, since);
    }
    // One log 300 days ahead: windows starting before the middle of the days
    // stored now subtract the days before them from the all-time counts; the
    // one from 3 days ahead holds that log alone (every other device counts 0 there).
    const ahead = new Date(now + 300 * 86_400_000).toISOString();
    t.equal((await postJson(`${logd.url}/api/log`, { device_id: 'ahead', log_level: 'INFO', message: 'ahead', timestamp: ahead })).status, 200);
    await waitRows(db, 1, "device_id = 'ahead'");
    for (const since of [new Date(now + 3 * 86_400_000 + 1234).toISOString(), new Date(now - 2.5 * 86_400_000).toISOString()]) await statsMatch(t, since);
  });

  await t.test('hand-written frames, a refused frame in a batch, a replayed dead letter', async (t) => {
    const queue = new Queue(client, loadConfig(undefined, {}));
    // One MULTI: the persister reads the three frames as one batch.
    const summary = JSON.stringify([['hand-c', 'ERROR', hour(0), 1]]);
    const [[, noSummary], [, poison], [, badSummary]] = (await client.multi()
      .xadd('logs:stream', '*', 'v', '1', 'n', '4', 'r',
        'hand-a\tINFO\tno summary\t{}\t2026-03-01T08:59:59.999999+05:30\n'
        + 'hand\\tb\tWARNING\tescaped tab in device\t{}\t2026-03-01T03:00:00Z\n'
        + 'hand-a\tINFO\tPostgreSQL reads this time\t{}\t2026-03-01 04:00:00 UTC\n'
        + 'hand-a\tDEBUG\toctal escape \\101\t{}\t2026-03-01T04:00:00.5-02\n')
      .xadd('logs:stream', '*', 'v', '1', 'n', '1', 'r', 'hand-c\tERROR\tpoison\tnot-json\t2026-03-01T00:00:00Z\n', 's', summary)
      .xadd('logs:stream', '*', 'v', '1', 'n', '2', 'r',
        'hand-d\tINFO\tsummary says 5\t{}\t2026-03-01T01:00:00Z\nhand-d\tINFO\tbut 2 rows\t{}\t2026-03-01T01:00:00Z\n',
        's', JSON.stringify([['hand-d', 'INFO', hour(1), 5]]))
      .exec())! as [unknown, string][];
    t.ok(noSummary && poison && badSummary);
    await waitRows(db, 6, "device_id LIKE 'hand%'");
    const [dead] = await waitFor('the poison in logs:dead', async () => {
      const entries = await client.xrange('logs:dead', '-', '+');
      return entries.length ? entries : undefined;
    });
    const fields = dead[1];
    t.equal(fields[fields.indexOf('entry') + 1], poison);
    t.equal(fields[fields.indexOf('s') + 1], summary, 'the dead letter keeps the summary');
    await rollupsMatch(t, 'after hand-written frames and a refused one');
    t.same((await db.query("SELECT n::int FROM logd_counts_by_device WHERE device_id = E'hand\\tb'")), [{ n: 1 }], 'device unescaped as COPY reads it');

    // The operator fixes the entry and replays it (logd stopped, to see the frame it re-queues).
    await logd.stop();
    await client.xdel('logs:dead', dead[0]);
    const fixed = await client.xadd('logs:dead', '*', 'entry', poison, 'error', 'x', 'failed_at', '0', 'v', '1', 'n', '1',
      'r', 'hand-c\tERROR\tfixed\t{}\t2026-03-01T00:00:00Z\n', 's', summary);
    const requeued = await queue.replay(fixed!);
    const [[, again]] = await client.xrange('logs:stream', requeued, requeued);
    t.equal(again[again.indexOf('s') + 1], summary, 'the replayed frame keeps the summary');
    logd = await startLogd({ redis, pg: db, env: { LOGD_QUEUE_CLAIM_IDLE_MS: '300' } });
    await waitRows(db, 1, "message = 'fixed'");
    await rollupsMatch(t, 'after the replay');
  });

  await t.test('a committed frame delivered again is not counted twice', async (t) => {
    // A cached, empty answer for the device, before its logs are committed.
    await waitFor('an answer from the cache', async () => (await get('/api/logs/ghost-dev')).body?.source === 'cache');
    await logd.stop();
    // A persister ("ghost") takes a frame, commits it with logd's own statements, and dies before XACK.
    const rows = 'ghost-dev\tINFO\tg1\t{}\t2026-03-01T01:00:00Z\nghost-dev\tERROR\tg2\t{}\t2026-03-01T01:30:00Z\nghost-dev\tINFO\tg3\t{}\t2026-03-01T02:00:00Z\n';
    const s = JSON.stringify([['ghost-dev', 'INFO', hour(1), 1], ['ghost-dev', 'ERROR', hour(1), 1], ['ghost-dev', 'INFO', hour(2), 1]]);
    const id = (await client.xadd('logs:stream', '*', 'v', '1', 'n', '3', 'r', rows, 's', s))!;
    const taken = await client.call('XREADGROUP', 'GROUP', 'log_workers', 'ghost', 'COUNT', 10, 'STREAMS', 'logs:stream', '>') as [string, [string, string[]][]][];
    t.same(taken[0][1].map(([entry]) => entry), [id], 'the ghost holds the frame');
    const ghost = new pg.Client({ connectionString: db.url });
    await ghost.connect();
    const [ms, seq] = id.split('-');
    await ghost.query('BEGIN');
    await ghost.query(SQL.claimEntries, [[0], [ms], [seq]]);
    await pipeline(Readable.from([rows]), ghost.query(copyFrom('COPY logs (device_id, log_level, message, log_data, created_at) FROM STDIN')));
    await ghost.query(SQL.addCounts, countParams(parseSummary(s, 3)!));
    await ghost.query('COMMIT');
    await ghost.end();
    await rollupsMatch(t, 'after the ghost committed');

    logd = await startLogd({ redis, pg: db, env: { LOGD_QUEUE_CLAIM_IDLE_MS: '300' } });
    await waitFor('the ghost\'s frame acknowledged', async () => Number((await client.xpending('logs:stream', 'log_workers'))[0]) === 0);
    t.equal(await count("device_id = 'ghost-dev'"), 3, 'stored once');
    await rollupsMatch(t, 'after the redelivery');
    await statsMatch(t);
    const fresh = await waitFor('the committed logs in the device query', async () => {
      const r = await get('/api/logs/ghost-dev');
      return r.body?.total === 3 ? r : undefined;
    }, 5000);
    t.same(fresh.body.data.map((l: { message: string }) => l.message), ['g3', 'g2', 'g1'], 'the redelivery invalidated the cached answer');
  });
});
