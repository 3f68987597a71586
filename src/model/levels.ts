/** The log levels of the log model, least to most severe. */
export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Level names shippers use (syslog keywords, OpenTelemetry, Python, Go, log4j), lower case, by model level. */
const LEVEL_WORDS: Record<string, LogLevel> = {
  trace: 'DEBUG', debug: 'DEBUG', dbg: 'DEBUG', verbose: 'DEBUG',
  info: 'INFO', information: 'INFO', informational: 'INFO', notice: 'INFO', log: 'INFO',
  warn: 'WARNING', warning: 'WARNING',
  error: 'ERROR', err: 'ERROR', eror: 'ERROR',
  critical: 'CRITICAL', crit: 'CRITICAL', fatal: 'CRITICAL', alert: 'CRITICAL', emerg: 'CRITICAL', emergency: 'CRITICAL', panic: 'CRITICAL',
};

/**
 * The model level a shipper's level text names, case-insensitively and
 * ignoring a trailing number (OpenTelemetry's "INFO2", "ERROR4"), or
 * undefined when the text names none.
 */
export function levelFromText(text: string): LogLevel | undefined {
  const word = text.trim().toLowerCase().replace(/[1-4]$/, '');
  return Object.hasOwn(LEVEL_WORDS, word) ? LEVEL_WORDS[word] : undefined;
}
