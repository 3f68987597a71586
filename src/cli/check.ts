/** `logd check`: validates the configuration and connectivity, and says what is wrong in plain words. */
import pg from 'pg';
import { openWarning, type Config } from '../config';
import { pgConfig, withRedis } from '../connections';
import { redisWarnings } from '../queue/safety';
import { activeTokens } from '../auth/tokens';

const where = (host: string, port: number): string => (host.startsWith('/') ? `socket ${host}` : `${host}:${port}`);

export async function check(cfg: Config, out: NodeJS.WritableStream): Promise<number> {
  let problems = 0;
  const ok = (msg: string): void => { out.write(`ok       ${msg}\n`); };
  const warn = (msg: string): void => { out.write(`WARNING  ${msg}\n`); };
  const problem = (msg: string): void => { problems++; out.write(`PROBLEM  ${msg}\n`); };
  ok('configuration is valid');
  for (const w of openWarning(cfg)) warn(w);
  const r = cfg.redis;
  try {
    const [warnings, tokens] = await withRedis(cfg, 'logd:check', async (redis) => {
      await redis.ping();
      return Promise.all([redisWarnings(redis), activeTokens(redis)]);
    });
    ok(`Redis answers at ${where(r.host, r.port)}`);
    for (const w of warnings) problem(w);
    if (cfg.auth.mode === 'open') warn(`${tokens} active token${tokens === 1 ? '' : 's'}, not checked while auth.mode = "open"`);
    else if (tokens === 0) warn('no active token: every route but /health and the docs answers 401 (logd token create --name NAME --scope ingest|read|admin)');
    else ok(`authentication is on, ${tokens} active token${tokens === 1 ? '' : 's'}`);
  } catch (err) {
    problem(`cannot reach Redis at ${where(r.host, r.port)}: ${(err as Error).message}`);
  }
  const p = cfg.postgres;
  const client = new pg.Client(pgConfig(cfg));
  client.on('error', () => undefined);
  try {
    await client.connect();
    ok(`PostgreSQL answers at ${where(p.host, p.port)} (database ${p.database}, user ${p.user})`);
    const { rows } = await client.query<{ t: string }>("SELECT unnest(ARRAY['logs', 'logd_ingested']) AS t EXCEPT SELECT tablename FROM pg_tables WHERE schemaname = current_schema()");
    if (rows.length) problem(`the schema is not applied (missing ${rows.map((x) => x.t).join(', ')}): run \`logd migrate\``);
    else ok('the schema is applied');
  } catch (err) {
    problem(`cannot use PostgreSQL at ${where(p.host, p.port)} (database ${p.database}, user ${p.user}): ${(err as Error).message}`);
  } finally {
    await client.end().catch(() => undefined);
  }
  out.write(problems ? `${problems} problem${problems > 1 ? 's' : ''} found\n` : 'all good\n');
  return problems ? 1 : 0;
}
