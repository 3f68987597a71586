/**
 * Prometheus metrics (prom-client), every name prefixed `logd_`. Each
 * process (HTTP workers, persister) counts its own; GET /metrics, served by
 * whichever HTTP worker gets it, asks the primary, which gathers and
 * aggregates all children over node:cluster IPC (prom-client's
 * AggregatorRegistry): counters and histograms are summed, the backlog gauge
 * (set by the persister) takes the maximum.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Histogram, collectDefaultMetrics, register } from 'prom-client';

export const METRICS_CONTENT_TYPE = register.contentType;

collectDefaultMetrics({ prefix: 'logd_' });

export const httpRequests = new Counter({
  name: 'logd_http_requests_total',
  help: 'HTTP requests answered, by route pattern and status (499: the client went away first)',
  labelNames: ['route', 'status'] as const,
});

export const httpDuration = new Histogram({
  name: 'logd_http_request_duration_seconds',
  help: 'time from the request line to the answer, by route pattern',
  labelNames: ['route'] as const,
  buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
});

export const logsAccepted = new Counter({ name: 'logd_logs_accepted_total', help: 'logs in the stream: acknowledged with 2xx, or appended from syslog' });

export const listenerMessages = new Counter({
  name: 'logd_listener_messages_total',
  help: 'messages received by the listeners that take no token (tcp, udp, tls, relp: syslog; journal: POST /upload entries)',
  labelNames: ['listener'] as const,
});

export const protocolRecords = new Counter({
  name: 'logd_protocol_records_total',
  help: 'records received on the shippers\' protocols (otlp, loki, elasticsearch, ndjson), by outcome (stored: in the stream; rejected: refused one by one, the rest of the request stored)',
  labelNames: ['protocol', 'outcome'] as const,
});

export const listenerDropped = new Counter({
  name: 'logd_listener_dropped_total',
  help: 'messages a listener received and could not store, by reason (backlog, unavailable: the stream refused them; only UDP drops: TCP, TLS and RELP stop reading instead; duplicate: journal entries resent and already stored)',
  labelNames: ['listener', 'reason'] as const,
});

export const listenerRefused = new Counter({
  name: 'logd_listener_refused_total',
  help: 'connections, datagrams and uploads refused by a listener, by reason (allow: source not in its allow list; max_connections: syslog.max_connections reached)',
  labelNames: ['listener', 'reason'] as const,
});

export const listenerConnections = new Gauge({
  name: 'logd_listener_connections',
  help: 'open TCP, TLS and RELP syslog connections',
  labelNames: ['listener'] as const,
});

export const logsRefused = new Counter({
  name: 'logd_logs_refused_total',
  help: 'logs in ingest requests refused after parsing, by reason (invalid: 422; backlog, unavailable: 503); requests refused before (400, 413, 415) are in logd_http_requests_total',
  labelNames: ['reason'] as const,
});

export const bodyBytesInFlight = new Gauge({
  name: 'logd_http_body_bytes_in_flight',
  help: 'request-body bytes the HTTP workers hold (declared or read, until answered); each worker refuses past server.max_inflight_bytes with 503 LOGD_OVERLOADED',
});

let readBacklog: (() => Promise<number>) | undefined;

/** In the persister: where the backlog gauge reads the backlog at each scrape. */
export function trackBacklog(read: () => Promise<number>): void {
  readBacklog = read;
}

new Gauge({
  name: 'logd_stream_backlog_logs',
  help: 'logs accepted and not yet persisted (the stream backlog), read from Redis by the persister at each scrape',
  aggregator: 'max',
  async collect() {
    if (readBacklog) this.set(await readBacklog().catch(() => Number.NaN));
  },
});

export const batchSize = new Histogram({
  name: 'logd_persister_batch_rows',
  help: 'rows loaded per COPY transaction',
  buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000],
});

export const batchDuration = new Histogram({
  name: 'logd_persister_batch_duration_seconds',
  help: 'time of one persist transaction (ledger, COPY, COMMIT) plus its acknowledgement',
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
});

export const searches = new Counter({
  name: 'logd_searches_total',
  help: 'GET /api/logs searches, by what bounds the rows they read: index (btrees for device_id and time, search indexes for q and data on closed partitions) or scan (filters no index serves: level alone, q terms all under 3 characters)',
  labelNames: ['reads'] as const,
});

export const rowsPersisted = new Counter({ name: 'logd_persisted_rows_total', help: 'rows committed to PostgreSQL' });

export const deadLettered = new Counter({ name: 'logd_dead_lettered_total', help: 'stream entries moved to the dead-letter stream' });

