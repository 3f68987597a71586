/**
 * Positions of a live tail in the queue's streams. With one shard (the
 * stream `logs:stream`) a position is a stream entry ID, `<ms>-<seq>`.
 * Sharded (queue.shards > 1, or a Redis Cluster) it is one entry ID per
 * shard, in shard order, joined by ",":
 *
 *   1733220000000-0,1733220000123-4,0-0
 *
 * and means: every entry of shard i up to its ID was delivered (or counted as
 * skipped). `after=` also takes one ID alone: that ID on every shard.
 */

/** Longest `after`: 1024 shards (queue.shards' maximum) of 41 characters, and the commas. */
export const MAX_POSITION_LENGTH = 1024 * 42 - 1;

/** A stream entry ID compared with another: <0, 0, >0. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-');
  const [bm, bs] = b.split('-');
  if (am !== bm) return Number(am) - Number(bm);
  return as.length !== bs.length ? as.length - bs.length : as < bs ? -1 : as > bs ? 1 : 0;
}

/** The position just before entry `id`: an exclusive start that reads `id` first. */
export function justBefore(id: string): string {
  const [ms, seq] = id.split('-');
  if (seq !== '0') return `${ms}-${BigInt(seq) - 1n}`;
  return `${Number(ms) - 1}-18446744073709551615`;
}

/** A position (entry IDs already checked) as one ID per shard: `shards` IDs, or one ID for every shard; undefined when it is neither. */
export function parsePosition(text: string, shards: number): string[] | undefined {
  const ids = text.split(',');
  if (ids.length === shards) return ids;
  return ids.length === 1 ? new Array<string>(shards).fill(ids[0]) : undefined;
}

export const formatPosition = (ids: readonly string[]): string => ids.join(',');
