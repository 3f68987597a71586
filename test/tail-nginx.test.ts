/**
 * The live tail and the console through the shipped nginx (conf/nginx.conf
 * rendered by scripts/render-nginx.sh): the WebSocket upgrade is proxied, a
 * log posted through nginx reaches a tail opened through nginx, the token in
 * the subprotocol stays out of the access log, and GET / for a browser and
 * the console's assets reach logd.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { LOGD_BIN, serviceEnv, startLogd } from './helpers/logd';
import { frontDoorServices, httpRequest, startNginx } from './helpers/nginx';
import { waitFor } from './helpers/services';
import { openTail, refusal } from './helpers/tail';

t.test('live tail and console through nginx', async (t) => {
  const { redis, pg, instances, nginxes } = await frontDoorServices(t);
  const logd = await startLogd({ redis, pg, workers: 1, env: { LOGD_AUTH_MODE: 'token' } });
  instances.push(logd);
  const nginx = await startNginx({ upstreams: [`127.0.0.1:${logd.port}`] });
  nginxes.push(nginx);
  const token = (scope: string): string => {
    const r = spawnSync(process.execPath, [LOGD_BIN, 'token', 'create', '--name', `ngx-${scope}`, '--scope', scope], { env: { ...process.env, ...serviceEnv(redis, pg) }, encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  const read = token('read');
  const ingest = token('ingest');
  await waitFor('the worker to know the tokens', async () => (await httpRequest(`${nginx.url}/api/stats`, { headers: { authorization: `Bearer ${read}` } })).status === 200, 10_000);

  await t.test('a tail opened through nginx gets a log posted through nginx', async (t) => {
    const tail = await openTail(nginx.url, 'device_id=ngx', { protocols: ['logd.v1', `logd.token.${read}`] });
    t.equal(tail.ws.protocol, 'logd.v1', 'the subprotocol logd selected, through nginx');
    const posted = await httpRequest(`${nginx.url}/api/log`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ingest}` },
      body: JSON.stringify({ device_id: 'ngx', log_level: 'INFO', message: 'through the front door' }),
    });
    t.equal(posted.status, 200);
    const got = await tail.next('the log', (m) => m.type === 'logs');
    t.equal(got.logs[0].message, 'through the front door');
    const withHeader = await openTail(nginx.url, 'device_id=ngx', { headers: { authorization: `Bearer ${read}` } });
    t.equal(withHeader.messages[0].type, 'ready', 'with an Authorization header too');
    tail.ws.close();
    withHeader.ws.close();
    await Promise.all([tail.closed, withHeader.closed]);
    const line = await waitFor('the tail in the access log', () => nginx.accessLog().find((e) => e.uri.startsWith('/api/tail') && e.status === 101), 5000);
    t.equal(line.uri, '/api/tail?device_id=ngx');
    t.notMatch(nginx.errorLog(), /upstream timed out/, 'no upstream timeout');
    const logs = nginx.accessLog().map((e) => JSON.stringify(e)).join('\n');
    t.notOk(logs.includes(read.slice(18)), 'the token is not in the access log');
  });

  await t.test('refusals come through as logd answered them', async (t) => {
    const none = await refusal(openTail(nginx.url));
    t.equal(none.status, 401);
    t.equal(none.body.code, 'LOGD_UNAUTHORIZED');
    const bad = await refusal(openTail(nginx.url, 'level=LOUD', { headers: { authorization: `Bearer ${read}` } }));
    t.equal(bad.status, 422);
    t.equal(bad.body.code, 'LOGD_VALIDATION_FAILED');
    const plain = await httpRequest(`${nginx.url}/api/tail`, { headers: { authorization: `Bearer ${read}` } });
    t.equal(plain.status, 426, 'a GET without Upgrade');
    t.equal(plain.body.code, 'LOGD_UPGRADE_REQUIRED');
  });

  await t.test('the console: its page at GET / for a browser, its assets', async (t) => {
    const page = await httpRequest(`${nginx.url}/`, { headers: { accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8', 'accept-encoding': 'gzip' } });
    t.equal(page.status, 200);
    t.match(page.headers['content-type'], /^text\/html/);
    const assets = [...page.text.matchAll(/(?:href|src)="(\/console\/[^"]+)"/g)].map((m) => m[1]);
    t.ok(assets.length >= 2, `the page names its assets (${assets.join(', ')})`);
    for (const a of assets) {
      const r = await httpRequest(`${nginx.url}${a}`, { headers: { 'accept-encoding': 'gzip' } });
      t.equal(r.status, 200, `${a} through nginx`);
      t.equal(r.headers['content-encoding'], 'gzip', `${a}: gzipped, as the browser accepts it`);
    }
    const probe = await httpRequest(`${nginx.url}/`, { headers: { accept: 'application/json' } });
    t.equal(probe.status, 401, 'an API client at / still gets the Elasticsearch probe, which needs a token');
  });
});
