/** `logd purge --device D [--until T]`: deletes a device's logs (src/storage/purge.ts) and says how many went. */
import pg from 'pg';
import { Versions } from '../cache/versions';
import type { Config } from '../config';
import { pgConfig, withRedis } from '../connections';
import { parseTime } from '../http/query';
import { purge } from '../storage/purge';

/** The most characters of a device_id (logs.device_id is VARCHAR(50)). */
const MAX_DEVICE = 50;

export async function purgeCommand(cfg: Config, opts: { device?: string; until?: string }, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const device = opts.device ?? '';
  const chars = [...device].length;
  if (chars < 1 || chars > MAX_DEVICE || device.includes('\u0000')) {
    err.write(`logd purge: --device must be a device_id of 1 to ${MAX_DEVICE} characters${opts.device === undefined ? '' : `, got ${JSON.stringify(device)}`}\n`);
    return 2;
  }
  const until = opts.until === undefined ? undefined : parseTime(opts.until);
  if (opts.until !== undefined && until === undefined) {
    err.write(`logd purge: --until must be an ISO-8601 date-time (no offset = UTC) or epoch milliseconds, got ${JSON.stringify(opts.until)}\n`);
    return 2;
  }
  const client = new pg.Client(pgConfig(cfg));
  await client.connect();
  try {
    const deleted = await withRedis(cfg, 'logd:cli', (redis) => purge(client, device, until, { versions: new Versions(redis, cfg) }));
    out.write(`deleted ${deleted} logs of device ${device}${opts.until === undefined ? '' : ` created before ${opts.until}`}\n`);
    return 0;
  } finally {
    await client.end();
  }
}
