/**
 * `logd storage`: the partitions of `logs`, oldest first, with their level
 * leaves, rows (from the hourly rollups, which count exactly the rows of
 * each hour and level), size on disk, their search indexes (open, pending,
 * building, built) and when retention drops them; then the totals, the last
 * drop and the next.
 */
import pg from 'pg';
import type { Config } from '../config';
import { pgConfig } from '../connections';
import { LOG_LEVELS } from '../model/levels';
import { expiry, storageState, units, type DropRecord, type StorageState } from '../storage/maintenance';
import { listPartitions } from '../storage/partitions';
import { searchStates } from '../storage/search-indexes';

const when = (t: number | null): string => (t === null || !Number.isFinite(t) ? '-' : new Date(t).toISOString().replace(':00.000Z', 'Z'));

/** 1536 -> "1.5 KiB" */
function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

const describeDrop = (d: DropRecord): string =>
  `${d.partition}${d.levels ? ` (${d.levels})` : ''}, ${d.rows} logs, ${bytes(d.bytes)}, by ${d.reason === 'budget' ? 'the disk budget' : `retention (${d.retentionDays} days)`} at ${when(d.at)}`;

/** The totals, the last drop and the next: what `logd storage` ends with and `logd status` shows. */
export const storageSummary = (s: StorageState, cfg: Config): string =>
  `storage    ${s.partitions} partitions, ${s.rows} logs, ${bytes(s.bytes)}${cfg.retention.max_bytes ? ` of the ${bytes(cfg.retention.max_bytes)} budget` : ''}; from ${when(s.oldest)} to ${when(s.newest)}\n`
  + `last drop  ${s.lastDrop ? describeDrop(s.lastDrop) : 'none'}\n`
  + `next drop  ${s.nextDrop === null ? 'none' : `${when(s.nextDrop)} (retention), once the stream holds nothing older`}\n`;

export async function storage(cfg: Config, out: NodeJS.WritableStream, now = Date.now()): Promise<number> {
  const client = new pg.Client(pgConfig(cfg));
  await client.connect();
  try {
    const partitions = await listPartitions(client);
    const { rows: hourly } = await client.query<{ t: string; log_level: string; n: string }>(
      'SELECT (extract(epoch FROM bucket) * 1000)::text AS t, log_level, n::text FROM logd_hourly_by_level',
    );
    const expires = new Map(units(cfg, partitions).map((u) => [u.leaf ?? u.partition, expiry(u)]));
    const rowsIn = (from: number, to: number, levels: (l: string) => boolean): number =>
      hourly.reduce((s, r) => (Number(r.t) >= from && Number(r.t) < to && levels(r.log_level) ? s + Number(r.n) : s), 0);
    const search = await searchStates(client, partitions, now);
    out.write(`${'partition'.padEnd(30)}${'from'.padEnd(19)}${'to'.padEnd(19)}${'levels'.padEnd(22)}${'logs'.padStart(12)}${'size'.padStart(12)}  ${'search'.padEnd(9)}expires\n`);
    for (const p of partitions) {
      const row = (name: string, levels: string, n: number, size: number, state: string, exp: number | undefined): void => {
        out.write(`${name.padEnd(30)}${when(Number.isFinite(p.from) ? p.from : null).padEnd(19)}${when(p.to).padEnd(19)}${levels.padEnd(22)}${String(n).padStart(12)}${bytes(size).padStart(12)}  ${state.padEnd(9)}${exp === undefined ? '' : when(exp)}\n`);
      };
      row(p.name, p.leaves.length ? 'by level:' : 'all', rowsIn(p.from, p.to, () => true), p.bytes, search.get(p) ?? '', expires.get(p));
      const listed = p.leaves.flatMap((l) => l.levels ?? []);
      for (const leaf of p.leaves) {
        const mine = (l: string): boolean => (leaf.levels ? leaf.levels.includes(l) : !listed.includes(l));
        const names = leaf.levels ?? ['DEFAULT', ...LOG_LEVELS.filter(mine)];
        row(`  ${leaf.name}`, names.join(','), rowsIn(p.from, p.to, mine), leaf.bytes, '', expires.get(leaf));
      }
    }
    const s = await storageState(client, cfg, now, partitions);
    out.write(`\n${storageSummary(s, cfg)}`);
    if (s.budgetDropping) out.write(`problem    disk budget: ${s.budgetDropping}\n`);
    return 0;
  } finally {
    await client.end();
  }
}
