/**
 * GET /api/tail, the live tail WebSocket, against real Redis, PostgreSQL and
 * logd processes: auth and validation before the upgrade, filters, other
 * ingest paths, resume, slow consumers, the subscriber limit and the shared
 * reader, client frames, a Redis restart and logd's shutdown.
 */
import { spawnSync } from 'node:child_process';
import Redis from 'ioredis';
import t from 'tap';
import { LOGD_BIN, postJson, request, serviceEnv, startStack, waitRows } from './helpers/logd';
import { waitFor } from './helpers/services';
import { compareIds } from '../src/tail/hub';
import { openTail, refusal, type TailClient } from './helpers/tail';

const log = (device: string, message: string, level = 'INFO', extra: object = {}) => ({ device_id: device, log_level: level, message, ...extra });

/** Closes tails and waits until their sockets are closed. */
async function closeAll(tails: TailClient[]): Promise<void> {
  for (const c of tails) c.ws.close();
  await Promise.all(tails.map((c) => c.closed));
}

/** Names of the Redis connections (CLIENT LIST). */
async function connectionNames(r: Redis): Promise<string[]> {
  const list = (await r.call('CLIENT', 'LIST')) as string;
  return list.split('\n').map((l) => /(?:^| )name=(\S*)/.exec(l)?.[1] ?? '').filter(Boolean);
}

