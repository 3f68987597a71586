/** Applies schema.sql (idempotent) under an advisory lock, so instances starting together don't race. */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Config } from '../config';
import { pgConfig } from '../connections';
import { rootPath } from '../paths';

/** Arbitrary, fixed: the advisory lock key of logd's migrations. */
const MIGRATION_LOCK = 4_812_990_117;

export async function migrate(cfg: Config): Promise<void> {
  const client = new pg.Client(pgConfig(cfg));
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(readFileSync(rootPath('schema.sql'), 'utf8'));
  } finally {
    await client.end();
  }
}

/** Creates the configured database if it does not exist (embedded mode owns its cluster). */
export async function ensureDatabase(cfg: Config): Promise<void> {
  const client = new pg.Client(pgConfig(cfg, 'postgres'));
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [cfg.postgres.database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(cfg.postgres.database)}`);
  } finally {
    await client.end();
  }
}
