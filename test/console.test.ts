/**
 * The console's serving: GET / answers a browser (Accept: text/html) with
 * the console's page under a strict Content-Security-Policy, without a token
 * even when tokens are required, while every other client still gets
 * Elasticsearch's root probe; the hashed assets are cached for good and sent
 * gzipped to clients that take it; an unknown path stays a JSON 404 for a
 * browser too; the built assets stay under their size budget; and GET
 * /api/devices lists known devices by prefix.
 */
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { successor } from '../src/read/devices';
import { waitFor } from './helpers/services';
import { LOGD_BIN, postJson, request, ROOT, serviceEnv, startStack, waitRows } from './helpers/logd';

const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
const ASSETS = path.join(ROOT, 'dist', 'assets', 'console');
/** The console's whole download, gzipped. */
const BUDGET_GZIP_BYTES = 250 * 1024;

t.test('the built console assets stay under their gzipped budget', async (t) => {
  const manifest = JSON.parse(readFileSync(path.join(ASSETS, 'manifest.json'), 'utf8')) as Record<string, string>;
  t.same(Object.keys(manifest).sort(), ['app.css', 'app.js']);
  let total = 0;
  for (const name of Object.values(manifest)) {
    t.match(name, /^app-[A-Z0-9]{8}\.(js|css)$/, `${name} has a content hash`);
    const gz = path.join(ASSETS, `${name}.gz`);
    t.same(gunzipSync(readFileSync(gz)), readFileSync(path.join(ASSETS, name)), `${name}.gz is its gzip`);
    total += statSync(gz).size;
  }
  t.ok(total < BUDGET_GZIP_BYTES, `${total} bytes gzipped, under ${BUDGET_GZIP_BYTES}`);
});

t.test('successor: the least string above every string with the prefix', async (t) => {
  t.equal(successor('ab'), 'ac');
  t.equal(successor('a\u{10ffff}'), 'b');
  t.equal(successor('\u{d7ff}'), '\u{e000}');
  t.equal(successor('x\u{1f600}'), 'x\u{1f601}');
  t.equal(successor('\u{10ffff}'), undefined);
});