t.test('live tail with tokens, one worker', async (t) => {
  const { redis, pg, logd } = await startStack(t, {
    workers: 1,
    env: { LOGD_AUTH_MODE: 'token', LOGD_TAIL_MAX_SUBSCRIBERS: '1000', LOGD_TAIL_MAX_BUFFER_BYTES: '65536' },
  });
  const r = new Redis({ host: redis.host, port: redis.port });
  t.teardown(() => r.disconnect());
  const cli = (...args: string[]) => spawnSync(process.execPath, [LOGD_BIN, 'token', ...args], { env: { ...process.env, ...serviceEnv(redis, pg) }, encoding: 'utf8', timeout: 20_000 });
  const token = (scope: string): string => {
    const res = cli('create', '--name', `tail-${scope}`, '--scope', scope);
    t.equal(res.status, 0, res.stderr);
    return res.stdout.trim();
  };
  const read = token('read');
  const ingest = token('ingest');
  const admin = token('admin');
  const auth = (tok: string) => ({ authorization: `Bearer ${tok}` });
  await waitFor('the worker to know the tokens', async () => (await request(`${logd.url}/api/stats`, { headers: auth(read) })).status === 200, 10_000);
  const post = async (logs: object[]) => {
    const res = await postJson(`${logd.url}/api/logs/batch`, { logs }, auth(ingest));
    if (res.status !== 200) t.fail(`POST answered ${res.status}: ${res.text}`);
    return res;
  };
  const tail = (query = '', tok = read) => openTail(logd.url, query, { headers: auth(tok) });

  await t.test('authentication before the upgrade', async (t) => {
    const none = await refusal(openTail(logd.url));
    t.equal(none.status, 401);
    t.equal(none.body.code, 'LOGD_UNAUTHORIZED');
    const ingestOnly = await refusal(tail('', ingest));
    t.equal(ingestOnly.status, 403);
    t.equal(ingestOnly.body.code, 'LOGD_FORBIDDEN');
    const inUrl = await refusal(openTail(logd.url, `token=${read}`));
    t.equal(inUrl.status, 401, 'a token in the query string is not read');
    const viaProtocol = await openTail(logd.url, 'device_id=proto', { protocols: ['logd.v1', `logd.token.${read}`] });
    t.equal(viaProtocol.ws.protocol, 'logd.v1', 'the server selects logd.v1, never the token');
    await post([log('proto', 'through the subprotocol token')]);
    t.equal((await viaProtocol.next('the log', (m) => m.type === 'logs')).logs[0].message, 'through the subprotocol token');
    const badProtocolToken = await refusal(openTail(logd.url, '', { protocols: ['logd.v1', `logd.token.${ingest}`] }));
    t.equal(badProtocolToken.status, 403, 'the subprotocol token needs the read scope too');
    await closeAll([viaProtocol]);
    const plain = await request(`${logd.url}/api/tail`, { headers: auth(read) });
    t.equal(plain.status, 426, 'a GET without Upgrade');
    t.equal(plain.body.code, 'LOGD_UPGRADE_REQUIRED');
  });

  await t.test('validation before the upgrade: 422 as search answers it', async (t) => {
    for (const [query, loc] of [
      ['level=LOUD', ['query', 'level', 0]],
      ['colour=red', ['query']],
      ['q=%20%20', ['query', 'q']],
      ['after=yesterday', ['query', 'after']],
      [`device_id=${'x'.repeat(51)}`, ['query', 'device_id']],
    ] as const) {
      const refused = await refusal(tail(query));
      t.equal(refused.status, 422, query);
      t.equal(refused.body.code, 'LOGD_VALIDATION_FAILED', query);
      t.match(refused.body.detail, [{ loc }], `${query}: names the parameter`);
      t.match(String(refused.headers['content-type']), /^application\/json/, `${query}: JSON`);
    }
  });

  await t.test('a log posted after ready arrives at once; filters as in search', async (t) => {
    const all = await tail();
    const t0 = Date.now();
    await post([log('ready-dev', 'the first')]);
    const first = await all.next('the first log', (m) => m.type === 'logs');
    t.ok(Date.now() - t0 < 1000, `arrived within 1 s (${Date.now() - t0} ms)`);
    t.match(first, { position: /^\d+-\d+$/, logs: [{ device_id: 'ready-dev', log_level: 'INFO', message: 'the first', log_data: {}, created_at: /^\d{4}-\d\d-\d\dT/ }] });
    t.ok(Date.parse(first.logs[0].created_at) > 0, 'created_at is an ISO 8601 time');

    const byDevice = await tail('device_id=f-1');
    const byLevel = await tail('level=ERROR&level=CRITICAL');
    const byLevels = await tail('level=WARNING,ERROR');
    const byPhrase = await tail(`q=${encodeURIComponent('"disk full"')}`);
    const byWords = await tail(`q=${encodeURIComponent('full DISK')}&device_id=f-2`);
    await post([
      log('f-1', 'boot ok'),
      log('f-2', 'Disk full on /var', 'ERROR', { log_data: { disk: '/dev/sda', n: 1 } }),
      log('f-1', 'full of disk errors', 'CRITICAL'),
      log('f-3', 'disk is full', 'WARNING'),
      log('f-2', 'tab\there, newline\nthere, backslash \\ done', 'DEBUG'),
    ]);
    await post([log('f-9', 'end marker', 'CRITICAL')]);
    const messages = (c: TailClient) => c.logs().map((l) => l.message);
    await byLevel.next('the end marker', (m) => m.type === 'logs' && m.logs.some((l: { message: string }) => l.message === 'end marker'));
    for (const c of [byDevice, byLevels, byPhrase, byWords]) {
      await waitFor('the batch to reach every tail', () => all.logs().some((l) => l.message === 'end marker') && c.messages.length > 1, 2000);
    }
    t.same(messages(byDevice), ['boot ok', 'full of disk errors'], 'device_id');
    t.same(messages(byLevel), ['Disk full on /var', 'full of disk errors', 'end marker'], 'level, repeated');
    t.same(messages(byLevels), ['Disk full on /var', 'disk is full'], 'level, comma-separated');
    t.same(messages(byPhrase), ['Disk full on /var'], 'a quoted phrase, case-insensitively');
    t.same(messages(byWords), ['Disk full on /var'], 'words in any order, AND device_id');
    const got = all.logs();
    t.same(got.map((l) => l.message).slice(1), ['boot ok', 'Disk full on /var', 'full of disk errors', 'disk is full', 'tab\there, newline\nthere, backslash \\ done', 'end marker'],
      'no filter: every log, in order, text decoded from the stream');
    t.same(got[2].log_data, { disk: '/dev/sda', n: 1 }, 'log_data is an object');
    await closeAll([all, byDevice, byLevel, byLevels, byPhrase, byWords]);
  });

  await t.test('logs of another ingest path: NDJSON', async (t) => {
    const c = await tail('device_id=nd');
    const body = `${JSON.stringify(log('nd', 'line one'))}\n{"broken\n${JSON.stringify(log('nd', 'line three', 'ERROR'))}\n`;
    const res = await request(`${logd.url}/api/logs/batch`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...auth(ingest) }, body });
    t.equal(res.status, 200, 'NDJSON answered 200');
    await waitFor('both lines', () => c.logs().length === 2, 2000);
    t.same(c.logs().map((l) => [l.message, l.log_level]), [['line one', 'INFO'], ['line three', 'ERROR']]);
    await closeAll([c]);
  });

  await t.test('resume with after: exactly the missed logs, once, in order', async (t) => {
    const first = await tail('device_id=res');
    await post([log('res', 'seen')]);
    const seen = await first.next('the first log', (m) => m.type === 'logs');
    await closeAll([first]);
    await post([log('res', 'missed 1'), log('other', 'not this device')]);
    await post([log('res', 'missed 2'), log('res', 'missed 3', 'ERROR')]);
    const again = await openTail(logd.url, `device_id=res&after=${seen.position}`, { headers: auth(read) });
    t.equal(again.messages[0].position, seen.position, 'ready names the position it resumes after');
    await waitFor('the missed logs', () => again.logs().length >= 3, 3000);
    await post([log('res', 'live again')]);
    await waitFor('the live log', () => again.logs().length >= 4, 3000);
    t.same(again.logs().map((l) => l.message), ['missed 1', 'missed 2', 'missed 3', 'live again'], 'missed logs, then live, no duplicate');
    const positions = again.messages.filter((m) => m.type === 'logs').map((m) => m.position);
    t.same(positions, [...new Set(positions)], 'each position once');
    await closeAll([again]);
  });

  await t.test('resume after trimmed entries: skipped expired, then the rest and live', async (t) => {
    const before = await tail('device_id=exp');
    await post([log('exp', 'first')]);
    const start = (await before.next('first', (m) => m.type === 'logs')).position;
    await post([log('exp', 'trimmed')]);
    const trimmedAt = (await before.next('trimmed', (m) => m.type === 'logs' && m.logs[0].message === 'trimmed')).position;
    await post([log('exp', 'kept')]);
    const kept = (await before.next('kept', (m) => m.type === 'logs' && m.logs[0].message === 'kept')).position;
    await closeAll([before]);
    // What the resume window's end does to persisted entries: trimmed from the stream (here exactly, up to `kept`).
    await r.xtrim('logs:stream', 'MINID', kept);
    const resumed = await openTail(logd.url, `device_id=exp&after=${start}`, { headers: auth(read) });
    const expired = await resumed.next('the expired marker', (m) => m.type === 'skipped');
    t.match(expired, { type: 'skipped', reason: 'expired', count: null }, 'expired');
    t.ok(compareIds(expired.position, trimmedAt) >= 0 && compareIds(expired.position, kept) < 0, `resumes after the trimmed entries, before the first one held (${expired.position})`);
    await waitFor('the entry still held', () => resumed.logs().length === 1, 3000);
    await post([log('exp', 'live')]);
    await waitFor('the live log', () => resumed.logs().length === 2, 3000);
    t.same(resumed.logs().map((l) => l.message), ['kept', 'live']);
    t.ok(resumed.messages.findIndex((m) => m.type === 'skipped') < resumed.messages.findIndex((m) => m.type === 'logs'), 'the marker comes before the logs');
    await closeAll([resumed]);
  });

  await t.test('a client that does not read: skipped logs counted, ingest unaffected', async (t) => {
    const slow = await tail('device_id=slow');
    const other = await tail('device_id=slow-not');
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const filler = 'x'.repeat(400);
    let posted = 0;
    for (let i = 0; i < 60; i++) {
      const logs = Array.from({ length: 1000 }, (_, j) => log('slow', `${i}-${j} ${filler}`));
      await post(logs);
      posted += logs.length;
    }
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const counted = () => slow.logs().length + slow.messages.filter((m) => m.type === 'skipped').reduce((n, m) => n + m.count, 0);
    await waitFor(`every one of ${posted} logs sent or counted as skipped`, () => counted() === posted, 30_000);
    const skipped = slow.messages.filter((m) => m.type === 'skipped');
    t.ok(skipped.length >= 1 && skipped.every((m) => m.reason === 'slow' && m.count > 0), `skipped messages (${skipped.map((m) => m.count).join(', ')})`);
    t.equal(counted(), posted, 'sent + skipped = matching logs posted');
    t.ok(slow.logs().length < posted, 'some were skipped');
    const sent = slow.logs().map((l) => l.message);
    t.equal(new Set(sent).size, sent.length, 'no log twice');
    await post([log('slow', 'after the flood')]);
    await slow.next('a log after the flood', (m) => m.type === 'logs' && m.logs.some((l: { message: string }) => l.message === 'after the flood'));
    t.equal(other.logs().length, 0, 'another filter got nothing of it');
    await closeAll([slow, other]);
  });

  await t.test('frames from the client close the socket', async (t) => {
    const text = await tail();
    text.ws.send('hello');
    t.equal((await text.closed).code, 1008, 'a text frame: 1008');
    t.match(text.messages.at(-1), { type: 'error', code: 'LOGD_BAD_REQUEST', detail: 'logd tail takes no messages' });
    const binary = await tail();
    binary.ws.send(Buffer.from([1, 2, 3]));
    t.equal((await binary.closed).code, 1003, 'a binary frame: 1003');
    t.match(binary.messages.at(-1), { type: 'error' });
    const big = await tail();
    big.ws.send('x'.repeat(4096));
    t.equal((await big.closed).code, 1009, 'a message over 1 KiB: 1009');
    t.match(big.messages.at(-1), { type: 'error', code: 'LOGD_BAD_REQUEST', detail: /4096 bytes/ });
  });

  await t.test('1000 tails at once, the limit, and no reader once they leave', async (t) => {
    await waitFor('no tail left from earlier tests', async () => !(await connectionNames(r)).includes('logd:tail'), 10_000);
    const tails = await Promise.all(Array.from({ length: 1000 }, (_, i) => tail(i % 2 ? 'device_id=many' : 'level=INFO')));
    t.equal(tails.length, 1000, 'every one got ready');
    t.ok((await connectionNames(r)).filter((n) => n === 'logd:tail').length === 1, 'one reader connection for all of them');
    const full = await refusal(tail());
    t.equal(full.status, 503, 'one more than tail.max_subscribers');
    t.equal(full.body.code, 'LOGD_TAIL_FULL');
    t.equal(full.headers['retry-after'], '1', 'with Retry-After');
    const metrics = await request(`${logd.url}/metrics`, { headers: auth(admin) });
    t.match(metrics.text, /\nlogd_tail_subscribers 1000\n/, 'logd_tail_subscribers');
    await post([log('many', 'to everyone')]);
    await waitFor('the log at every tail', () => tails.every((c) => c.logs().length === 1), 10_000);
    t.ok(tails.every((c) => c.logs()[0].message === 'to everyone'), 'each got it once');
    await closeAll(tails);
    await waitFor('the reader to stop: its connection gone', async () => !(await connectionNames(r)).includes('logd:tail'), 10_000);
    const after = await request(`${logd.url}/metrics`, { headers: auth(admin) });
    t.match(after.text, /\nlogd_tail_subscribers 0\n/, 'no subscriber left');
    t.match(after.text, /\nlogd_tail_logs_sent_total \d+/, 'logd_tail_logs_sent_total');
    t.match(after.text, /\nlogd_tail_logs_skipped_total\{reason="slow"\} [1-9]/, 'logd_tail_logs_skipped_total');
  });
});

