/**
 * An Elasticsearch sink: POST /_bulk and /{index}/_bulk (src/formats/elastic.ts
 * reads the body), and the probes shippers send before or between bulks
 * (GET and HEAD /, GET /_cluster/health, GET /_cat/health, GET /_license).
 * Every answer carries `X-Elastic-Product: Elasticsearch`: the official
 * clients from 8.0 refuse a 2xx without it (elastic-transport-js
 * src/Transport.ts, productCheck).
 *
 * The stored items of a request are appended as one stream entry and the
 * answer is sent once Redis has it: 200 with an item per action, as
 * Elasticsearch answers, `errors` true when any item failed. A full backlog
 * or Redis down fails every item that would have been stored with 429
 * `es_rejected_execution_exception` (nothing of the request is stored): the
 * per-item status the clients resend after a wait (elasticsearch-js
 * helpers.bulk `retries`/`wait`; rsyslog omelasticsearch `retryfailures`;
 * Logstash and Beats), where a whole-request 429 ends the JS bulk helper
 * with an error and rsyslog 8.2302 writes the batch to its `errorfile`.
 * Errors of the whole request (authentication, body, encoding) have
 * Elasticsearch's error shape; a worker out of body budget answers 429 +
 * Retry-After.
 */
import { hostname } from 'node:os';
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { LogdError, type ErrorCode } from '../errors';
import { parseBulk, type BulkItem } from '../formats/elastic';
import { logsRefused, protocolRecords } from '../metrics';
import type { Accepted } from '../model/entry';
import type { Queue } from '../queue/stream';
import { acceptWindow } from '../storage/layout';
import { readRequest } from './body';
import { appendEntries } from './ingest';
import { ERROR_HEADERS, logFailure, send, sendJson, type Exchange } from './respond';
import type { Route } from './routes';

const PRODUCT = { 'x-elastic-product': 'Elasticsearch' };
/** What the clients send: the JS client v8 the vendored types, rsyslog `application/json; charset=utf-8`, Fluent Bit and Vector x-ndjson. */
const BULK_TYPE = /^application\/(x-ndjson|json|vnd\.elasticsearch\+x-ndjson|vnd\.elasticsearch\+json)\s*(;|$)/i;
const CLUSTER = 'logd';
const NODE = hostname();

/** Elasticsearch's error type and the status sent for a logd error of the whole request. */
function esShape(err: LogdError): { status: number; type: string; headers: Record<string, string> } {
  if (err.status === 503) return { status: 429, type: 'es_rejected_execution_exception', headers: ERROR_HEADERS[503] };
  if (err.status === 401) return { status: 401, type: 'security_exception', headers: { 'www-authenticate': 'Basic realm="logd" charset="UTF-8", Bearer realm="logd", ApiKey' } };
  if (err.status === 403) return { status: 403, type: 'security_exception', headers: ERROR_HEADERS[403] };
  if (err.status === 415) return { status: 415, type: 'media_type_header_exception', headers: {} };
  if (err.status >= 500) return { status: err.status, type: 'exception', headers: {} };
  return { status: err.status, type: err.code === 'LOGD_INVALID_ENCODING' ? 'parse_exception' : 'illegal_argument_exception', headers: {} };
}

/** Answers an error of the whole request as Elasticsearch does: `{"error": {"root_cause", "type", "reason"}, "status"}`. */
function esError(x: Exchange, err: LogdError): void {
  logFailure(x, err);
  const { status, type, headers } = esShape(err);
  const cause = { type, reason: err.message };
  sendJson(x, status, JSON.stringify({ error: { root_cause: [cause], ...cause }, status }), { ...PRODUCT, ...headers });
}

const esFail = (x: Exchange, code: ErrorCode, detail: string): void => esError(x, new LogdError(code, detail));

const SHARDS = '"_shards":{"total":1,"successful":1,"failed":0}';

function storedItem(item: BulkItem, id: string, seq: number): string {
  return `{"${item.action}":{"_index":${JSON.stringify(item.index)},"_id":${JSON.stringify(id)},"_version":1,"result":"created",${SHARDS},"_seq_no":${seq},"_primary_term":1,"status":201}}`;
}

function failedItem(item: BulkItem, status: number, type: string, reason: string): string {
  const id = item.id === undefined ? 'null' : JSON.stringify(item.id);
  return `{"${item.action}":{"_index":${JSON.stringify(item.index)},"_id":${id},"status":${status},"error":{"type":"${type}","reason":${JSON.stringify(reason)}}}}`;
}

/**
 * The bulk answer: stored items numbered in the stream entry `entryId` as
 * the JSON API numbers its logs (`<entry id>:<position>`, unless the action
 * gave an `_id`); with `refusal`, the items to store failed with 429.
 */
