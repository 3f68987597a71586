/** Bearer tokens: closed with no token, every route x every scope, revocation down to none, and tokens never logged. */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ROUTES } from '../src/http/routes';
import { rawRequest } from './helpers/fuzz';
import { waitFor } from './helpers/services';
import { LOGD_BIN, request, serviceEnv, startStack, type Reply } from './helpers/logd';

const SCOPES = ['ingest', 'read', 'admin'] as const;

/** A token's id and secret, by position: the base64url secret may itself contain '_'. */
function tokenParts(token: string): { id: string; secret: string } {
  const m = /^logd_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) throw new Error(`not a token: ${token}`);
  return { id: m[1], secret: m[2] };
}

t.test('authentication', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 2, env: { LOGD_LOG_LEVEL: 'debug', LOGD_AUTH_MODE: 'token' } });
  const cli = (...args: string[]) => spawnSync(process.execPath, [LOGD_BIN, 'token', ...args], { env: { ...process.env, ...serviceEnv(redis, pg) }, encoding: 'utf8', timeout: 20_000 });
  const call = (route: (typeof ROUTES)[number], token?: string, fresh = false) => {
    const query = route.method === 'delete' ? '?device_id=auth-dev' : route.path === '/api/histogram' ? `?since=${new Date(Date.now() - 3_600_000).toISOString()}` : '';
    const path = route.path.replace(/:[a-z_]+/g, 'auth-dev') + query;
    const body = route.path === '/api/logs/batch'
      ? JSON.stringify({ logs: [{ device_id: 'auth-dev', log_level: 'INFO', message: 'm' }] })
      : route.path === '/loki/api/v1/push'
        ? JSON.stringify({ streams: [{ stream: { host: 'auth-dev' }, values: [[`${Date.now()}000000`, 'm']] }] })
        : JSON.stringify({ device_id: 'auth-dev', log_level: 'INFO', message: 'm' });
    return request(`${logd.url}${path}`, {
      method: route.method.toUpperCase(),
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(route.method === 'post' ? { 'content-type': 'application/json' } : {}),
        ...(fresh ? { connection: 'close' } : {}),
      },
      ...(route.method === 'post' ? { body } : {}),
    });
  };

  await t.test('closed while no token exists', async (t) => {
    const answers = await Promise.all(ROUTES.map(async (route) => [route, (await call(route)).status] as const));
    const wrong = answers.filter(([route, status]) => (route.scope === 'public' ? [401, 403].includes(status) : status !== 401));
    t.same(wrong.map(([r, s]) => `${r.method} ${r.path}: ${s}`), [], 'public routes answer, every other one 401');
    t.match(logd.output(), /no active token exists/, 'the start-up log says how to create one');
  });

  const tokens: Record<string, string> = {};
  for (const scope of SCOPES) {
    const r = cli('create', '--name', `t-${scope}`, '--scope', scope);
    t.equal(r.status, 0, r.stderr);
    tokens[scope] = r.stdout.trim();
    t.match(tokens[scope], /^logd_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
  }
  // Each worker reloads tokens within about a second of a change; 20 answers
  // in a row on new connections (spread over the workers by the kernel) say all have.
  const allWorkers = (what: string, route: (typeof ROUTES)[number], token: string | undefined, ok: (status: number) => boolean) =>
    waitFor(`every worker to ${what}`, async () => {
      for (let i = 0; i < 20; i++) if (!ok((await call(route, token, true)).status)) return false;
      return true;
    }, 10_000);
  const ingestRoute = ROUTES.find((r) => r.scope === 'ingest')!;
  await allWorkers('know the last token created', ingestRoute, tokens.admin, (s) => s === 200);
  await allWorkers('refuse requests without a token', ingestRoute, undefined, (s) => s === 401);

  await t.test('every route x every scope', async (t) => {
    // logd's code in the route's error shape: logd's JSON, or an OTLP google.rpc.Status' ErrorInfo; Loki's text
    // and Elasticsearch's error carry none, so there the answer must still say something.
    const refused = (r: Reply, route: (typeof ROUTES)[number], code: string, what: string): void => {
      const got = typeof r.body?.code === 'string' ? r.body.code : r.body?.details?.find((d: { reason?: string }) => d.reason)?.reason;
      if (got !== undefined || !route.reply) t.equal(got, code, what);
      else t.ok(r.text.trim().length > 0, `${what}, in the protocol's shape: ${r.text.slice(0, 100)}`);
    };
    for (const route of ROUTES) {
      const name = `${route.method.toUpperCase()} ${route.path}`;
      const none = await call(route);
      if (route.scope === 'public') {
        t.notOk([401, 403].includes(none.status), `${name} is public`);
        continue;
      }
      t.equal(none.status, 401, `${name} without a token: 401`);
      refused(none, route, 'LOGD_UNAUTHORIZED', `${name} without a token`);
      t.match(none.headers.get('www-authenticate'), /(^|, )Bearer realm="logd"/);
      const garbage = await call(route, 'logd_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
      t.equal(garbage.status, 401, `${name} with an unknown token: 401`);
      const forged = await call(route, `${tokens.admin.slice(0, -1)}${tokens.admin.endsWith('A') ? 'B' : 'A'}`);
      t.equal(forged.status, 401, `${name} with a known id and a wrong secret: 401`);
      for (const scope of SCOPES) {
        const r = await call(route, tokens[scope]);
        // A WebSocket route answers a plain GET, once authorized, 426 LOGD_UPGRADE_REQUIRED.
        if (scope === route.scope || scope === 'admin') t.ok(r.status < 400 || r.body?.code === 'LOGD_UPGRADE_REQUIRED', `${name} with ${scope}: ${r.status}`);
        else {
          t.equal(r.status, 403, `${name} with ${scope}: 403`);
          refused(r, route, 'LOGD_FORBIDDEN', `${name} with ${scope}`);
          t.match(r.headers.get('www-authenticate'), /insufficient_scope/);
        }
      }
    }
  });

  await t.test('list and revoke', async (t) => {
    const list = cli('list');
    t.equal(list.status, 0);
    t.match(list.stdout, /\tt-ingest\tingest\tcreated \S+\tactive/);
    t.match(list.stdout, /3 active, 0 revoked/);
    t.notMatch(list.stdout, /logd_[0-9a-f]{12}_/, 'list never shows a token');
    const { id } = tokenParts(tokens.ingest);
    const revoke = cli('revoke', id);
    t.equal(revoke.status, 0);
    await allWorkers('refuse the revoked token', ingestRoute, tokens.ingest, (s) => s === 401);
    t.equal((await call(ingestRoute, tokens.admin)).status, 200, 'other tokens still work');
    t.equal(cli('revoke', 'ffffffffffff').status, 1, 'revoking an unknown id fails');
    t.equal(cli('create', '--name', 'x', '--scope', 'root').status, 2, 'unknown scope refused');
  });

  await t.test('the scheme name is case-insensitive; two Authorization headers are refused', async (t) => {
    const url = `${logd.url}/api/stats`;
    const codes: number[] = [];
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) codes.push((await request(url, { headers: { authorization: `${scheme} ${tokens.admin}` } })).status);
    t.same(codes, [200, 200, 200]);
    // fetch would join two values into one header: a raw request sends them apart.
    const r = await rawRequest(logd.port, `GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.admin}\r\nAuthorization: Bearer ${tokens.read}\r\n\r\n`);
    t.equal(r.response?.status, 400);
    t.match(r.response?.body.toString(), /LOGD_BAD_REQUEST/);
  });

  await t.test('a token also as the password of Basic authentication or as an ApiKey, for shippers without bearer tokens', async (t) => {
    const url = `${logd.url}/api/stats`;
    const basic = (pair: string): string => `Basic ${Buffer.from(pair).toString('base64')}`;
    const status = async (authorization: string, to = url): Promise<number> => (await request(to, { headers: { authorization } })).status;
    t.equal(await status(basic(`logd:${tokens.read}`)), 200, 'the password is the token');
    t.equal(await status(basic(`${tokens.read}:`)), 200, 'an empty password: the user name is the token');
    t.equal(await status(`ApiKey ${tokens.read}`), 200);
    t.equal(await status(basic('logd:wrong')), 401);
    t.equal(await status(basic(`${tokens.read}`)), 401, 'no colon: not a user-password pair');
    t.equal(await status(`ApiKey ${tokens.read}`, `${logd.url}/metrics`), 403, 'the scope still applies');
    t.equal(await status(`Digest ${tokens.read}`), 401, 'other schemes are not credentials');
  });

  await t.test('a token works, and is refused, as soon as `logd token` returns', async (t) => {
    const fresh = cli('create', '--name', 'now', '--scope', 'ingest').stdout.trim();
    const used = await Promise.all(Array.from({ length: 10 }, () => call(ingestRoute, fresh, true)));
    t.same(used.map((r) => r.status), Array(10).fill(200), 'accepted by every worker at once');
    t.equal(cli('revoke', tokenParts(fresh).id).status, 0);
    const refused = await Promise.all(Array.from({ length: 10 }, () => call(ingestRoute, fresh, true)));
    t.same(refused.map((r) => r.status), Array(10).fill(401), 'refused by every worker at once');
  });

  await t.test('revoking the last token leaves logd closed', async (t) => {
    for (const scope of ['read', 'admin'] as const) t.equal(cli('revoke', tokenParts(tokens[scope]).id).status, 0, `revoke ${scope}`);
    t.match(cli('list').stdout, /0 active, 4 revoked/);
    await allWorkers('refuse the revoked admin token', ingestRoute, tokens.admin, (s) => s === 401);
    const after = await Promise.all(ROUTES.filter((r) => r.scope !== 'public').map(async (route) => (await call(route, undefined, true)).status));
    t.same([...new Set(after)], [401], 'every non-public route answers 401 without a token');
    t.equal((await call(ingestRoute, tokens.ingest, true)).status, 401, 'a token revoked earlier stays refused');
  });

  t.test('tokens never appear in logd\'s logs', async (t) => {
    const leaked = Object.values(tokens).filter((token) => logd.output().includes(tokenParts(token).secret));
    t.same(leaked, [], 'no secret in the output');
  });
});