t.test('persisted entries stay in the stream for tail.resume_window_s, then are trimmed', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1, env: { LOGD_TAIL_RESUME_WINDOW_S: '5' } });
  const r = new Redis({ host: redis.host, port: redis.port });
  t.teardown(() => r.disconnect());
  // 300 entries: more than one node of the stream's radix tree (100 entries), which XTRIM MINID ~ removes whole.
  const start = Date.now();
  for (let i = 0; i < 6; i++) {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, j) => postJson(`${logd.url}/api/log`, log('win', `w${i}-${j}`))));
    t.ok(answers.every((a) => a.status === 200), `batch ${i} accepted`);
  }
  await waitRows(pg, 300);
  const held = await r.xlen('logs:stream');
  t.ok(Date.now() - start < 5000, 'persisted within the window (else the check below proves nothing)');
  t.equal(held, 300, 'every persisted entry is still in the stream within the window');
  const trimmed = await waitFor('entries older than the window to be trimmed by a later acknowledgement', async () => {
    t.equal((await postJson(`${logd.url}/api/log`, log('win', 'later'))).status, 200);
    const n = await r.xlen('logs:stream');
    return n < 300 ? n : undefined;
  }, 20_000, 500);
  t.ok(trimmed < 300, `trimmed to ${trimmed} entries once the window passed`);
});

