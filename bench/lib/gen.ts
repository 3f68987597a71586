/**
 * The benchmark's log entries, the same as bench/lib/ingest.lua sends (keep
 * the two in step), and their COPY rows encoded by logd's own encoder (the
 * built dist/src/queue/frame.js of the tree under test, dist/src/persist/copy.js
 * in trees before it), so the COPY
 * ceiling loads exactly what logd's frames hold.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

const DEVICES = 100;
const FILLER = 'GET /api/v1/items?page=3 answered 200 in 12 ms for user alice';
const LEVELS: string[] = Array.from({ length: 100 }, (_, i) => {
  const n = i + 1;
  return n <= 70 ? 'INFO' : n <= 85 ? 'DEBUG' : n <= 95 ? 'WARNING' : n <= 99 ? 'ERROR' : 'CRITICAL';
});

export interface Entry {
  device_id: string;
  log_level: string;
  message: string;
  log_data: Record<string, unknown>;
}

/** Log j of request seq of thread tid in run `run`, as ingest.lua makes it. */
export function entry(run: string, tid: number, seq: number, j: number, per: number): Entry {
  const k = seq * per + j;
  return {
    device_id: `dev-${String(k % DEVICES).padStart(3, '0')}`,
    log_level: LEVELS[k % 100],
    message: `${run}:${tid}:${seq}:${j} ${FILLER}`,
    log_data: { seq: k, region: 'eu-west-1', latency_ms: k % 997, path: '/api/v1/items' },
  };
}

type CopyRow = (deviceId: string, level: string, message: string, dataJson: string, createdAt: string) => string;

/** logd's COPY row encoder from the tree under test. */
export function loadCopyRow(root: string): CopyRow {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const file = [path.join(root, 'dist', 'src', 'queue', 'frame.js'), path.join(root, 'dist', 'src', 'persist', 'copy.js')].find((f) => existsSync(f));
  if (!file) throw new Error(`no built COPY encoder under ${root}/dist: run npm run build there`);
  return (require(file) as { copyRow: CopyRow }).copyRow;
}

/**
 * `frames` frames of `per` logs each, as logd's HTTP worker encodes them
 * (JSON.stringify of log_data, receive time as ISO-8601, one time per frame).
 */
export function frames(root: string, run: string, count: number, per: number, startMs = Date.now()): string[] {
  const copyRow = loadCopyRow(root);
  const out: string[] = [];
  for (let seq = 0; seq < count; seq++) {
    const at = new Date(startMs + seq).toISOString();
    let rows = '';
    for (let j = 0; j < per; j++) {
      const e = entry(run, 1, seq, j, per);
      rows += copyRow(e.device_id, e.log_level, e.message, JSON.stringify(e.log_data), at);
    }
    out.push(rows);
  }
  return out;
}

/** A frame summary like logd's (persist/summary.ts): [[device, level, epoch hour, logs], ...]. */
export function summary(run: string, seq: number, per: number, atMs = Date.now()): string {
  const hour = Math.floor(atMs / 3_600_000);
  const counts = new Map<string, [string, string, number, number]>();
  for (let j = 0; j < per; j++) {
    const e = entry(run, 1, seq, j, per);
    const key = `${e.log_level}\u0000${e.device_id}`;
    const t = counts.get(key);
    if (t) t[3]++;
    else counts.set(key, [e.device_id, e.log_level, hour, 1]);
  }
  return JSON.stringify([...counts.values()]);
}
