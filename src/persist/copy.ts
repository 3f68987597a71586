/**
 * The COPY text-format encoder (PostgreSQL docs, "COPY ... File Formats"):
 * columns separated by tab, rows ended by newline, and backslash, tab,
 * newline and carriage return escaped with a backslash. Rows are encoded at
 * the door, once, so the persister only concatenates and streams them.
 */
export const COPY_COLUMNS = ['device_id', 'log_level', 'message', 'log_data', 'created_at'] as const;

const SPECIAL = /[\\\t\n\r]/;
const SPECIAL_ALL = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const escapeChar = (c: string): string => ESCAPES[c];

/** Escapes one field; most fields have nothing to escape and are returned as they are. */
export function copyField(s: string): string {
  return SPECIAL.test(s) ? s.replace(SPECIAL_ALL, escapeChar) : s;
}

/** One row of `logs` (COPY_COLUMNS order), newline included. */
export function copyRow(deviceId: string, level: string, message: string, dataJson: string, createdAt: string): string {
  return `${copyField(deviceId)}\t${level}\t${copyField(message)}\t${copyField(dataJson)}\t${createdAt}\n`;
}
