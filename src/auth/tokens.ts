/**
 * Bearer tokens with scopes. Only SHA-256 hashes are stored (tokens are 256
 * random bits, so a fast hash is enough: there is nothing to brute-force),
 * in the Redis hash `logd:tokens`, because ingest must keep authenticating
 * while PostgreSQL is down and it needs Redis anyway. A token reads
 * `logd_<id>_<secret>`: the id finds the record, the hash of the whole token
 * is compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RedisClient } from '../connections';

export const SCOPES = ['ingest', 'read', 'admin'] as const;
export type TokenScope = (typeof SCOPES)[number];

export const TOKENS_KEY = 'logd:tokens';
/**
 * Bumped on every change, so workers reload only when something changed. Its
 * hash tag is the tokens key's whole name: on a Redis Cluster both are on one
 * slot, so a change and its bump are one MULTI.
 */
export const TOKENS_VERSION_KEY = '{logd:tokens}:version';
/** Every change is announced here too, so workers reload at once. */
export const TOKENS_CHANNEL = 'logd:tokens:changed';

export interface TokenRecord {
  id: string;
  name: string;
  scopes: TokenScope[];
  /** hex SHA-256 of the whole token */
  hash: string;
  created_at: string;
  revoked_at?: string;
}

const TOKEN_RE = /^logd_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$/;

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');

/** The id part of a well-formed token, else undefined. */
export const tokenId = (token: string): string | undefined => TOKEN_RE.exec(token)?.[1];

/** Whether `token` is the one `record` was made for (constant time). */
export function matches(record: TokenRecord, token: string): boolean {
  const a = Buffer.from(hashToken(token), 'hex');
  const b = Buffer.from(record.hash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function createToken(redis: RedisClient, name: string, scopes: TokenScope[]): Promise<{ token: string; record: TokenRecord }> {
  const id = randomBytes(6).toString('hex');
  const token = `logd_${id}_${randomBytes(32).toString('base64url')}`;
  const record: TokenRecord = { id, name, scopes, hash: hashToken(token), created_at: new Date().toISOString() };
  await redis.multi().hset(TOKENS_KEY, id, JSON.stringify(record)).incr(TOKENS_VERSION_KEY).publish(TOKENS_CHANNEL, id).exec();
  return { token, record };
}

export async function listTokens(redis: RedisClient): Promise<TokenRecord[]> {
  const all = await redis.hgetall(TOKENS_KEY);
  return Object.values(all).map((j) => JSON.parse(j) as TokenRecord).sort((a, b) => a.created_at.localeCompare(b.created_at));
}

export async function activeTokens(redis: RedisClient): Promise<number> {
  return (await listTokens(redis)).filter((r) => !r.revoked_at).length;
}

/** Marks a token revoked (kept for the record); false when there is no such id. */
export async function revokeToken(redis: RedisClient, id: string): Promise<boolean> {
  const json = await redis.hget(TOKENS_KEY, id);
  if (!json) return false;
  const record = JSON.parse(json) as TokenRecord;
  record.revoked_at ??= new Date().toISOString();
  await redis.multi().hset(TOKENS_KEY, id, JSON.stringify(record)).incr(TOKENS_VERSION_KEY).publish(TOKENS_CHANNEL, id).exec();
  return true;
}
