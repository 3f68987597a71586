/** `logd token create|list|revoke`: manage bearer tokens (only their hashes are stored). */
import { createToken, listTokens, revokeToken, SCOPES, type TokenScope } from '../auth/tokens';
import type { Config } from '../config';
import { withRedis } from '../connections';

export async function token(cfg: Config, action: string, args: string[], opts: { name?: string; scope?: string }, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (action === 'create') {
    const scopes = (opts.scope ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (!opts.name || !scopes.length || bad.length) {
      err.write(`logd token create: --name and --scope (${SCOPES.join(', ')}, comma-separated) are required${bad.length ? `; unknown scope ${bad.join(', ')}` : ''}\n`);
      return 2;
    }
    const { token: secret, record } = await withRedis(cfg, 'logd:cli', (r) => createToken(r, opts.name!, scopes as TokenScope[]));
    out.write(`${secret}\n`);
    err.write(`token ${record.id} "${record.name}" created with scopes ${record.scopes.join(',')}; it is shown only this once\n`);
    return 0;
  }
  if (action === 'list') {
    const tokens = await withRedis(cfg, 'logd:cli', listTokens);
    for (const t of tokens) {
      out.write(`${t.id}\t${t.name}\t${t.scopes.join(',')}\tcreated ${t.created_at}\t${t.revoked_at ? `revoked ${t.revoked_at}` : 'active'}\n`);
    }
    out.write(`${tokens.filter((t) => !t.revoked_at).length} active, ${tokens.filter((t) => t.revoked_at).length} revoked\n`);
    return 0;
  }
  if (args.length !== 1) {
    err.write('usage: logd token revoke ID\n');
    return 2;
  }
  if (!(await withRedis(cfg, 'logd:cli', (r) => revokeToken(r, args[0])))) {
    err.write(`logd token revoke: no token with id ${args[0]}\n`);
    return 1;
  }
  out.write(`token ${args[0]} revoked\n`);
  return 0;
}
