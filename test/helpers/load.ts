/** A bounded load generator on loopback: every log carries a unique message, so losses and duplicates are countable. */
import { postJson } from './logd';

export interface LoadResult {
  /** messages of logs that got a 200 */
  acked: string[];
  /** statuses of refused requests and errors of failed ones */
  refused: Map<string, number>;
}

export interface Load {
  stop(): Promise<LoadResult>;
  /** logs acknowledged so far */
  ackedCount(): number;
}

/**
 * Starts `clients` loops posting batches of `perRequest` logs (or single logs
 * when 1) to `url` until stop() or `maxRequests` per client.
 */
export function startLoad(url: string, opts: { clients?: number; perRequest?: number; prefix: string; maxRequests?: number }): Load {
  const clients = opts.clients ?? 8;
  const per = opts.perRequest ?? 10;
  const max = opts.maxRequests ?? 100_000;
  const acked: string[] = [];
  const refused = new Map<string, number>();
  let running = true;
  const loop = async (c: number): Promise<void> => {
    for (let i = 0; running && i < max; i++) {
      const messages = Array.from({ length: per }, (_, j) => `${opts.prefix}-${c}-${i}-${j}`);
      const logs = messages.map((message) => ({ device_id: `${opts.prefix}-${c}`, log_level: 'INFO', message }));
      try {
        const r = per === 1 ? await postJson(`${url}/api/log`, logs[0]) : await postJson(`${url}/api/logs/batch`, { logs });
        if (r.status === 200) acked.push(...messages);
        else refused.set(String(r.status), (refused.get(String(r.status)) ?? 0) + 1);
      } catch (err) {
        const key = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
        refused.set(key, (refused.get(key) ?? 0) + 1);
        // Connection refused while logd restarts: don't spin.
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  };
  const loops = Array.from({ length: clients }, (_, c) => loop(c));
  return {
    ackedCount: () => acked.length,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return { acked, refused };
    },
  };
}
