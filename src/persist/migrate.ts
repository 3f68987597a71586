/**
 * Applies schema.sql (idempotent) under an advisory lock, so instances
 * starting together don't race, after converting a database made before
 * partitioning (src/storage/upgrade.ts); readies the embedded cluster's
 * role and database first (ensureDatabase).
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Config } from '../config';
import { pgConfig } from '../connections';
import type { Logger } from '../log';
import { rootPath } from '../paths';
import { LEGACY, needsUpgrade, upgradeLegacy } from '../storage/upgrade';

/** Arbitrary, fixed: the advisory lock key of logd's migrations. */
const MIGRATION_LOCK = 4_812_990_117;

/**
 * The embedded cluster's superuser (`initdb -U`). logd itself connects as
 * postgres.user, which ensureDatabase keeps an unprivileged role.
 */
export const EMBEDDED_SUPERUSER = 'postgres';
/** A superuser that exists only while adoptOlderCluster runs: a session cannot rename its own role. */
const ADOPTER = 'logd_adopt';
/** SQLSTATE 28000 (invalid_authorization_specification): on the embedded trust socket, the role does not exist. */
export const NO_SUCH_ROLE = '28000';

export async function migrate(cfg: Config, log?: Logger): Promise<void> {
  const client = new pg.Client(pgConfig(cfg));
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const schema = readFileSync(rootPath('schema.sql'), 'utf8');
    if (await needsUpgrade(client)) {
      const t0 = Date.now();
      const moved = await upgradeLegacy(client, cfg, schema);
      log?.info({ ms: Date.now() - t0, moved }, `logs was one unpartitioned table: it is now the partition ${LEGACY} of the partitioned logs`);
    } else {
      await client.query(schema);
    }
  } finally {
    await client.end();
  }
}

async function withClient<T>(cfg: Config, user: string, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...pgConfig(cfg, database), user });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Makes the embedded cluster ready at every start (idempotent): the role
 * postgres.user may log in and nothing more (no superuser, no CREATEDB, no
 * CREATEROLE), and owns the configured database and its tables, so
 * schema.sql applies as that role (PostgreSQL 15: the public schema belongs
 * to pg_database_owner).
 */
export async function ensureDatabase(cfg: Config, log: Logger): Promise<void> {
  await adoptOlderCluster(cfg, log);
  const { user, database } = cfg.postgres;
  await withClient(cfg, EMBEDDED_SUPERUSER, 'postgres', async (c) => {
    const role = c.escapeIdentifier(user);
    const db = c.escapeIdentifier(database);
    if (!(await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [user])).rowCount) await c.query(`CREATE ROLE ${role}`);
    await c.query(`ALTER ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`);
    if ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount) await c.query(`ALTER DATABASE ${db} OWNER TO ${role}`);
    else await c.query(`CREATE DATABASE ${db} OWNER ${role}`);
    await c.query(`DROP ROLE IF EXISTS ${c.escapeIdentifier(ADOPTER)}`);
  });
  // In a cluster an older logd made, the tables belong to the superuser; ALTER TABLE takes their indexes and sequences along.
  await withClient(cfg, EMBEDDED_SUPERUSER, database, async (c) => {
    const { rows } = await c.query<{ name: string }>(
      "SELECT oid::regclass::text AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)",
      [user],
    );
    for (const { name } of rows) await c.query(`ALTER TABLE ${name} OWNER TO ${c.escapeIdentifier(user)}`);
  });
}

/**
 * Older logd ran `initdb -U <postgres.user>`: the application role was the
 * bootstrap superuser. Taking SUPERUSER from that role is not enough (it owns
 * the catalogs and built-in functions, so it could still call pg_read_file on
 * the cluster's files) and PostgreSQL 16 refuses it. Instead the role is
 * renamed to EMBEDDED_SUPERUSER, as `initdb -U postgres` would have named it,
 * and ensureDatabase creates postgres.user anew, unprivileged.
 */
async function adoptOlderCluster(cfg: Config, log: Logger): Promise<void> {
  try {
    await withClient(cfg, EMBEDDED_SUPERUSER, 'postgres', async () => undefined);
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== NO_SUCH_ROLE) throw err;
  }
  const { user } = cfg.postgres;
  log.warn({ role: user }, `the embedded PostgreSQL was made by an older logd, with ${user} as its superuser: renaming that role to ${EMBEDDED_SUPERUSER} and creating ${user} again without privileges`);
  await withClient(cfg, user, 'postgres', async (c) => {
    if (!(await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [ADOPTER])).rowCount) await c.query(`CREATE ROLE ${c.escapeIdentifier(ADOPTER)} SUPERUSER LOGIN`);
  });
  await withClient(cfg, ADOPTER, 'postgres', (c) => c.query(`ALTER ROLE ${c.escapeIdentifier(user)} RENAME TO ${c.escapeIdentifier(EMBEDDED_SUPERUSER)}`));
}
