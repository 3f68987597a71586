/** `logd dlq list` and `logd dlq replay`: inspect and re-queue dead-letter entries. */
import type { Config } from '../config';
import { Queue } from '../queue/stream';
import { withRedis } from '../connections';

const PREVIEW_CHARS = 160;

export function dlq(cfg: Config, action: string, args: string[], limit: number, out: NodeJS.WritableStream): Promise<number> {
  return withRedis(cfg, 'logd:cli', async (redis) => {
    const queue = new Queue(redis, cfg);
    if (action === 'list') {
      const entries = await queue.deadList(limit);
      for (const d of entries) {
        const preview = (d.rows ?? '').split('\n')[0].slice(0, PREVIEW_CHARS);
        out.write(`${d.id}\tentry=${d.entry}\tlogs=${d.logs}\tfailed_at=${d.failedAt}\terror=${d.error}\n`);
        if (preview) out.write(`\tfirst row: ${preview}\n`);
      }
      out.write(`${entries.length} of ${await queue.deadLetters()} dead-letter entries shown\n`);
      return 0;
    }
    const ids = args.length ? args : (await queue.deadList(limit)).map((d) => d.id);
    let failed = 0;
    for (const id of ids) {
      try {
        out.write(`${id}\tre-queued as ${await queue.replay(id)}\n`);
      } catch (err) {
        failed++;
        const msg = (err as Error).message;
        out.write(`${id}\tnot re-queued: ${msg.includes('LOGDNOENTRY') ? 'no such dead-letter entry' : msg.includes('LOGDNOTFRAME') ? 'it holds no logs (not a frame)' : msg}\n`);
      }
    }
    out.write(`${ids.length - failed} re-queued, ${failed} not\n`);
    return failed ? 1 : 0;
  });
}
