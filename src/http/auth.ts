/**
 * Authentication of requests. In `auth.mode = "token"` (the default) every
 * route but the public ones needs a bearer token with its scope (`admin`
 * holds every scope), whether or not any token exists: revoking the last
 * token leaves logd closed, never open. `auth.mode = "open"` switches
 * authentication off, and only when configured so. No token, or an unknown or
 * revoked one: 401; a valid token without the route's scope: 403 (RFC 6750
 * insufficient_scope). The scheme name is case-insensitive (RFC 7235 §2.1).
 * Shippers that cannot send a bearer token may send the token as the
 * password of Basic authentication (RFC 7617; the user name is ignored,
 * and used as the token when the password is empty) or as an Elasticsearch
 * API key (`Authorization: ApiKey <token>`).
 * Each worker keeps the active tokens in memory and reloads them when
 * `logd token` announces a change on `logd:tokens:changed` (delivered before
 * the command returns, so a token can be used and is refused at once), and
 * when `{logd:tokens}:version` has changed (checked every second: a missed
 * announcement takes effect within about a second); while Redis is
 * unreachable the last known set stays in force.
 */
import { connectRedis, type RedisClient } from '../connections';
import { LogdError } from '../errors';
import { matches, tokenId, TOKENS_CHANNEL, TOKENS_KEY, TOKENS_VERSION_KEY, type TokenRecord } from '../auth/tokens';
import type { Logger } from '../log';
import type { Scope } from './routes';

const RELOAD_CHECK_MS = 1000;
const CREDENTIALS = /^(bearer|basic|apikey) +(\S+) *$/i;

/** The token an Authorization header carries, or ''. */
export function presentedToken(authorization: string): string {
  const m = CREDENTIALS.exec(authorization);
  if (!m) return '';
  if (m[1].toLowerCase() !== 'basic') return m[2];
  const pair = Buffer.from(m[2], 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  if (colon < 0) return '';
  return pair.slice(colon + 1) || pair.slice(0, colon);
}

export class Authenticator {
  private active = new Map<string, TokenRecord>();
  private version: string | null | undefined;
  private timer: NodeJS.Timeout | undefined;
  private changes: RedisClient | undefined;

  constructor(private readonly redis: RedisClient, private readonly log: Logger, private readonly open: boolean) {}

  /** Loads the tokens, then keeps them current. */
  async start(): Promise<void> {
    if (this.open) return;
    await this.refresh();
    const reload = (): void => void this.refresh().catch((err) => this.log.warn({ err: err.message }, 'cannot reload tokens; keeping the last known set'));
    this.timer = setInterval(reload, RELOAD_CHECK_MS);
    // A connection in subscriber mode takes no other command: its own. ioredis subscribes again after a reconnect.
    this.changes = this.redis.duplicate();
    this.changes.on('error', () => undefined); // the reload timer's warnings say it
    this.changes.on('message', reload);
    await connectRedis(this.changes);
    await this.changes.subscribe(TOKENS_CHANNEL);
  }

  stop(): void {
    clearInterval(this.timer);
    this.changes?.disconnect();
  }

  private async refresh(): Promise<void> {
    const version = await this.redis.get(TOKENS_VERSION_KEY);
    if (version === this.version) return;
    const all = await this.redis.hgetall(TOKENS_KEY);
    const active = new Map<string, TokenRecord>();
    for (const json of Object.values(all)) {
      const r = JSON.parse(json) as TokenRecord;
      if (!r.revoked_at) active.set(r.id, r);
    }
    this.active = active;
    this.version = version;
  }

  /** Throws LOGD_UNAUTHORIZED / LOGD_FORBIDDEN unless `authorization` grants `scope`. */
  check(scope: Scope, authorization: string): void {
    if (scope === 'public' || this.open) return;
    const token = presentedToken(authorization);
    const id = token ? tokenId(token) : undefined;
    const record = id ? this.active.get(id) : undefined;
    if (!record || !matches(record, token)) {
      const none = this.active.size === 0 ? '; no token exists yet: create one with `logd token create`' : '';
      throw new LogdError('LOGD_UNAUTHORIZED', `${token ? 'the bearer token is not valid' : 'this route needs a bearer token (Authorization: Bearer <token>)'}${none}`);
    }
    if (!record.scopes.includes(scope) && !record.scopes.includes('admin')) {
      throw new LogdError('LOGD_FORBIDDEN', `the token lacks the "${scope}" scope`);
    }
  }
}
