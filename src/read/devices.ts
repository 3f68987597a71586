/** GET /api/devices: ids of devices with stored logs that start with a prefix, in order (SQL.devices). */
import { SQL } from '../sql';
import type { ReadPool } from './db';

/** The least string above every string that starts with `prefix`, in code point order; undefined when there is none. */
export function successor(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length) {
    const last = points.pop()!.codePointAt(0)!;
    // U+D800..U+DFFF are not characters: the next one after U+D7FF is U+E000.
    const next = last === 0xd7ff ? 0xe000 : last + 1;
    if (next <= 0x10ffff) return points.join('') + String.fromCodePoint(next);
  }
  return undefined;
}

/** `{"devices":[...]}`. */
export async function devices(db: ReadPool, prefix: string, limit: number): Promise<string> {
  const rows = await db.rows(SQL.devices, [prefix, limit, prefix ? successor(prefix) ?? null : null]);
  return JSON.stringify({ devices: rows.map(([id]) => id) });
}
