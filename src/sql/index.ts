/** logd's SQL, one statement per file beside this one, read once at load. */
import { readFileSync } from 'node:fs';
import { rootPath } from '../paths';

const sql = (name: string): string => readFileSync(rootPath('src', 'sql', `${name}.sql`), 'utf8');

export const SQL = {
  addCounts: sql('add-counts'),
  claimEntries: sql('claim-entries'),
  deviceLogs: sql('device-logs'),
  devices: sql('devices'),
  dropRangeCounts: sql('drop-range-counts'),
  findIngested: sql('find-ingested'),
  histogram: sql('histogram'),
  leafCounts: sql('leaf-counts'),
  listPartitions: sql('list-partitions'),
  pruneIngested: sql('prune-ingested'),
  purgeChunk: sql('purge-chunk'),
  removeEmptyCounts: sql('remove-empty-counts'),
  searchLogs: sql('search-logs'),
  stats: sql('stats'),
  statsSince: sql('stats-since'),
} as const;
