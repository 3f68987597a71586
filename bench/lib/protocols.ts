/**
 * Request bodies of bench/protocols.ts: the logs of gen.ts's entry() (the
 * same devices, levels, messages and data as every other bench path) in the
 * body of each ingest protocol, the way a shipper of that protocol sends
 * them, and how many logs of a body each protocol's answer says it took.
 *
 * Body b of a run holds entry(run, 0, b, j, per) for j < per: its messages
 * read `<run>:0:<b>:<j> ...`, so the rows stored from each body can be
 * counted in PostgreSQL (split_part(message, ':', 3)).
 *
 * - native: POST /api/logs/batch, application/json, `{"logs": [entry...]}`.
 * - ndjson: the same entries, one per line, application/x-ndjson.
 * - otlp-protobuf / otlp-json: POST /v1/logs, one ExportLogsServiceRequest
 *   (src/formats/otlp.ts's message type; OTLP/JSON by hand, int64 as decimal
 *   text), one ResourceLogs per device (resource attribute host.name), one
 *   scope `bench`; a record's time_unix_nano, severity_number and _text from
 *   the level, body the message as a string, the data as attributes (int
 *   values as int_value).
 * - loki-protobuf: POST /loki/api/v1/push, a logproto.PushRequest
 *   (src/formats/loki.ts's message type) compressed with snappy's block
 *   format (what promtail sends): one stream per device and level (labels `{host="<device>", level="<level>"}`), entries
 *   with the time (google.protobuf.Timestamp), the message as the line and
 *   the data as structured metadata.
 * - es-bulk: POST /_bulk, application/x-ndjson, `{"create":{"_index":...}}`
 *   then the document (`@timestamp`, `message`, `host.name`, `log.level`
 *   and the data), as Filebeat and Fluent Bit write ECS documents.
 *
 * With `gzip`, the body is gzipped (zlib's default level) and sent with
 * Content-Encoding: gzip.
 */
import { gzipSync } from 'node:zlib';
import { PushRequest } from '../../src/formats/loki';
import { ExportLogsServiceRequest, ExportLogsServiceResponse } from '../../src/formats/otlp';
import { entry, type Entry } from './gen';

export const FORMATS = ['native', 'otlp-protobuf', 'otlp-json', 'loki-protobuf', 'es-bulk', 'ndjson'] as const;
export type Format = (typeof FORMATS)[number];

export interface Bodies {
  path: string;
  headers: Record<string, string>;
  bodies: Buffer[];
}

/** The snappy block format (github.com/google/snappy format_description.txt), as snappyjs implements it. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const snappy = require('snappyjs') as { compress(b: Uint8Array): Uint8Array };

/** OpenTelemetry severity number and text of each level gen.ts sends (logs data model: DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21). */
const OTEL_SEVERITY: Record<string, [number, string]> = {
  DEBUG: [5, 'DEBUG'], INFO: [9, 'INFO'], WARNING: [13, 'WARN'], ERROR: [17, 'ERROR'], CRITICAL: [21, 'FATAL'],
};
const ES_INDEX = 'logs-bench';

interface Rec {
  e: Entry;
  /** event time, ns since the epoch */
  ns: bigint;
}

/** `records` grouped by `key`, groups in first-seen order. */
function groups(records: Rec[], key: (e: Entry) => string): Rec[][] {
  const m = new Map<string, Rec[]>();
  for (const r of records) {
    const k = key(r.e);
    const g = m.get(k);
    if (g) g.push(r);
    else m.set(k, [r]);
  }
  return [...m.values()];
}

const isoOf = (ns: bigint): string => {
  const iso = new Date(Number(ns / 1_000_000n)).toISOString();
  return `${iso.slice(0, 19)}.${String(ns % 1_000_000_000n).padStart(9, '0').slice(0, 6)}Z`;
};

/** An entry's data as OTLP KeyValues; integers as int_value (decimal text in OTLP/JSON). */
function otlpAttributes(d: Record<string, unknown>, json: boolean): object[] {
  return Object.entries(d).map(([key, v]) => ({
    key,
    value: typeof v === 'number' ? { intValue: json ? String(v) : v } : { stringValue: String(v) },
  }));
}

function otlpRequest(records: Rec[], json: boolean): object {
  return {
    resourceLogs: groups(records, (e) => e.device_id).map((rs) => ({
      resource: { attributes: [{ key: 'host.name', value: { stringValue: rs[0].e.device_id } }] },
      scopeLogs: [{
        scope: { name: 'bench' },
        logRecords: rs.map(({ e, ns }) => ({
          timeUnixNano: ns.toString(),
          severityNumber: OTEL_SEVERITY[e.log_level][0],
          severityText: OTEL_SEVERITY[e.log_level][1],
          body: { stringValue: e.message },
          attributes: otlpAttributes(e.log_data, json),
        })),
      }],
    })),
  };
}

