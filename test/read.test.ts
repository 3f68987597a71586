/**
 * The read path end to end: GET /api/logs/{device_id}, GET /api/logs
 * (search, keyset pages), the cache (freshness, single flight, failures),
 * 422s naming the parameter, and the plans of the read queries.
 */
import Redis from 'ioredis';
import pg from 'pg';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config';
import { SQL } from '../src/sql';
import { createPartitions } from '../src/storage/partitions';
import { cacheKeys } from '../src/cache/versions';
import { cleanupAll, startPostgres, startRedis, waitFor } from './helpers/services';
import { postJson, request, ROOT, startLogd, waitRows, type Reply } from './helpers/logd';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const DEVICES = ['dev-a', 'dev-b', 'dev-c', 'dev with space/slash'];
const BASE = Date.UTC(2026, 0, 10, 8, 0, 0);

/** 160 logs over ~3 hours; every tenth pair shares its created_at (ties are broken by id). */
function dataset(): Record<string, unknown>[] {
  return Array.from({ length: 160 }, (_, i) => {
    const at = BASE + (i - (i % 10 === 1 ? 1 : 0)) * 61_000 + 123;
    // Every third log gives its time with a +02:00 offset (answers are UTC anyway).
    const timestamp = i % 3 === 0 ? new Date(at + 2 * 3_600_000).toISOString().replace('Z', '456+02:00') : new Date(at).toISOString().replace('Z', '456Z');
    return {
      device_id: DEVICES[i % 4],
      log_level: LEVELS[(i * 7) % 5],
      message: i % 17 === 0 ? `upload 100% done (${i})` : i % 23 === 0 ? `path C:\\temp\\${i}` : i % 13 === 0 ? `nodeX1 ${i}`
        : i % 5 === 0 ? `Disk FULL on node_${i}` : `event ${i}`,
      log_data: { i, zone: i % 2 ? 'eu' : 'us', tags: i % 4 === 0 ? ['x', 'y'] : ['y'] },
      timestamp,
    };
  });
}

const without = (body: Record<string, unknown>, key: string): Record<string, unknown> => {
  const { [key]: _, ...rest } = body;
  return rest;
};

