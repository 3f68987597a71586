/** The persister process: the persister loop, and its heartbeat for /health. */
import os from 'node:os';
import type { Config } from '../config';
import { redisClient } from '../connections';
import type { Logger } from '../log';
import { trackBacklog } from '../metrics';
import { HEARTBEAT_MS, publishStatus } from '../queue/status';
import { Queue } from '../queue/stream';
import type { RoleMain } from '../supervisor/child';
import { Persister } from './persister';

/** Stable per instance, so a restarted persister finds the entries it had taken (its pending list). */
export function consumerName(cfg: Config): string {
  return process.env.WORKER_NAME || process.env.INSTANCE_NAME || `${os.hostname()}:${cfg.server.port}`;
}

export function persisterMain(cfg: Config, log: Logger): RoleMain {
  // XREADGROUP BLOCK holds its connection; acks, claims and the heartbeat share the other.
  const reader = redisClient(cfg, 'logd:persister-reader', true);
  const redis = redisClient(cfg, 'logd:persister');
  for (const r of [reader, redis]) r.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const consumer = consumerName(cfg);
  const queue = new Queue(redis, cfg);
  const persister = new Persister(cfg, queue, new Queue(reader, cfg), consumer, log);
  let done: Promise<void> = Promise.resolve();
  trackBacklog(() => queue.backlog());
  let timer: NodeJS.Timeout | undefined;
  const publish = (): void => {
    publishStatus(redis, cfg.redis.stream, consumer, { at: Date.now(), ...persister.stats })
      .catch((err) => log.debug({ err: err.message }, 'heartbeat failed'));
  };
  return {
    async start() {
      await Promise.all([reader.connect(), redis.connect()]);
      publish();
      timer = setInterval(publish, HEARTBEAT_MS);
      done = persister.run().catch((err) => {
        log.fatal({ err }, 'persister failed');
        process.exit(1);
      });
    },
    async stop() {
      persister.stop();
      await done;
      clearInterval(timer);
      reader.disconnect();
      redis.disconnect();
    },
  };
}
