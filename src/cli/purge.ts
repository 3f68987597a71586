/**
 * `logd purge --device D [--until T]`: deletes a device's logs
 * (src/storage/purge.ts) and says how many went. The flags are checked by
 * the same rules as DELETE /api/logs' query parameters.
 */
import pg from 'pg';
import { Versions } from '../cache/versions';
import type { Config } from '../config';
import { pgConfig, withRedis } from '../connections';
import { parseTime, queryParser } from '../http/query';
import { purgeQuerySchema } from '../http/query-schemas';
import { purge } from '../storage/purge';

const parsePurgeFlags = queryParser<{ device_id: string; until?: string }>(purgeQuerySchema);
const FLAG_OF: Record<string, string> = { device_id: '--device', until: '--until' };

export async function purgeCommand(cfg: Config, opts: { device?: string; until?: string }, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const flags = parsePurgeFlags(new URLSearchParams({ ...(opts.device === undefined ? {} : { device_id: opts.device }), ...(opts.until === undefined ? {} : { until: opts.until }) }).toString());
  if (!flags.ok) {
    for (const issue of flags.issues) err.write(`logd purge: ${FLAG_OF[String(issue.loc[1])] ?? issue.loc.join('.')}: ${issue.msg}\n`);
    return 2;
  }
  const { device_id: device, until } = flags.value;
  const client = new pg.Client(pgConfig(cfg));
  await client.connect();
  try {
    const deleted = await withRedis(cfg, 'logd:cli', (redis) => purge(client, device, until === undefined ? undefined : parseTime(until), { versions: new Versions(redis, cfg) }));
    out.write(`deleted ${deleted} logs of device ${device}${until === undefined ? '' : ` created before ${until}`}\n`);
    return 0;
  } finally {
    await client.end();
  }
}