t.test('read path', async (t) => {
  const redis = await startRedis({ extraArgs: ['--enable-debug-command', 'local'] });
  const db = await startPostgres();
  const logd = await startLogd({ redis, pg: db });
  const client = new Redis(redis.port, redis.host, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  t.teardown(async () => {
    client.disconnect();
    await logd.stop();
    await cleanupAll();
  });
  const get = (p: string): Promise<Reply> => request(`${logd.url}${p}`);
  const ids = (r: Reply): number[] => r.body.data.map((l: { id: number }) => l.id);
  /** Ground truth: ids of `logs` in the API's order. */
  const truth = async (where = 'TRUE', params: unknown[] = []): Promise<number[]> =>
    (await db.query<{ id: string }>(`SELECT id FROM logs WHERE ${where} ORDER BY created_at DESC, id DESC`, params)).map((r) => Number(r.id));
  /** Polls until the answer comes from the cache. */
  const cached = (p: string): Promise<Reply> =>
    waitFor(`${p} answered from the cache`, async () => {
      const r = await get(p);
      return r.body?.source === 'cache' ? r : undefined;
    }, 10_000);

  const posted = dataset();
  for (let i = 0; i < posted.length; i += 40) {
    const r = await postJson(`${logd.url}/api/logs/batch`, { logs: posted.slice(i, i + 40) });
    t.equal(r.status, 200, r.text);
  }
  await waitRows(db, posted.length);

  await t.test("a device's newest logs, as the reference answered them", async (t) => {
    const r = await get('/api/logs/dev-a?limit=5');
    t.equal(r.status, 200, r.text);
    t.equal(r.headers.get('content-type'), 'application/json');
    t.same(Object.keys(r.body).sort(), ['data', 'source', 'total']);
    t.equal(r.body.total, 5, 'total = number of logs returned');
    t.same(ids(r), (await truth("device_id = 'dev-a'")).slice(0, 5), 'newest first, ties by id');
    const [row] = await db.query<Record<string, any>>('SELECT * FROM logs WHERE id = $1', [r.body.data[0].id]);
    const first = r.body.data[0];
    t.same(Object.keys(first), ['id', 'device_id', 'log_level', 'message', 'log_data', 'created_at']);
    t.same([first.device_id, first.log_level, first.message, first.log_data], [row.device_id, row.log_level, row.message, row.log_data]);
    t.match(first.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'ISO-8601 UTC, microseconds');
    t.equal(Date.parse(first.created_at), new Date(row.created_at).getTime());
    const sent = posted.find((l) => (l.log_data as { i: number }).i === first.log_data.i)!;
    t.equal((sent.timestamp as string).slice(-9), '456+02:00', 'the newest was posted with an offset');
    t.equal(first.created_at, new Date(Date.parse(sent.timestamp as string)).toISOString().replace('Z', '456Z'), 'shown in UTC, microseconds kept');

    const all = await get('/api/logs/dev-a');
    t.equal(all.body.total, 40, 'default limit 100: all 40');
    const encoded = await get(`/api/logs/${encodeURIComponent('dev with space/slash')}?limit=1000`);
    t.same(ids(encoded), await truth('device_id = $1', ['dev with space/slash']), 'a percent-encoded device_id');
    const none = await get('/api/logs/nobody');
    t.same(without(none.body, 'source'), { total: 0, data: [] });
  });

  await t.test('cached and uncached answers are identical', async (t) => {
    for (const p of ['/api/logs/dev-b?limit=17', '/api/stats', '/api/stats?since=2026-01-10T09:30:00.5Z']) {
      const first = await get(p);
      t.equal(first.body.source, 'database', `${p}: first from PostgreSQL`);
      const again = await cached(p);
      t.same(without(again.body, 'source'), without(first.body, 'source'), `${p}: same answer from the cache`);
    }
  });

  await t.test('a persisted log is visible at once, also when the previous answer was cached', async (t) => {
    const before = await cached('/api/logs/dev-c?limit=3');
    const stats = await cached('/api/stats');
    const r = await postJson(`${logd.url}/api/log`, { device_id: 'dev-c', log_level: 'CRITICAL', message: 'fresh' });
    t.equal(r.status, 200);
    await waitRows(db, 1, "message = 'fresh'");
    const committed = Date.now();
    const after = await waitFor('the new log in the device query', async () => {
      const a = await get('/api/logs/dev-c?limit=3');
      return a.body.data[0]?.message === 'fresh' ? a : undefined;
    }, 5000);
    // The persister invalidates right after COMMIT (at most one Redis call later); the cached answer lives 300 s.
    t.ok(Date.now() - committed < 1000, `visible ${Date.now() - committed} ms after its COMMIT was seen`);
    t.same(ids(after).slice(1), ids(before).slice(0, 2), 'the rest shifted by one');
    const s = await waitFor('the new log in the stats', async () => {
      const a = await get('/api/stats');
      return a.body.total_logs === stats.body.total_logs + 1 ? a : undefined;
    }, 5000);
    t.equal(s.body.logs_by_level.CRITICAL, stats.body.logs_by_level.CRITICAL + 1);
  });

  await t.test('search: every filter, against SQL', async (t) => {
    const cases: [string, string, unknown[]][] = [
      ['', 'TRUE', []],
      ['device_id=dev-b', "device_id = 'dev-b'", []],
      ['level=ERROR', "log_level = 'ERROR'", []],
      ['level=ERROR&level=CRITICAL', "log_level IN ('ERROR', 'CRITICAL')", []],
      ['level=ERROR,%20CRITICAL', "log_level IN ('ERROR', 'CRITICAL')", []],
      ['since=2026-01-10T09:00:00.123456Z', "created_at >= '2026-01-10T09:00:00.123456Z'", []],
      ['since=2026-01-10T10:00:00.123456%2B01:00', "created_at >= '2026-01-10T09:00:00.123456Z'", []],
      [`since=${Date.UTC(2026, 0, 10, 9)}`, "created_at >= '2026-01-10T09:00:00Z'", []],
      ['until=2026-01-10T09:00:00.123456Z', "created_at < '2026-01-10T09:00:00.123456Z'", []],
      ['since=2026-01-10T08:30:00Z&until=2026-01-10T09:30:00Z', "created_at >= '2026-01-10T08:30:00Z' AND created_at < '2026-01-10T09:30:00Z'", []],
      ['q=disk%20full', "message ILIKE '%disk%' AND message ILIKE '%full%'", []],
      ['q=full%20%20disk', "message ILIKE '%full%' AND message ILIKE '%disk%'", []],
      ['q=%22disk%20full%22', "message ILIKE '%disk full%'", []],
      ['q=%22upload%20100%25%22%20done', "message ILIKE '%upload 100\\%%' AND message ILIKE '%done%'", []],
      ['q=%22DISK%20FULL%20on', "message ILIKE '%disk full on%'", []],
      ['q=disk%20nobody', 'FALSE', []],
      ['q=%22full%20disk%22%20nobody', 'FALSE', []],
      ['q=100%25', "strpos(message, '100%') > 0", []],
      ['q=node_1', "strpos(message, 'node_1') > 0", []],
      ['q=%5C', "strpos(message, '\\') > 0", []],
      [`data=${encodeURIComponent('{"zone":"eu"}')}`, `log_data @> '{"zone":"eu"}'`, []],
      [`data=${encodeURIComponent('{"tags":["x"]}')}`, `log_data @> '{"tags":["x"]}'`, []],
      [`data=${encodeURIComponent('{"i":5}')}`, `log_data @> '{"i":5}'`, []],
      [`device_id=dev-a&level=INFO,WARNING,ERROR&since=2026-01-10T08:20:00Z&q=E&data=${encodeURIComponent('{"zone":"us"}')}`,
        "device_id = 'dev-a' AND log_level IN ('INFO','WARNING','ERROR') AND created_at >= '2026-01-10T08:20:00Z' AND message ILIKE '%e%' AND log_data @> '{\"zone\":\"us\"}'", []],
    ];
    for (const [query, where] of cases) {
      const r = await get(`/api/logs?limit=1000&${query}`);
      t.equal(r.status, 200, `${query}: ${r.text.slice(0, 200)}`);
      const expected = await truth(where);
      t.ok(expected.length > 0 || query.includes('nobody'), `${query}: the case selects something`);
      t.same(ids(r), expected, `${query || 'no filter'}: ${expected.length} logs`);
      t.equal(r.body.total, expected.length);
      t.equal(r.body.next_cursor, null, 'one page: no cursor');
    }
  });

  await t.test('keyset pages: no duplicates, no gaps, stable while logs arrive', async (t) => {
    let late = 0;
    for (const [query, where] of [['', 'TRUE'], ['level=INFO,DEBUG', "log_level IN ('INFO','DEBUG')"], ['device_id=dev-b', "device_id = 'dev-b'"]]) {
      const expected = await truth(where);
      const seen: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const r: Reply = await get(`/api/logs?limit=7&${query}${cursor ? `&cursor=${cursor}` : ''}`);
        t.equal(r.status, 200, r.text);
        t.ok(r.body.data.length >= 1 && r.body.data.length <= 7, 'a page holds 1..limit logs');
        seen.push(...ids(r));
        cursor = r.body.next_cursor;
        if (pages++ === 0) {
          // Newer logs arrive after the first page: they belong before it, never to a later page.
          const more = await postJson(`${logd.url}/api/logs/batch`, { logs: Array.from({ length: 5 }, (_, i) => ({ device_id: 'dev-b', log_level: 'INFO', message: `late ${i}` })) });
          t.equal(more.status, 200);
          late += 5;
        }
      } while (cursor);
      await waitRows(db, late, "message LIKE 'late %'"); // before the next case's ground truth
      t.same(seen, expected, `${query || 'no filter'}: ${pages} pages = the ${expected.length} logs, in order`);
      t.equal(new Set(seen).size, seen.length, 'no duplicates');
    }
    const exact = await truth('TRUE');
    const fit = await get(`/api/logs?limit=${exact.length}`);
    t.equal(fit.body.next_cursor, null, 'a page that ends exactly at the last log has no next cursor');
  });

  await t.test('bad parameters: 422 naming the parameter', async (t) => {
    const cases: [string, (string | number)[], string?][] = [
      ['/api/logs?limit=0', ['query', 'limit'], 'greater_than_equal'],
      ['/api/logs?limit=1001', ['query', 'limit'], 'less_than_equal'],
      ['/api/logs?limit=abc', ['query', 'limit']],
      ['/api/logs?limit=2.5', ['query', 'limit']],
      ['/api/logs?level=LOUD', ['query', 'level', 0], 'enum'],
      ['/api/logs?level=ERROR,info', ['query', 'level', 1], 'enum'],
      ['/api/logs?since=yesterday', ['query', 'since'], 'datetime_parsing'],
      ['/api/logs?until=2026-02-30T00:00:00Z', ['query', 'until'], 'datetime_parsing'],
      ['/api/logs?q=', ['query', 'q'], 'string_too_short'],
      ['/api/logs?q=a%00b', ['query', 'q'], 'string_pattern_mismatch'],
      ['/api/logs?q=%20%20', ['query', 'q'], 'string_no_terms'],
      ['/api/logs?q=%22%22', ['query', 'q'], 'string_no_terms'],
      ['/api/logs?q=a%20b%20c%20d%20e%20f%20g%20h%20i', ['query', 'q'], 'too_many_terms'],
      ['/api/logs?device_id=' + 'x'.repeat(51), ['query', 'device_id'], 'string_too_long'],
      ['/api/logs?data=not-json', ['query', 'data'], 'json_invalid'],
      ['/api/logs?data=%5B1%5D', ['query', 'data'], 'dict_type'],
      ['/api/logs?data=' + encodeURIComponent('{"a":"\\u0000"}'), ['query', 'data'], 'string_unstorable'],
      ['/api/logs?cursor=not%20base64', ['query', 'cursor'], 'string_pattern_mismatch'],
      ['/api/logs?cursor=Zm9v', ['query', 'cursor'], 'value_error'],
      ['/api/logs?levle=ERROR', ['query', 'levle'], 'extra_forbidden'],
      ['/api/logs?__proto__=x', ['query', '__proto__'], 'extra_forbidden'],
      ['/api/logs/dev-a?limit=-1', ['query', 'limit'], 'greater_than_equal'],
      ['/api/logs/dev-a?level=ERROR', ['query', 'level'], 'extra_forbidden'],
      ['/api/logs/' + 'y'.repeat(51), ['path', 'device_id'], 'string_too_long'],
      ['/api/logs/%E0%A4%A', ['path', 'device_id'], 'value_error'],
      ['/api/logs/a%00b', ['path', 'device_id'], 'string_pattern_mismatch'],
      ['/api/stats?since=soon', ['query', 'since'], 'datetime_parsing'],
      ['/api/stats?until=2026-01-01', ['query', 'until'], 'extra_forbidden'],
    ];
    for (const [p, loc, type] of cases) {
      const r = await get(p);
      t.equal(r.status, 422, `${p}: 422`);
      t.equal(r.body?.code, 'LOGD_VALIDATION_FAILED', `${p}: code`);
      t.same(r.body?.detail?.[0]?.loc, loc, `${p}: names ${loc.join('.')}`);
      if (type) t.equal(r.body.detail[0].type, type, `${p}: ${type}`);
      t.type(r.body?.detail?.[0]?.msg, 'string');
    }
  });

  await t.test('one rebuild per key under a stampede', async (t) => {
    const lookups = async (): Promise<Record<string, number>> => {
      const text = (await get('/metrics')).text;
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/^logd_cache_lookups_total\{cache="logs",result="(\w+)"\} (\d+)/gm)) out[m[1]] = Number(m[2]);
      return out;
    };
    const before = await lookups();
    const answers = await Promise.all(Array.from({ length: 40 }, () => get('/api/logs/dev-b?limit=23')));
    const after = await lookups();
    const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
    t.ok(answers.every((a) => a.status === 200), 'all answered');
    t.equal(new Set(answers.map((a) => JSON.stringify(a.body.data))).size, 1, 'all the same logs');
    t.equal(delta('hit') + delta('miss') + delta('shared') + delta('waited') + delta('late'), 40, `40 lookups: ${JSON.stringify({ before, after })}`);
    // 'late': the other worker's rebuild did not come within cache's wait (a loaded machine): not a second rebuild
    // under the lock, but a query to PostgreSQL all the same, so both count against the bound.
    t.ok(delta('miss') >= 1 && delta('miss') + delta('late') <= 4, `${delta('miss')} rebuild(s) and ${delta('late')} late lookup(s) queried PostgreSQL for 40 concurrent requests (2 workers)`);
  });

  await t.test('every cache key has a TTL', async (t) => {
    const keys = await client.keys('cache:*');
    t.ok(keys.some((k) => k.startsWith('cache:logs:{c')) && keys.includes('cache:{stats}') && keys.includes('cache:ver:{stats}'), keys.join(' '));
    const forever: string[] = [];
    for (const k of keys) if ((await client.pttl(k)) <= 0) forever.push(k);
    t.same(forever, [], 'every key expires');
  });

  await t.test('cache failures never fail a read', async (t) => {
    // Garbage where a cached answer should be: a miss, then rebuilt.
    await client.set(cacheKeys.deviceLogs('dev-a', 9), 'garbage', 'EX', 60);
    const g = await get('/api/logs/dev-a?limit=9');
    t.equal(g.status, 200);
    t.equal(g.body.source, 'database');
    t.same(ids(g), (await truth("device_id = 'dev-a'")).slice(0, 9));
    await cached('/api/logs/dev-a?limit=9');

    // Redis busy for 2 s: the cache gives up after cache.timeout_ms and PostgreSQL answers.
    const sleeper = new Redis(redis.port, redis.host);
    const sleeping = sleeper.call('DEBUG', 'SLEEP', '2');
    // Redis is busy once a PING on another connection goes unanswered.
    const probe = new Redis(redis.port, redis.host, { commandTimeout: 50, maxRetriesPerRequest: 0 });
    await waitFor('Redis to be busy with DEBUG SLEEP', () => probe.ping().then(() => false, () => true), 2000, 10);
    probe.disconnect();
    const t0 = Date.now();
    const slow = await get('/api/logs/dev-a?limit=8');
    const elapsed = Date.now() - t0;
    await sleeping;
    sleeper.disconnect();
    t.equal(slow.status, 200, slow.text);
    t.equal(slow.body.source, 'database');
    t.ok(elapsed < 1500, `answered in ${elapsed} ms while Redis slept 2 s`);

    // Redis down.
    await redis.stop();
    try {
      for (const p of ['/api/logs/dev-a?limit=7', '/api/stats', '/api/logs?level=ERROR']) {
        const r = await get(p);
        t.equal(r.status, 200, `${p} with Redis down: ${r.text.slice(0, 100)}`);
        if (p !== '/api/logs?level=ERROR') t.equal(r.body.source, 'database');
      }
    } finally {
      await redis.start();
    }
    await cached('/api/logs/dev-a?limit=7');
  });

  await t.test('the read queries are index-backed (EXPLAIN on 200,000 rows)', async (t) => {
    const url = await db.createDatabase('explain');
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    t.teardown(() => c.end());
    await c.query(readFileSync(path.join(ROOT, 'schema.sql'), 'utf8'));
    // the rows span 2026-01-01 to 2026-01-03: their daily partitions first
    await createPartitions(c, loadConfig(undefined, {}), [0, 1, 2].map((d) => Date.UTC(2026, 0, 1 + d)));
    await c.query(`INSERT INTO logs (device_id, log_level, message, log_data, created_at)
      SELECT 'dev-' || (i % 500), (ARRAY['DEBUG','INFO','WARNING','ERROR','CRITICAL'])[1 + i % 5], 'message ' || i,
        jsonb_build_object('i', i), timestamptz '2026-01-01' + i * interval '1 second'
      FROM generate_series(1, 200000) i`);
    await c.query('VACUUM ANALYZE logs');
    // plans name each partition and its own index: map those to the index of logs they belong to
    const { rows: owned } = await c.query<{ child: string; parent: string }>(`SELECT c.relname AS child, p.relname AS parent FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('logs_device_created_idx', 'logs_created_idx')`);
    const indexOf = new Map(owned.map((r) => [r.child, r.parent]));
    const nodes = async (sql: string, params: unknown[]): Promise<Record<string, string>[]> => {
      const { rows } = await c.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
      const out: Record<string, string>[] = [];
      const walk = (n: Record<string, unknown>): void => {
        out.push(n as Record<string, string>);
        for (const child of (n.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk(rows[0]['QUERY PLAN'][0].Plan);
      return out;
    };
    const search = (o: Record<string, unknown>): unknown[] =>
      [o.device ?? null, o.levels ?? null, o.since ?? null, o.until ?? null, o.q ?? null, o.data ?? null, o.after ?? null, o.afterId ?? null, 101];
    const cases: [string, string, unknown[], string | undefined][] = [
      ['device query', SQL.deviceLogs, ['dev-7', 100], 'logs_device_created_idx'],
      ['search, no filter', SQL.searchLogs, search({}), 'logs_created_idx'],
      ['search by device, next page', SQL.searchLogs, search({ device: 'dev-7', after: '2026-01-02T00:00:00.000000Z', afterId: '1' }), 'logs_device_created_idx'],
      ['search by level', SQL.searchLogs, search({ levels: ['ERROR'] }), 'logs_created_idx'],
      ['search by time', SQL.searchLogs, search({ since: '2026-01-01T10:00:00Z', until: '2026-01-01T11:00:00Z' }), 'logs_created_idx'],
      ['search, next page', SQL.searchLogs, search({ after: '2026-01-02T00:00:00.000000Z', afterId: '1' }), 'logs_created_idx'],
      ['stats', SQL.stats, [], undefined],
      ['stats since', SQL.statsSince, ['2026-01-01T10:30:00Z'], 'logs_created_idx'],
    ];
    for (const [name, sql, params, index] of cases) {
      const plan = await nodes(sql, params);
      const onLogs = plan.filter((n) => /^logs_2026/.test(n['Relation Name'] ?? '') || indexOf.has(n['Index Name']));
      t.notOk(onLogs.some((n) => n['Node Type'] === 'Seq Scan'), `${name}: no Seq Scan on a partition of logs`);
      if (index) t.ok(onLogs.some((n) => indexOf.get(n['Index Name']) === index), `${name}: uses ${index} (${onLogs.map((n) => `${n['Node Type']} ${n['Index Name'] ?? ''}`).join(', ')})`);
      else t.equal(onLogs.length, 0, `${name}: does not read logs at all`);
    }

    // A search no index serves is a scan: postgres.search_timeout_ms bounds it.
    const strict = await startLogd({ redis, pg: db, workers: 1, env: {
      POSTGRES_DB: 'explain', LOGD_REDIS_STREAM: 'explain:stream', LOGD_POSTGRES_SEARCH_TIMEOUT_MS: '1',
    } });
    t.teardown(() => strict.stop());
    const scan = await request(`${strict.url}/api/logs?q=no-such-text`);
    t.equal(scan.status, 503, scan.text);
    t.equal(scan.body.code, 'LOGD_QUERY_TIMEOUT');
    t.match(scan.body.detail, /narrow it/);
  });

  await t.test('with cache.enabled = false every answer comes from PostgreSQL', async (t) => {
    const plain = await startLogd({ redis, pg: db, workers: 1, env: { LOGD_CACHE_ENABLED: 'false', LOGD_REDIS_STREAM: 'plain:stream' } });
    t.teardown(() => plain.stop());
    for (let i = 0; i < 3; i++) {
      const r = await request(`${plain.url}/api/logs/dev-a?limit=4`);
      t.equal(r.body.source, 'database');
      t.same(ids(r), (await truth("device_id = 'dev-a'")).slice(0, 4));
    }
  });
});
