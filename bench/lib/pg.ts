/**
 * A private PostgreSQL for benchmarks (the tests' launcher, test/helpers),
 * tuned the way a server holding 10 million logs would be: the tests'
 * defaults (128 MB shared_buffers) would measure a cache-starved database.
 * Durability settings stay as the launcher sets them (fsync off): COPY and
 * reads are CPU-bound here; compare ratios measured in one run.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../../test/helpers/services';

export const ROOT = path.resolve(__dirname, '..', '..');

const SETTINGS: Record<string, string> = {
  shared_buffers: '2GB',
  effective_cache_size: '8GB',
  maintenance_work_mem: '1GB',
  work_mem: '32MB',
  max_wal_size: '8GB',
  checkpoint_timeout: '30min',
  // Index builds of a 10M-row table use both cores.
  max_parallel_maintenance_workers: '2',
};

export async function startBenchPostgres(): Promise<PostgresServer> {
  const server = await startPostgres();
  for (const [name, value] of Object.entries(SETTINGS)) await server.query(`ALTER SYSTEM SET ${name} = '${value}'`);
  await server.stop();
  await server.start();
  return server;
}

export async function connect(server: PostgresServer): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  return client;
}

export const schemaSql = (): string => readFileSync(path.join(ROOT, 'schema.sql'), 'utf8');

/**
 * CPU time (user + system) a PostgreSQL backend has used so far, in ms, from
 * /proc: unlike wall time, barely moved by other processes sharing the cores.
 */
export function backendCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Wall time of fn, in ms. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};
