/** The persister process. */
import os from 'node:os';
import type { Config } from '../config';
import { redisClient } from '../connections';
import type { Logger } from '../log';
import { Queue } from '../queue/stream';
import type { RoleMain } from '../supervisor/child';
import { Persister } from './persister';

/** Stable per instance, so a restarted persister finds the entries it had taken (its pending list). */
export function consumerName(cfg: Config): string {
  return process.env.WORKER_NAME || process.env.INSTANCE_NAME || `${os.hostname()}:${cfg.server.port}`;
}

export function persisterMain(cfg: Config, log: Logger): RoleMain {
  const redis = redisClient(cfg, 'logd:persister', true);
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const persister = new Persister(cfg, new Queue(redis, cfg), consumerName(cfg), log);
  let done: Promise<void> = Promise.resolve();
  return {
    async start() {
      await redis.connect();
      done = persister.run().catch((err) => {
        log.fatal({ err }, 'persister failed');
        process.exit(1);
      });
    },
    async stop() {
      persister.stop();
      await done;
      redis.disconnect();
    },
  };
}
