/** GET /metrics: Prometheus text, aggregated over every HTTP worker and the persister. */
import t from 'tap';
import { waitFor } from './helpers/services';
import { postJson, request, startStack, waitRows } from './helpers/logd';

/** The value of one sample (`name{labels} value`), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('metrics', async (t) => {
  const { pg, logd } = await startStack(t, { workers: 2 });
  // New connections each time, so both workers take some of the requests.
  const fresh = { connection: 'close' };
  for (let i = 0; i < 20; i++) {
    t.equal((await postJson(`${logd.url}/api/logs/batch`, { logs: [{ device_id: 'm', log_level: 'INFO', message: `m${i}a` }, { device_id: 'm', log_level: 'INFO', message: `m${i}b` }] }, fresh)).status, 200);
  }
  for (let i = 0; i < 5; i++) t.equal((await postJson(`${logd.url}/api/log`, { device_id: 'm', log_level: 'NOPE', message: 'x' }, fresh)).status, 422);
  await waitRows(pg, 40);
  // searches: 2 that no index serves (a 2-character q, level alone), 3 that one does; a refused one is not counted
  for (const query of ['q=m1', 'level=INFO', 'q=m1a%20m', 'device_id=m', `data=${encodeURIComponent('{"a":1}')}`]) {
    t.equal((await request(`${logd.url}/api/logs?${query}`, { headers: fresh })).status, 200, query);
  }
  t.equal((await request(`${logd.url}/api/logs?q=%20`, { headers: fresh })).status, 422);

  const text = await waitFor('the persister\'s counters to show every row', async () => {
    const r = await request(`${logd.url}/metrics`);
    return sample(r.text, 'logd_persisted_rows_total') === 40 ? r : undefined;
  });
  t.equal(text.status, 200);
  t.match(text.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const body = text.text;
  const names = body.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
  t.ok(names.length > 10 && names.every((n) => n.startsWith('logd_')), 'every metric is named logd_*');
  t.equal(sample(body, 'logd_logs_accepted_total'), 40, 'accepted logs summed over both workers');
  t.equal(sample(body, 'logd_logs_refused_total{reason="invalid"}'), 5);
  t.equal(sample(body, 'logd_http_requests_total{route="/api/logs/batch",status="200"}'), 20);
  t.equal(sample(body, 'logd_http_requests_total{route="/api/log",status="422"}'), 5);
  t.equal(sample(body, 'logd_http_request_duration_seconds_count{route="/api/logs/batch"}'), 20);
  t.equal(sample(body, 'logd_stream_backlog_logs'), 0, 'backlog drained');
  t.ok((sample(body, 'logd_persister_batch_rows_count') ?? 0) >= 1, 'batch size histogram');
  t.ok((sample(body, 'logd_persister_batch_duration_seconds_count') ?? 0) >= 1, 'batch duration histogram');
  t.equal(sample(body, 'logd_dead_lettered_total'), 0);
  t.equal(sample(body, 'logd_searches_total{reads="scan"}'), 2, 'searches no index serves');
  t.equal(sample(body, 'logd_searches_total{reads="index"}'), 3, 'searches an index serves');
  t.ok((sample(body, 'logd_storage_partitions') ?? 0) >= 2, 'storage: the partitions of today and tomorrow');
  t.ok((sample(body, 'logd_storage_bytes') ?? 0) > 0, 'storage: their size');
  t.ok((sample(body, 'logd_storage_next_drop_timestamp_seconds') ?? 0) > Date.now() / 1000, 'storage: the next drop, in the future');
  t.ok((sample(body, 'logd_process_resident_memory_bytes') ?? 0) > 0, 'process metrics');
});