t.test('live tail across a Redis restart, then logd\'s shutdown', async (t) => {
  const { redis, logd } = await startStack(t, { workers: 1 });
  const worker = logd.children('http');
  const c = await openTail(logd.url, 'device_id=rr');
  t.same(c.messages[0], { type: 'ready', position: '0-0' }, 'an empty stream: ready after 0-0');
  t.equal((await postJson(`${logd.url}/api/log`, log('rr', 'before'))).status, 200);
  await c.next('the log before', (m) => m.type === 'logs');
  await redis.stop();
  await c.next('status unavailable', (m) => m.type === 'status' && m.queue === 'unavailable', 10_000);
  await redis.start();
  await c.next('status available', (m) => m.type === 'status' && m.queue === 'available', 15_000);
  await waitFor('ingest to work again', async () => (await postJson(`${logd.url}/api/log`, log('rr', 'after'))).status === 200, 15_000);
  await waitFor('the log after the restart', () => c.logs().some((l) => l.message === 'after'), 5000);
  t.same(c.logs().map((l) => l.message), ['before', 'after'], 'no log twice, none lost');
  t.same(logd.children('http'), worker, 'the worker did not crash');

  const other = await openTail(logd.url);
  await logd.stop('SIGTERM');
  t.equal((await c.closed).code, 1001, 'SIGTERM: going away');
  t.equal((await other.closed).code, 1001, 'to every tail');
});