function bulkAnswer(items: BulkItem[], took: number, entryId: string, refusal?: LogdError): string {
  let out = '';
  let seq = 0;
  let errors = false;
  for (const item of items) {
    let text: string;
    if (item.error) text = failedItem(item, item.error.status, item.error.type, item.error.reason);
    else if (refusal) text = failedItem(item, 429, 'es_rejected_execution_exception', `${refusal.message} (logd stored nothing of this request)`);
    else text = storedItem(item, item.id ?? `${entryId}:${seq}`, seq++);
    if (item.error || refusal) errors = true;
    out += out ? `,${text}` : text;
  }
  return `{"took":${took},"errors":${errors},"items":[${out}]}`;
}

/** Counts the items that failed one by one. */
function countRejected(items: BulkItem[]): void {
  const n = items.reduce((k, item) => k + (item.error ? 1 : 0), 0);
  if (!n) return;
  protocolRecords.inc({ protocol: 'elasticsearch', outcome: 'rejected' }, n);
  logsRefused.inc({ reason: 'invalid' }, n);
}

function bulk(cfg: Config, queue: Queue, x: Exchange, req: HttpRequest, defaultIndex: string): void {
  const t0 = performance.now();
  const contentType = req.getHeader('content-type');
  if (!BULK_TYPE.test(contentType)) {
    return esFail(x, 'LOGD_UNSUPPORTED_MEDIA_TYPE', `Content-Type header [${contentType.slice(0, 100)}] is not supported: send application/x-ndjson or application/json`);
  }
  readRequest(x, req, cfg.server.body_limit_batch, (buf) => {
    // Bytes that are not UTF-8 become U+FFFD, as NUL and unpaired surrogates do (admit()).
    const items = parseBulk(buf.toString('utf8'), {
      defaultIndex,
      deviceFields: cfg.elasticsearch.device_fields,
      defaultDevice: cfg.elasticsearch.default_device_id,
      window: acceptWindow(cfg, Date.now()),
    });
    if (!items.length) return esFail(x, 'LOGD_BAD_REQUEST', 'Validation Failed: 1: no requests added;');
    countRejected(items);
    const entries = items.flatMap((item): Accepted[] => (item.entry ? [item.entry] : []));
    const took = (): number => Math.round(performance.now() - t0);
    appendEntries(queue, x, entries, (id) => {
      protocolRecords.inc({ protocol: 'elasticsearch', outcome: 'stored' }, entries.length);
      sendJson(x, 200, bulkAnswer(items, took(), id), PRODUCT);
    }, (_, err) => {
      if (err.code !== 'LOGD_BACKLOG_FULL' && err.code !== 'LOGD_QUEUE_UNAVAILABLE') return esError(x, err);
      sendJson(x, 200, bulkAnswer(items, took(), '', err), PRODUCT);
    });
  }, esError);
}