t.test('serving the console', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1, env: { LOGD_AUTH_MODE: 'token' } });
  const manifest = JSON.parse(readFileSync(path.join(ASSETS, 'manifest.json'), 'utf8')) as Record<string, string>;

  await t.test('GET / with Accept text/html: the page, public, under a strict policy', async (t) => {
    const r = await request(`${logd.url}/`, { headers: { accept: BROWSER_ACCEPT } });
    t.equal(r.status, 200, 'no token needed');
    t.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    t.equal(r.headers.get('cache-control'), 'no-cache');
    t.equal(r.headers.get('x-content-type-options'), 'nosniff');
    t.equal(r.headers.get('x-elastic-product'), null);
    const csp = r.headers.get('content-security-policy') ?? '';
    t.match(csp, /default-src 'none'/);
    t.match(csp, /script-src 'self'(;|$)/, 'no inline script');
    t.match(csp, /style-src 'self'(;|$)/, 'no inline style');
    t.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${logd.port} wss://127\\.0\\.0\\.1:${logd.port}(;|$)`), 'the API and its WebSocket on this host only');
    t.match(csp, /frame-ancestors 'none'/);
    t.match(r.text, `<script defer src="/console/${manifest['app.js']}"></script>`);
    t.match(r.text, `<link rel="stylesheet" href="/console/${manifest['app.css']}">`);
    t.notMatch(r.text, /<script>|<style>| on[a-z]+=/i, 'nothing inline');
    const head = await request(`${logd.url}/`, { method: 'HEAD', headers: { accept: 'text/html' } });
    t.equal(head.status, 200);
    t.equal(head.text, '');
  });

  await t.test('a Host header that is not a host is left out of the policy', async (t) => {
    const csp = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: logd.port, path: '/', headers: { accept: 'text/html', host: "x; script-src 'unsafe-inline'" } }, (res) => {
        res.resume();
        resolve(String(res.headers['content-security-policy']));
      }).on('error', reject);
    });
    t.match(csp, /connect-src 'self';/);
    t.notMatch(csp, /unsafe-inline/);
  });

  await t.test('GET / for any other client: still the Elasticsearch probe and its token', async (t) => {
    for (const accept of [undefined, '*/*', 'application/json', 'application/vnd.elasticsearch+json; compatible-with=8']) {
      const r = await request(`${logd.url}/`, { headers: accept ? { accept } : {} });
      t.equal(r.status, 401, `Accept ${accept}: 401`);
      t.match(r.body, { error: { type: 'security_exception' }, status: 401 }, 'in Elasticsearch\'s shape');
    }
  });

  await t.test('assets: immutable, typed, gzipped on request', async (t) => {
    for (const [logical, name] of Object.entries(manifest)) {
      const type = logical.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8';
      const plain = await fetch(`${logd.url}/console/${name}`, { headers: { 'accept-encoding': 'identity' } });
      t.equal(plain.status, 200);
      t.equal(plain.headers.get('content-type'), type);
      t.equal(plain.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      t.equal(plain.headers.get('content-encoding'), null);
      t.equal(plain.headers.get('vary'), 'accept-encoding');
      t.same(Buffer.from(await plain.arrayBuffer()), readFileSync(path.join(ASSETS, name)));
      // fetch would decode gzip itself: node:http shows the bytes as sent.
      const { encoding, body } = await new Promise<{ encoding?: string; body: Buffer }>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: logd.port, path: `/console/${name}`, headers: { 'accept-encoding': 'gzip, deflate, br' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
        }).on('error', reject);
      });
      t.equal(encoding, 'gzip');
      t.same(gunzipSync(body), readFileSync(path.join(ASSETS, name)), `${name} gzipped`);
      const refused = await fetch(`${logd.url}/console/${name}`, { headers: { 'accept-encoding': 'gzip;q=0' } });
      t.equal(refused.headers.get('content-encoding'), null, 'gzip;q=0 gets the plain file');
      await refused.arrayBuffer();
    }
    const missing = await request(`${logd.url}/console/app-XXXXXXXX.js`);
    t.equal(missing.status, 404);
    t.equal(missing.body.code, 'LOGD_NOT_FOUND');
    const traversal = await request(`${logd.url}/console/..%2Fdocs%2Fmanifest.json`);
    t.equal(traversal.status, 404, 'only the build\'s own names');
    const docs = await fetch(`${logd.url}/docs/assets/swagger-ui.css`);
    t.equal(docs.status, 200, 'the docs assets share the same serving');
    t.equal(docs.headers.get('content-encoding'), 'gzip', 'fetch takes gzip');
    t.equal(docs.headers.get('cache-control'), 'public, max-age=86400');
    await docs.arrayBuffer();
  });

  await t.test('an unknown path stays a JSON 404 for a browser', async (t) => {
    const r = await request(`${logd.url}/nope`, { headers: { accept: BROWSER_ACCEPT } });
    t.equal(r.status, 404);
    t.match(r.headers.get('content-type'), /^application\/json/);
    t.equal(r.body.code, 'LOGD_NOT_FOUND');
  });

  await t.test('GET /api/devices: by prefix, in order, read scope', async (t) => {
    const token = (scope: string): string => {
      const r = spawnSync(process.execPath, [LOGD_BIN, 'token', 'create', '--name', `console-${scope}`, '--scope', scope], {
        env: { ...process.env, ...serviceEnv(redis, pg) }, encoding: 'utf8', timeout: 20_000,
      });
      t.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    const [ingest, read] = [token('ingest'), token('read')];
    const ids = ['dev-b', 'dev_x', 'other', 'dev-a', '%p', 'dex'];
    await waitFor('the workers to know the new tokens', async () => (await postJson(`${logd.url}/api/logs/batch`, {
      logs: ids.map((device_id) => ({ device_id, log_level: 'INFO', message: 'hello' })),
    }, { authorization: `Bearer ${ingest}` })).status === 200);
    await waitRows(pg, ids.length);
    const devices = (query: string, bearer = read) => request(`${logd.url}/api/devices${query}`, { headers: { authorization: `Bearer ${bearer}` } });
    const cases: [string, string[]][] = [
      ['', ['%p', 'dev-a', 'dev-b', 'dev_x', 'dex', 'other']],
      ['?prefix=dev', ['dev-a', 'dev-b', 'dev_x']],
      ['?prefix=dev_', ['dev_x']],
      ['?prefix=%25', ['%p']],
      ['?prefix=dev-a', ['dev-a']],
      ['?prefix=dev-ab', []],
      ['?prefix=nothing', []],
      ['?limit=2', ['%p', 'dev-a']],
      ['?prefix=de&limit=3', ['dev-a', 'dev-b', 'dev_x']],
    ];
    for (const [query, want] of cases) {
      const r = await devices(query);
      t.equal(r.status, 200, query);
      t.same(r.body, { devices: want }, `${query || 'no query'}: ${want.join(' ')}`);
    }
    const tooMany = await devices('?limit=101');
    t.equal(tooMany.status, 422);
    t.same(tooMany.body.detail.map((i: { loc: string[] }) => i.loc), [['query', 'limit']]);
    t.equal((await devices('?prefix=a&x=1')).status, 422, 'unknown parameters refused');
    t.equal((await request(`${logd.url}/api/devices`)).status, 401, 'no token: 401');
    t.equal((await devices('', ingest)).status, 403, 'the ingest scope: 403');
  });
});