export const partitionsDropped = new Counter({
  name: 'logd_storage_dropped_partitions_total',
  help: 'partitions (or level leaves of partitions) of logs dropped, by reason (retention, budget: retention.max_bytes)',
  labelNames: ['reason'] as const,
});

export const rowsDropped = new Counter({
  name: 'logd_storage_dropped_rows_total',
  help: 'logs removed by dropped partitions, by reason (retention, budget: retention.max_bytes)',
  labelNames: ['reason'] as const,
});

/** What the storage gauges report (the persister's last maintenance pass). */
export interface StorageGauges {
  partitions: number;
  rows: number;
  bytes: number;
  oldest: number | null;
  newest: number | null;
  lastDrop: number | null;
  nextDrop: number | null;
}

let storage: StorageGauges | undefined;

/** In the persister: the state its last maintenance pass saw. */
export function trackStorage(state: StorageGauges): void {
  storage = state;
}

const storageGauge = (name: string, help: string, read: (s: StorageGauges) => number | null): Gauge => new Gauge({
  name,
  help: `${help}, as of the persister's last storage maintenance pass`,
  aggregator: 'max',
  collect() {
    if (storage) this.set(read(storage) ?? Number.NaN);
  },
});
storageGauge('logd_storage_partitions', 'time partitions of logs', (s) => s.partitions);
storageGauge('logd_storage_rows', 'logs stored (the statistics rollups\' total)', (s) => s.rows);
storageGauge('logd_storage_bytes', 'size of the partitions of logs on disk, indexes included, in bytes', (s) => s.bytes);
const seconds = (t: number | null): number | null => (t === null ? null : t / 1000);
storageGauge('logd_storage_oldest_timestamp_seconds', 'start of the oldest partition (NaN: none, or the legacy partition with no start)', (s) => seconds(s.oldest));
storageGauge('logd_storage_newest_timestamp_seconds', 'end of the newest partition', (s) => seconds(s.newest));
storageGauge('logd_storage_last_drop_timestamp_seconds', 'when a partition was last dropped (NaN: never)', (s) => seconds(s.lastDrop));
storageGauge('logd_storage_next_drop_timestamp_seconds', 'when the next partition expires by retention (NaN: none)', (s) => seconds(s.nextDrop));

export const tailSubscribers = new Gauge({
  name: 'logd_tail_subscribers',
  help: 'open live tails (GET /api/tail WebSockets), summed over the HTTP workers',
});

export const tailLogsSent = new Counter({ name: 'logd_tail_logs_sent_total', help: 'logs sent to live tails (a log sent to two tails counts twice)' });

export const tailLogsSkipped = new Counter({
  name: 'logd_tail_logs_skipped_total',
  help: 'matching logs not sent to a live tail, by reason (slow: its socket held more than tail.max_buffer_bytes unsent; counted in its "skipped" message)',
  labelNames: ['reason'] as const,
});

export const cacheLookups = new Counter({
  name: 'logd_cache_lookups_total',
  help: 'cache-aside lookups, by cache and result (hit, miss, shared, waited, late, error)',
  labelNames: ['cache', 'result'] as const,
});

// Workers answer the primary's requests for their metrics (the constructor adds the listener).
const aggregator = new AggregatorRegistry();

type MetricsMessage = { type: 'logd:metrics'; id: number } | { type: 'logd:metrics-result'; id: number; text?: string; error?: string };

/** In the primary: answers workers that ask for the aggregated metrics. */
export function serveClusterMetrics(): void {
  cluster.on('message', (worker, m: MetricsMessage) => {
    if (m?.type !== 'logd:metrics') return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: 'logd:metrics-result', id: m.id, text } satisfies MetricsMessage),
      (err: Error) => worker.send({ type: 'logd:metrics-result', id: m.id, error: err.message } satisfies MetricsMessage),
    );
  });
}

let nextId = 0;
const waiting = new Map<number, { resolve: (t: string) => void; reject: (e: Error) => void }>();

/** In an HTTP worker: the metrics of the whole instance, from the primary. */
export function clusterMetrics(): Promise<string> {
  if (waiting.size === 0) process.on('message', onResult);
  const id = nextId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    process.send!({ type: 'logd:metrics', id } satisfies MetricsMessage);
  });
}

function onResult(m: MetricsMessage): void {
  if (m?.type !== 'logd:metrics-result') return;
  const w = waiting.get(m.id);
  if (!w) return;
  waiting.delete(m.id);
  if (waiting.size === 0) process.off('message', onResult);
  if (m.error !== undefined) w.reject(new Error(m.error));
  else w.resolve(m.text ?? '');
}