/** The index of `/{index}/_bulk` (percent-decoded, as Elasticsearch takes date-math names like `%3Clogs-%7Bnow%2Fd%7D%3E`). */
function pathIndex(req: HttpRequest): string {
  const raw = req.getParameter(0) ?? '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** `major.minor.patch` of the configured version, as GET / reports it with the compatibility versions Elasticsearch gives. */
function rootAnswer(cfg: Config): string {
  const number = cfg.elasticsearch.version;
  const major = Number.parseInt(number, 10) || 8;
  return JSON.stringify({
    name: NODE,
    cluster_name: CLUSTER,
    cluster_uuid: CLUSTER,
    version: {
      number,
      build_flavor: 'default',
      build_type: 'logd',
      build_hash: 'logd',
      build_date: '1970-01-01T00:00:00.000Z',
      build_snapshot: false,
      lucene_version: '9.12.0',
      minimum_wire_compatibility_version: `${major - 1}.17.0`,
      minimum_index_compatibility_version: `${major - 1}.0.0`,
    },
    tagline: 'You Know, for Search',
  });
}

const CLUSTER_HEALTH = JSON.stringify({
  cluster_name: CLUSTER, status: 'green', timed_out: false, number_of_nodes: 1, number_of_data_nodes: 1,
  active_primary_shards: 0, active_shards: 0, relocating_shards: 0, initializing_shards: 0, unassigned_shards: 0,
  delayed_unassigned_shards: 0, number_of_pending_tasks: 0, number_of_in_flight_fetch: 0,
  task_max_waiting_in_queue_millis: 0, active_shards_percent_as_number: 100.0,
});

const LICENSE = JSON.stringify({
  license: {
    status: 'active', uid: '00000000-0000-0000-0000-000000000000', type: 'basic', issue_date: '1970-01-01T00:00:00.000Z',
    issue_date_in_millis: 0, max_nodes: 1000, max_resource_units: null, issued_to: CLUSTER, issuer: 'elasticsearch', start_date_in_millis: -1,
  },
});

/** GET /_cat/health: one line of text, or with `format=json` the same as a JSON array. */
function catHealth(x: Exchange, req: HttpRequest): void {
  const now = new Date();
  const row = {
    epoch: String(Math.floor(now.getTime() / 1000)), timestamp: now.toISOString().slice(11, 19), cluster: CLUSTER, status: 'green',
    'node.total': '1', 'node.data': '1', shards: '0', pri: '0', relo: '0', init: '0', unassign: '0', pending_tasks: '0',
    max_task_wait_time: '-', active_shards_percent: '100.0%',
  };
  if (new URLSearchParams(req.getQuery() ?? '').get('format') === 'json') return sendJson(x, 200, JSON.stringify([row]), PRODUCT);
  send(x, 200, 'text/plain; charset=UTF-8', `${Object.values(row).join(' ')}\n`, PRODUCT);
}

const enabled = (cfg: Config): boolean => cfg.elasticsearch.enabled;

const BULK_DESCRIPTION = 'The Elasticsearch bulk API (NDJSON): index and create actions store their document as a log; delete and update items fail with 400, as does a malformed line, and the other items are stored. '
  + 'The answer is Elasticsearch\'s: an item per action, errors true when any failed. A full backlog or Redis down fails the items with 429 es_rejected_execution_exception (nothing stored; clients resend them). '
  + 'Errors of the whole request have Elasticsearch\'s shape ({"error": {"root_cause", "type", "reason"}, "status"}); a worker out of body budget answers 429 es_rejected_execution_exception + Retry-After. '
  + 'Mapping and clients: docs/elasticsearch.md.';

/** The errors of the Elasticsearch routes, in the OpenAPI document. */
const ES_ERROR_SCHEMAS = {
  'application/json': {
    type: 'object',
    required: ['error', 'status'],
    properties: {
      error: { type: 'object', description: 'root_cause (a list of {type, reason}), type and reason', properties: { type: { type: 'string' }, reason: { type: 'string' } } },
      status: { type: 'integer' },
    },
  },
};

/** What the bulk routes answer for the whole request (in Elasticsearch's shape, with these statuses). */
const BULK_ERRORS: ErrorCode[] = ['LOGD_BAD_REQUEST', 'LOGD_INVALID_ENCODING', 'LOGD_BODY_TOO_LARGE', 'LOGD_UNSUPPORTED_MEDIA_TYPE', 'LOGD_UNSUPPORTED_ENCODING'];

const bulkRoute = (path: string, summary: string, index: (req: HttpRequest) => string): Route => ({
  method: 'post', path, scope: 'ingest', summary, description: BULK_DESCRIPTION, enabled, reply: esError, errorSchemas: ES_ERROR_SCHEMAS,
  body: { type: 'string' }, bodyType: 'application/x-ndjson',
  ok: { description: 'Elasticsearch\'s bulk answer: {"took", "errors", "items"}' },
  errors: BULK_ERRORS,
  handle: (x, req, ctx) => bulk(ctx.cfg, ctx.queue, x, req, index(req)),
});

const probe = (path: string, summary: string, answer: (cfg: Config) => string): Route => ({
  method: 'get', path, scope: 'ingest', summary, enabled, reply: esError, errorSchemas: ES_ERROR_SCHEMAS,
  ok: { description: 'what Elasticsearch answers' },
  errors: [],
  handle: (x, _req, ctx) => sendJson(x, 200, answer(ctx.cfg), PRODUCT),
});

export const ELASTIC_ROUTES: Route[] = [
  bulkRoute('/_bulk', 'Elasticsearch bulk API', () => ''),
  bulkRoute('/:index/_bulk', 'Elasticsearch bulk API, with a default index', pathIndex),
  probe('/', 'Elasticsearch root (version probe)', rootAnswer),
  probe('/_cluster/health', 'Elasticsearch cluster health (always green)', () => CLUSTER_HEALTH),
  probe('/_license', 'Elasticsearch license (basic)', () => LICENSE),
  {
    method: 'get', path: '/_cat/health', scope: 'ingest', summary: 'Elasticsearch cat health (rsyslog omelasticsearch\'s health check)', enabled, reply: esError, errorSchemas: ES_ERROR_SCHEMAS,
    ok: { description: 'one line of text, or JSON with format=json', contentType: 'text/plain; charset=UTF-8' },
    errors: [],
    handle: (x, req) => catHealth(x, req),
  },
];
