/**
 * The Elasticsearch sink of a real logd (token auth on): the official
 * client (@elastic/elasticsearch 8.19.2, its bulk helper, gzip, bearer and
 * ApiKey auth), the real rsyslog omelasticsearch (bulk mode, token as Basic
 * password), the probes, per-item errors, the document mapping, limits,
 * and a full backlog that both clients come through with every document
 * stored once.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Client } from '@elastic/elasticsearch';
import Redis from 'ioredis';
import t from 'tap';
import { LOGD_BIN, request, serviceEnv, startStack } from './helpers/logd';
import { waitFor } from './helpers/services';
import { makeShipperDir, omelasticsearchConfig, startRsyslog } from './helpers/shippers';

const execFileP = promisify(execFile);
const BACKLOG_KEY = 'logs:stream:backlog';
const FULL = 1_000_000_000;

const ndjson = (lines: unknown[]): string => lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';

/** JSON text of `depth` objects nested in one another (built as text: JSON.stringify recurses). */
const nested = (depth: number): string => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

t.test('Elasticsearch bulk API', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 2, env: { LOGD_AUTH_MODE: 'token' } });
  const cli = async (...args: string[]): Promise<string> =>
    (await execFileP(process.execPath, [LOGD_BIN, ...args], { env: { ...process.env, ...serviceEnv(redis, pg) } })).stdout.trim();
  const token = await cli('token', 'create', '--name', 'es', '--scope', 'ingest');
  const admin = await cli('token', 'create', '--name', 'admin', '--scope', 'admin');
  const auth = { authorization: `Bearer ${token}` };
  const r = new Redis(redis.url);
  t.teardown(() => r.disconnect());

  const metric = async (series: string): Promise<number> => {
    const text = (await request(`${logd.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text;
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
  const bulk = (body: string | Buffer, headers: Record<string, string> = {}, path = '/_bulk') => request(`${logd.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...auth, ...headers }, body,
  });
  const rowsOf = (device: string) => pg.query<Record<string, any>>('SELECT * FROM logs WHERE device_id = $1 ORDER BY id', [device]);
  const countOf = async (where: string, params: unknown[]): Promise<number> =>
    Number((await pg.query<{ n: string }>(`SELECT count(*) AS n FROM logs WHERE ${where}`, params))[0].n);
  const waitCount = (what: string, where: string, params: unknown[], n: number, ms = 30_000) =>
    waitFor(`${n} rows of ${what}`, async () => (await countOf(where, params)) >= n, ms);
  /** Once the stream is persisted: nothing waits to be stored. */
  const drained = () => waitFor('the stream persisted', async () => (await r.get(BACKLOG_KEY)) === '0', 30_000);

  await t.test('probes: GET and HEAD /, health, license; each with X-Elastic-Product; a token is needed', async (t) => {
    const root = await request(`${logd.url}/`, { headers: auth });
    t.equal(root.status, 200);
    t.equal(root.headers.get('x-elastic-product'), 'Elasticsearch');
    t.match(root.body, { cluster_name: 'logd', version: { number: '8.17.0', build_flavor: 'default', minimum_wire_compatibility_version: '7.17.0' }, tagline: 'You Know, for Search' });
    const head = await request(`${logd.url}/`, { method: 'HEAD', headers: auth });
    t.equal(head.status, 200);
    t.equal(head.headers.get('x-elastic-product'), 'Elasticsearch');
    const health = await request(`${logd.url}/_cluster/health`, { headers: auth });
    t.match(health.body, { status: 'green', number_of_nodes: 1 });
    const cat = await request(`${logd.url}/_cat/health`, { headers: auth });
    t.match(cat.text, /^\d+ \d\d:\d\d:\d\d logd green 1 1 /);
    t.equal(cat.headers.get('x-elastic-product'), 'Elasticsearch');
    const catJson = await request(`${logd.url}/_cat/health?format=json`, { headers: auth });
    t.match(catJson.body, [{ cluster: 'logd', status: 'green' }]);
    t.match((await request(`${logd.url}/_license`, { headers: auth })).body, { license: { status: 'active', type: 'basic' } });
    const none = await request(`${logd.url}/`);
    t.equal(none.status, 401);
    t.equal(none.headers.get('x-elastic-product'), 'Elasticsearch');
    t.match(none.body, { error: { type: 'security_exception', root_cause: [{ type: 'security_exception' }] }, status: 401 });
    t.match(none.headers.get('www-authenticate'), /Basic realm="logd"/);
    const bad = await bulk(ndjson([{ index: { _index: 'x' } }, { message: 'm' }]), { authorization: 'Basic ' + Buffer.from('u:wrong').toString('base64') });
    t.equal(bad.status, 401);
    t.equal(bad.body.error.type, 'security_exception');
  });

  await t.test('the official client: helpers.bulk with gzip and a bearer token, N docs stored once, fields mapped', async (t) => {
    const client = new Client({ node: logd.url, auth: { bearer: token }, compression: true });
    t.teardown(() => client.close());
    t.equal((await client.info()).version.number, '8.17.0');
    const docs = Array.from({ length: 500 }, (_, i) => ({
      '@timestamp': new Date(Date.UTC(2026, 11, 1, 10, 0, 0, i)).toISOString(),
      message: `js doc ${i}`,
      host: { name: 'js-host', ip: '10.0.0.1' },
      log: { level: i % 2 ? 'warn' : 'error', logger: 'app' },
      service: { name: 'shop' },
      n: i,
    }));
    const result = await client.helpers.bulk({ datasource: docs, onDocument: () => ({ create: { _index: 'app-logs' } }), flushBytes: 20_000 });
    t.match(result, { total: 500, successful: 500, failed: 0 });
    await waitCount('js-host', 'device_id = $1', ['js-host'], 500);
    await drained();
    const rows = await rowsOf('js-host');
    t.equal(rows.length, 500, 'each once');
    t.same(rows.map((x) => x.message).sort(), docs.map((d) => d.message).sort());
    const row = rows.find((x) => x.message === 'js doc 7')!;
    t.equal(row.log_level, 'WARNING');
    t.equal(row.created_at.toISOString(), '2026-12-01T10:00:00.007Z');
    t.same(row.log_data, { host: { ip: '10.0.0.1' }, log: { logger: 'app' }, service: { name: 'shop' }, n: 7, index: 'app-logs' });
    t.equal((rows.find((x) => x.message === 'js doc 8'))!.log_level, 'ERROR');
  });

  await t.test('the official client with an ApiKey, the path index as default', async (t) => {
    const client = new Client({ node: logd.url, auth: { apiKey: token } });
    t.teardown(() => client.close());
    const res = await client.bulk({ index: 'path-idx', operations: [{ index: { _id: 'given-1' } }, { message: 'apikey doc', hostname: 'key-host', level: 'debug' }] });
    t.equal(res.errors, false);
    t.match(res.items[0], { index: { _index: 'path-idx', _id: 'given-1', status: 201, result: 'created' } });
    const row = await waitFor('the row', async () => (await rowsOf('key-host'))[0]);
    t.equal(row.log_level, 'DEBUG');
    t.same(row.log_data, { index: 'path-idx' });
  });

  await t.test('per-item errors: the good items stored, each bad one answered as Elasticsearch does', async (t) => {
    const before = await metric('logd_protocol_records_total{protocol="elasticsearch",outcome="rejected"}');
    const body = ndjson([
      { index: { _index: 'mix' } }, { message: 'good 1', host: 'mix-host', '@timestamp': Date.UTC(2026, 11, 1, 10) },
      { delete: { _index: 'mix', _id: 'd1' } },
      { update: { _index: 'mix', _id: 'u1' } }, { doc: { message: 'x' } },
      '{"index": {"_index": "mix"', { message: 'after a broken action line', host: 'mix-host' },
      { index: { _index: 'mix' } }, '{"message": "broken document",',
      { create: { _index: 'mix', _id: 'c1' } }, [1, 2],
      { upsert: { _index: 'mix' } }, { message: 'unknown action' },
      { index: { _index: 'mix' } }, { message: 'bad time', host: 'mix-host', '@timestamp': 'yesterday' },
      { index: { _index: 'mix' } }, `{"message":"too deep","host":"mix-host","deep":${nested(33)}}`,
      { index: { _index: 'mix' } }, `{"message":"far too deep","host":"mix-host","deep":${nested(10_000)}}`,
      { index: { _index: 'mix' } }, `{"message":${nested(10_000)},"host":"mix-host"}`,
      { index: { _index: 'mix' } }, `{"message":"deep but allowed","host":"mix-host","deep":${nested(30)}}`,
      { index: {} }, { message: 'no index', host: 'mix-host' },
      { create: { _index: 'mix' } }, { msg: { text: 'an object' }, timestamp: '2026-12-01T10:00:00.123456789+02:00', 'host.name': 'mix-host', severity: 'CRIT' },
      { index: { _index: 'mix' } }, { 'host.name': 'mix-host' },
      { index: { _index: 'mix' } }, { message: 'wrong type of time', host: 'mix-host', '@timestamp': true },
      { index: { _index: 7 } }, { message: 'index of a wrong type', host: 'mix-host' },
      { index: { _index: 'mix' } }, { message: 42, host: 'mix-host', level: 7, log: 'flat' },
    ]);
    const res = await bulk(body);
    t.equal(res.status, 200, res.text);
    t.equal(res.headers.get('x-elastic-product'), 'Elasticsearch');
    t.equal(res.body.errors, true);
    const got = res.body.items.map((it: Record<string, any>) => {
      const [action] = Object.keys(it);
      return [action, it[action].status, it[action].error?.type];
    });
    t.same(got, [
      ['index', 201, undefined],
      ['delete', 400, 'illegal_argument_exception'],
      ['update', 400, 'illegal_argument_exception'],
      ['index', 400, 'illegal_argument_exception'],
      ['index', 400, 'mapper_parsing_exception'],
      ['create', 400, 'mapper_parsing_exception'],
      ['index', 400, 'illegal_argument_exception'],
      ['index', 400, 'mapper_parsing_exception'],
      ['index', 400, 'mapper_parsing_exception'],
      ['index', 400, 'mapper_parsing_exception'],
      ['index', 400, 'mapper_parsing_exception'],
      ['index', 201, undefined],
      ['index', 400, 'action_request_validation_exception'],
      ['create', 201, undefined],
      ['index', 201, undefined],
      ['index', 400, 'mapper_parsing_exception'],
      ['index', 400, 'action_request_validation_exception'],
      ['index', 201, undefined],
    ]);
    t.match(res.body.items[0].index, { _index: 'mix', _version: 1, result: 'created', _shards: { total: 1, successful: 1, failed: 0 }, _primary_term: 1 });
    t.match(res.body.items[0].index._id, /^\d+-\d+:0$/);
    t.match(res.body.items[6].index.error.reason, /upsert/);
    t.match(res.body.items[7].index.error.reason, /@timestamp/);
    t.match(res.body.items[8].index.error.reason, /deeper than 32/);
    const rows = await waitFor('5 rows', async () => { const x = await rowsOf('mix-host'); return x.length >= 5 && x; });
    t.same(rows.map((x) => x.message), ['good 1', 'deep but allowed', '{"text":"an object"}', '-', '42']);
    t.equal(rows[4].log_level, 'INFO', 'a level that is no string: INFO');
    t.same(rows[4].log_data, { level: 7, log: 'flat', index: 'mix' });
    t.equal(rows[0].created_at.toISOString(), '2026-12-01T10:00:00.000Z', 'epoch ms @timestamp');
    t.equal(rows[2].created_at.toISOString(), '2026-12-01T08:00:00.123Z', 'timestamp, nanoseconds cut');
    t.equal(rows[2].log_level, 'CRITICAL');
    t.same(rows[2].log_data, { index: 'mix' });
    t.ok(Math.abs(rows[3].created_at.getTime() - Date.now()) < 60_000, 'no timestamp: the receive time');
    t.equal(await metric('logd_protocol_records_total{protocol="elasticsearch",outcome="rejected"}') - before, 13);
  });

  await t.test('NUL, unpaired surrogates and bytes that are not UTF-8 are stored as U+FFFD', async (t) => {
    const doc = '{"message":"nul\\u0000 lone\\ud800 end","host":"odd-host","k\\u0000":"v\\udc00"}';
    const bytes = Buffer.concat([Buffer.from(`{"index":{"_index":"odd"}}\n${doc}\n{"index":{"_index":"odd"}}\n{"message":"bad `), Buffer.from([0xff, 0xfe]), Buffer.from(' bytes","host":"odd-host"}\n')]);
    const res = await bulk(bytes);
    t.equal(res.body.errors, false, res.text);
    const rows = await waitFor('2 rows', async () => { const x = await rowsOf('odd-host'); return x.length >= 2 && x; });
    t.equal(rows[0].message, 'nul\uFFFD lone\uFFFD end');
    t.same(rows[0].log_data, { 'k\uFFFD': 'v\uFFFD', index: 'odd' });
    t.equal(rows[1].message, 'bad \uFFFD\uFFFD bytes');
  });

  await t.test('content types the clients send; others 415 in Elasticsearch\'s shape', async (t) => {
    for (const type of ['application/json; charset=utf-8', 'application/vnd.elasticsearch+x-ndjson; compatible-with=8', 'application/x-ndjson']) {
      const res = await bulk(ndjson([{ index: { _index: 'ct' } }, { message: type, host: 'ct-host' }]), { 'content-type': type });
      t.equal(res.status, 200, type);
    }
    await waitFor('3 rows', async () => (await rowsOf('ct-host')).length === 3);
    const res = await bulk('x', { 'content-type': 'text/plain' });
    t.equal(res.status, 415);
    t.equal(res.headers.get('x-elastic-product'), 'Elasticsearch');
    t.match(res.body, { error: { type: 'media_type_header_exception', reason: /text\/plain/ }, status: 415 });
  });

  await t.test('gzip body, 413 past the limit of inflated bytes, an empty body', async (t) => {
    const res = await bulk(gzipSync(ndjson([{ index: { _index: 'gz' } }, { message: 'zipped', host: 'gz-host' }, { index: { _index: 'gz' } }, { message: 'zipped, no device' }])), { 'content-encoding': 'gzip' });
    t.equal(res.body.errors, false, res.text);
    await waitFor('the row', async () => (await rowsOf('gz-host')).length === 1);
    const [fallback] = await waitFor('the row', async () => { const x = await pg.query<Record<string, any>>("SELECT * FROM logs WHERE message = 'zipped, no device'"); return x.length > 0 && x; });
    t.equal(fallback.device_id, 'unknown', 'elasticsearch.default_device_id');
    const bomb = gzipSync(Buffer.alloc(51 * 1024 * 1024, 0x20));
    const big = await bulk(bomb, { 'content-encoding': 'gzip' });
    t.equal(big.status, 413);
    t.match(big.body, { error: { type: 'illegal_argument_exception', reason: /limit of 52428800 bytes/ }, status: 413 });
    const empty = await bulk('');
    t.equal(empty.status, 400);
    t.match(empty.body, { error: { type: 'illegal_argument_exception', reason: /no requests added/ } });
  });

  await t.test('a 100,000-document bulk is stored whole', async (t) => {
    const action = '{"index":{"_index":"big"}}';
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++) lines.push(action, `{"message":"big ${i}","host":"big-host","seq":${i}}`);
    const res = await bulk(`${lines.join('\n')}\n`);
    t.equal(res.status, 200);
    t.equal(res.body.errors, false);
    t.equal(res.body.items.length, 100_000);
    await waitCount('big-host', 'device_id = $1', ['big-host'], 100_000, 60_000);
    await drained();
    t.equal(await countOf('device_id = $1', ['big-host']), 100_000);
  });

  await t.test('a full backlog: items 429, nothing stored; the JS bulk helper and rsyslog then store every document once', async (t) => {
    await r.incrby(BACKLOG_KEY, FULL);
    const refused = await bulk(ndjson([{ index: { _index: 'full' } }, { message: 'refused', host: 'full-raw' }, { delete: { _index: 'full', _id: 'x' } }]));
    t.equal(refused.status, 200);
    t.equal(refused.body.errors, true);
    t.match(refused.body.items, [
      { index: { status: 429, error: { type: 'es_rejected_execution_exception', reason: /backlog/ } } },
      { delete: { status: 400 } },
    ]);

    const dir = await makeShipperDir('omes');
    const rs = await startRsyslog(dir, omelasticsearchConfig(dir, logd.port, token, 'rsyslog-idx'));
    t.teardown(() => rs.stop());
    const refusedSoFar = () => metric('logd_logs_refused_total{reason="backlog"}');
    const lines = Array.from({ length: 100 }, (_, i) => `rsyslog line ${i}`);
    const beforeRsyslog = await refusedSoFar();
    await rs.feedLines(lines, { tag: 'app', priority: 'user.err' });
    await waitFor('rsyslog refused', async () => (await refusedSoFar()) >= beforeRsyslog + lines.length, 30_000);

    const client = new Client({ node: logd.url, auth: { bearer: token } });
    t.teardown(() => client.close());
    const docs = Array.from({ length: 200 }, (_, i) => ({ message: `retried ${i}`, host: { name: 'full-js' } }));
    const onDrop: unknown[] = [];
    let attempts = 0;
    const helper = client.helpers.bulk({
      datasource: docs, onDocument: () => ({ index: { _index: 'full' } }), retries: 100, wait: 100,
      onDrop: (d) => onDrop.push(d),
    });
    client.diagnostic.on('response', () => { attempts++; });
    await waitFor('the JS helper refused and waiting to retry', () => attempts >= 2, 30_000);
    t.equal(await countOf("device_id IN ('full-js', 'full-raw') OR message LIKE 'rsyslog line %'", []), 0, 'nothing stored while full');
    await r.decrby(BACKLOG_KEY, FULL);

    const result = await helper;
    t.match(result, { total: 200, successful: 200, failed: 0 });
    t.same(onDrop, []);
    await waitCount('rsyslog', 'message LIKE $1', ['rsyslog line %'], 100);
    await rs.stop();
    await drained();
    const js = await rowsOf('full-js');
    t.equal(js.length, 200, 'every JS document once');
    t.equal(new Set(js.map((x) => x.message)).size, 200);
    const rows = await pg.query<Record<string, any>>("SELECT * FROM logs WHERE message LIKE 'rsyslog line %' ORDER BY id");
    t.equal(rows.length, 100, 'every rsyslog line once');
    t.same(new Set(rows.map((x) => x.message)), new Set(lines));
    t.equal(rows[0].log_level, 'ERROR');
    t.match(rows[0].log_data, { program: 'app', index: 'rsyslog-idx' });
    t.notOk('timestamp' in rows[0].log_data);
    t.equal(await countOf('device_id = $1', ['full-raw']), 0);
  });
});
