/**
 * Synthetic logs for the read benchmarks, generated as COPY text and loaded
 * straight into `logs` (no HTTP, no stream): millions of rows in minutes.
 * Deterministic for a seed. Shape: `devices` devices, a few chatty and many
 * quiet (device k has weight ~ 1/sqrt(k)); levels DEBUG 20%, INFO 60%,
 * WARNING 12%, ERROR 7%, CRITICAL 1%; created_at increasing by `stepMs`
 * per row from `startMs`, as logs arrive; messages from five templates ("took"
 * in ~20% of them) plus a rare "kernel panic" (1 in 100,000); log_data
 * {"region": one of 8, "user": one of 100,000, "seq": n}.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { prng } from '../../test/helpers/faults';

export interface DataShape {
  rows: number;
  devices: number;
  /** created_at of row 0 */
  startMs: number;
  /** time between two rows */
  stepMs: number;
  seed: number;
  /** the first row's number: a later load appends newer rows after an earlier one */
  offset?: number;
}

export const REGIONS = ['eu-west', 'eu-north', 'us-east', 'us-west', 'ap-south', 'ap-east', 'sa-east', 'af-south'] as const;
export const USERS = 100_000;
export const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] as const;


export const deviceName = (k: number): string => `dev-${String(k).padStart(5, '0')}`;

function level(r: number): string {
  return r < 0.2 ? 'DEBUG' : r < 0.8 ? 'INFO' : r < 0.92 ? 'WARNING' : r < 0.99 ? 'ERROR' : 'CRITICAL';
}

/** Rows [from, to) of the data set, as COPY text (device_id, log_level, message, log_data, created_at). */
function chunk(shape: DataShape, rand: () => number, from: number, to: number): string {
  const int = (n: number): number => Math.floor(rand() * n);
  let out = '';
  for (let i = from; i < to; i++) {
    const r = rand();
    const device = deviceName(Math.floor(shape.devices * r * r));
    const user = int(USERS);
    const a = int(256), b = int(256);
    let message: string;
    if (rand() < 0.00001) message = `kernel panic - not syncing: fatal exception ${int(1000)}`;
    else {
      switch (int(5)) {
        case 0: message = `user u${user} logged in from 10.0.${a}.${b}`; break;
        case 1: message = `GET /api/v1/items/${int(100000)} took ${int(2000)} ms`; break;
        case 2: message = `disk /dev/sd${'abcd'[int(4)]} at ${int(100)}% full`; break;
        case 3: message = `connection reset by peer 10.1.${a}.${b}`; break;
        default: message = `temperature ${int(90)}C on sensor ${int(64)}`;
      }
    }
    const ms = Math.floor(shape.startMs + i * shape.stepMs);
    const iso = new Date(ms).toISOString();
    const micros = String(int(1000)).padStart(3, '0');
    out += `${device}\t${level(rand())}\t${message}\t{"region": "${REGIONS[int(8)]}", "user": "u${user}", "seq": ${i}}\t${iso.slice(0, 23)}${micros}Z\n`;
  }
  return out;
}

const CHUNK_ROWS = 20_000;

export const COPY_LOGS = 'COPY logs (device_id, log_level, message, log_data, created_at) FROM STDIN';

/** The data set as COPY text, `chunkRows` rows at a time. */
export function* generate(shape: DataShape, chunkRows = CHUNK_ROWS): Generator<string> {
  const first = shape.offset ?? 0;
  const rand = prng(shape.seed + first);
  for (let next = first; next < first + shape.rows; next += chunkRows) {
    yield chunk(shape, rand, next, Math.min(next + chunkRows, first + shape.rows));
  }
}

/** COPYs the data set into `table` (`logs`, or a table of its columns) in one statement (one transaction). */
export async function copyRows(client: pg.Client | pg.PoolClient, shape: DataShape, onProgress?: (rows: number) => void, table = 'logs'): Promise<void> {
  let done = 0;
  const chunks = generate(shape);
  const source = new Readable({
    read() {
      const next = chunks.next();
      if (next.done) return void this.push(null);
      done = Math.min(done + CHUNK_ROWS, shape.rows);
      onProgress?.(done);
      this.push(next.value);
    },
  });
  await pipeline(source, client.query(copyFrom(table === 'logs' ? COPY_LOGS : COPY_LOGS.replace('COPY logs ', `COPY ${table} `))));
}