function lokiRequest(records: Rec[]): Uint8Array {
  const level = (e: Entry): string => e.log_level.toLowerCase();
  const streams = groups(records, (e) => `${e.device_id}\u0000${level(e)}`).map((rs) => ({
    labels: `{host="${rs[0].e.device_id}", level="${level(rs[0].e)}"}`,
    entries: rs.map(({ e, ns }) => ({
      timestamp: { seconds: Number(ns / 1_000_000_000n), nanos: Number(ns % 1_000_000_000n) },
      line: e.message,
      structuredMetadata: Object.entries(e.log_data).map(([name, v]) => ({ name, value: String(v) })),
    })),
  }));
  return snappy.compress(PushRequest.encode(PushRequest.fromObject({ streams })).finish());
}

function esBulk(records: Rec[]): string {
  const action = JSON.stringify({ create: { _index: ES_INDEX } });
  let out = '';
  for (const { e, ns } of records) {
    const doc = { '@timestamp': isoOf(ns), message: e.message, host: { name: e.device_id }, log: { level: e.log_level.toLowerCase() }, ...e.log_data };
    out += `${action}\n${JSON.stringify(doc)}\n`;
  }
  return out;
}

const ROUTE: Record<Format, { path: string; contentType: string }> = {
  native: { path: '/api/logs/batch', contentType: 'application/json' },
  ndjson: { path: '/api/logs/batch', contentType: 'application/x-ndjson' },
  'otlp-protobuf': { path: '/v1/logs', contentType: 'application/x-protobuf' },
  'otlp-json': { path: '/v1/logs', contentType: 'application/json' },
  'loki-protobuf': { path: '/loki/api/v1/push', contentType: 'application/x-protobuf' },
  'es-bulk': { path: '/_bulk', contentType: 'application/x-ndjson' },
};

function body(format: Format, records: Rec[]): Buffer {
  switch (format) {
    case 'native': return Buffer.from(JSON.stringify({ logs: records.map((r) => r.e) }));
    case 'ndjson': return Buffer.from(records.map((r) => `${JSON.stringify(r.e)}\n`).join(''));
    case 'otlp-protobuf': {
      const bytes = ExportLogsServiceRequest.encode(ExportLogsServiceRequest.fromObject(otlpRequest(records, false))).finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    case 'otlp-json': return Buffer.from(JSON.stringify(otlpRequest(records, true)));
    case 'loki-protobuf': return Buffer.from(lokiRequest(records));
    case 'es-bulk': return Buffer.from(esBulk(records));
  }
}

/** `count` bodies of `per` logs each; event times 1 µs apart from `startMs`. */
export function buildBodies(format: Format, run: string, count: number, per: number, gzip: boolean, startMs = Date.now()): Bodies {
  const bodies: Buffer[] = [];
  for (let b = 0; b < count; b++) {
    const records = Array.from({ length: per }, (_, j) => ({
      e: entry(run, 0, b, j, per),
      ns: BigInt(startMs) * 1_000_000n + BigInt(b * per + j) * 1000n,
    }));
    const raw = body(format, records);
    bodies.push(gzip ? gzipSync(raw) : raw);
  }
  const { path, contentType } = ROUTE[format];
  return { path, headers: { 'content-type': contentType, ...(gzip ? { 'content-encoding': 'gzip' } : {}) }, bodies };
}

/**
 * The logs of a `per`-log body that an answer says were taken, or why none
 * were: an HTTP status outside 2xx (with the start of its body), or an
 * answer the protocol does not give.
 */
export function taken(format: Format, status: number, answer: Buffer, per: number): number | string {
  if (status < 200 || status > 299) return `${status} ${answer.toString('utf8', 0, 80)}`;
  switch (format) {
    case 'native': return per;
    case 'ndjson': {
      const m = /"count":(\d+)/.exec(answer.toString('utf8', 0, 200));
      return m ? Number(m[1]) : `${status} without a count`;
    }
    case 'otlp-protobuf': {
      if (!answer.length) return per;
      const r = ExportLogsServiceResponse.toObject(ExportLogsServiceResponse.decode(answer), { longs: Number }) as { partialSuccess?: { rejectedLogRecords?: number } };
      return per - (r.partialSuccess?.rejectedLogRecords ?? 0);
    }
    case 'otlp-json': {
      const r = JSON.parse(answer.toString('utf8') || '{}') as { partialSuccess?: { rejectedLogRecords?: number | string } };
      return per - Number(r.partialSuccess?.rejectedLogRecords ?? 0);
    }
    case 'loki-protobuf': return per;
    case 'es-bulk': {
      const text = answer.toString('utf8');
      if (/^\{[^[]*"errors":false/.test(text)) return per;
      const r = JSON.parse(text) as { items?: Record<string, { status: number }>[] };
      return (r.items ?? []).filter((i) => Object.values(i)[0]?.status < 300).length;
    }
  }
}
