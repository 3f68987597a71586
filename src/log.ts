/** logd's own structured JSON logs (pino), one logger per process, tagged with its role. */
import pino from 'pino';

export type Logger = pino.Logger;

let root: Logger = pino({ level: process.env.LOGD_LOG_LEVEL ?? 'info', base: { pid: process.pid } });

/** Re-creates the process logger once the configuration (log.level) and the role are known. */
export function initLogger(level: string, role: string): Logger {
  root = pino({ level, base: { pid: process.pid, role } });
  return root;
}

export const log = (): Logger => root;
