/**
 * Entry of every child process: reads the configuration the primary
 * validated, then runs its role. Children ignore SIGINT/SIGTERM (a terminal's
 * Ctrl-C reaches the whole process group): the primary orders the shutdown,
 * and a child whose primary is gone stops by itself.
 */
import type { Config } from '../config';
import { initLogger, type Logger } from '../log';
import { CONFIG_ENV, ROLE_ENV, type Role, type ToChild } from './messages';

export interface RoleMain {
  /** starts the role; resolves once it serves */
  start(): Promise<void>;
  /** finishes in-flight work and resolves; the process then exits 0 */
  stop(): Promise<void>;
}

export async function runChild(load: Record<Role, (cfg: Config, log: Logger) => RoleMain>): Promise<void> {
  const role = process.env[ROLE_ENV] as Role;
  const cfg = JSON.parse(process.env[CONFIG_ENV] ?? '{}') as Config;
  process.title = `logd: ${role}`;
  const log = initLogger(cfg.log.level, role);
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  const main = load[role](cfg, log);
  let stopping = false;
  const stop = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'stopping');
    await main.stop();
    process.exit(0);
  };
  process.on('message', (m: ToChild) => { if (m.type === 'shutdown') void stop('primary asked'); });
  process.on('disconnect', () => void stop('primary is gone'));
  try {
    await main.start();
  } catch (err) {
    log.fatal({ err }, 'failed to start');
    process.exit(1);
  }
  process.send?.({ type: 'ready' });
}
