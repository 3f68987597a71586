/**
 * POST /loki/api/v1/push: Loki's push API (src/formats/loki.ts), as
 * Promtail, Grafana Alloy, Vector, Fluent Bit, winston-loki and pino-loki
 * send it, and GET /ready, the readiness probe some of them ask first.
 *
 * Answers are Loki's (github.com/grafana/loki pkg/distributor/http.go):
 * 204 with an empty body once every entry is in the stream; errors as plain
 * text, the message and a newline. The entries of a request are appended
 * as one stream entry: a refusal (503 + Retry-After, which Loki clients
 * retry) stores none of them, so the retry stores them once. Entries and
 * streams refused one by one get 400 naming the first few; the others are
 * stored before that answer.
 */
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { LogdError } from '../errors';
import {
  decodePushRequest, pushJson, pushProtobuf, snappyLength, streamName, unsnappy,
  type LokiOptions, type LokiSink, type StreamRef,
} from '../formats/loki';
import { protocolRecords } from '../metrics';
import { admit, type Accepted, type Draft } from '../model/entry';
import type { Queue } from '../queue/stream';
import { acceptWindow } from '../storage/layout';
import { parseJson, readBody, readRequest } from './body';
import { appendEntries, INGEST_ERRORS } from './ingest';
import { ERROR_HEADERS, logFailure, send, type Exchange } from './respond';
import type { Route } from './routes';

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = /^application\/json\s*(;|$)/i;
const PROTOBUF_TYPE = /^application\/(x-)?protobuf\s*(;|$)/i;
/** Problems named in a 400; the answer says how many more there were. */
const MAX_NAMED = 10;

/** An error as Loki answers one (http.Error): the message and a newline, as text. */
export function lokiReply(x: Exchange, err: LogdError): void {
  logFailure(x, err);
  send(x, err.status, TEXT, `${err.message}\n`, ERROR_HEADERS[err.status]);
}

/** What a request's entries came to: the accepted ones, and the refused ones counted and the first named. */
class Outcome implements LokiSink {
  readonly accepted: Accepted[] = [];
  rejected = 0;
  problems = 0;
  readonly named: string[] = [];

  constructor(private readonly cfg: Config, private readonly window = acceptWindow(cfg, Date.now())) {}

  entry(d: Draft, stream: StreamRef, index: number): void {
    const a = admit(d, this.window, this.cfg.loki.default_device_id);
    if (typeof a === 'string') this.reject(stream, index, a, 1);
    else this.accepted.push(a);
  }

  reject(stream: StreamRef, index: number | undefined, reason: string, count: number): void {
    this.rejected += count;
    if (this.problems++ >= MAX_NAMED) return;
    const what = index === undefined ? `stream ${streamName(stream)}` : `stream ${streamName(stream)} entry ${index}`;
    this.named.push(index === undefined ? `${what}: ${reason} (${count} entries refused)` : `${what}: ${reason}`);
  }

  /** The 400's text: counts, then the problems named. */
  report(): string {
    const stored = this.accepted.length;
    const more = this.problems - this.named.length;
    return [
      `${this.rejected} of ${this.rejected + stored} entries rejected; the other ${stored} are stored`,
      ...this.named,
      ...(more > 0 ? [`and ${more} more problem${more > 1 ? 's' : ''}`] : []),
    ].join('\n');
  }
}

/** A snappy-compressed protobuf body into `out`, or the error to answer. */
function fromProtobuf(body: Buffer, limit: number, opts: LokiOptions, out: Outcome): LogdError | undefined {
  const length = snappyLength(body);
  if (length === undefined) return new LogdError('LOGD_INVALID_ENCODING', 'the body is not snappy block format: bad length header');
  if (length > limit) return new LogdError('LOGD_BODY_TOO_LARGE', `the snappy body declares ${length} bytes, over the limit of ${limit} bytes`);
  const bytes = unsnappy(body);
  if (typeof bytes === 'string') return new LogdError('LOGD_INVALID_ENCODING', bytes);
  const msg = decodePushRequest(bytes);
  if (typeof msg === 'string') return new LogdError('LOGD_INVALID_PROTOBUF', msg);
  pushProtobuf(msg, opts, out);
  return undefined;
}

/** A JSON body into `out`, or the error to answer. */
function fromJson(body: Buffer, opts: LokiOptions, out: Outcome): LogdError | undefined {
  const parsed = parseJson(body);
  if (parsed instanceof LogdError) return parsed;
  const why = pushJson(parsed.value, opts, out);
  return why === undefined ? undefined : new LogdError('LOGD_BAD_REQUEST', why);
}

/** Appends what was accepted, then answers 204, or 400 when anything was refused. */
function store(queue: Queue, x: Exchange, out: Outcome): void {
  appendEntries(queue, x, out.accepted, () => {
    protocolRecords.inc({ protocol: 'loki', outcome: 'stored' }, out.accepted.length);
    if (!out.problems) return send(x, 204, TEXT, '');
    protocolRecords.inc({ protocol: 'loki', outcome: 'rejected' }, out.rejected);
    lokiReply(x, new LogdError('LOGD_RECORDS_REJECTED', out.report()));
  }, lokiReply);
}

function push(cfg: Config, queue: Queue, x: Exchange, req: HttpRequest): void {
  const contentType = req.getHeader('content-type');
  const protobuf = PROTOBUF_TYPE.test(contentType);
  if (!protobuf && !JSON_TYPE.test(contentType)) {
    const got = contentType ? `"${contentType.slice(0, 100)}"` : 'none';
    return lokiReply(x, new LogdError('LOGD_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json or application/x-protobuf (snappy-compressed), got ${got}`));
  }
  const opts: LokiOptions = { deviceLabels: cfg.loki.device_labels, orgId: req.getHeader('x-scope-orgid') };
  const limit = cfg.server.body_limit_batch;
  const done = (body: Buffer): void => {
    const out = new Outcome(cfg);
    const err = protobuf ? fromProtobuf(body, limit, opts, out) : fromJson(body, opts, out);
    if (err) return lokiReply(x, err);
    store(queue, x, out);
  };
  // Vector names the snappy of a protobuf body in Content-Encoding; Loki reads the body the same either way.
  if (protobuf && req.getHeader('content-encoding').trim().toLowerCase() === 'snappy') {
    return readBody(x, limit, Number(req.getHeader('content-length') || 0), done, lokiReply);
  }
  readRequest(x, req, limit, done, lokiReply);
}

const enabled = (cfg: Config): boolean => cfg.loki.enabled;

/** The errors of the Loki routes, in the OpenAPI document. */
const LOKI_ERROR_SCHEMAS = { 'text/plain': { type: 'string', description: 'the problem and a newline (a 400 after a partial store: the counts, then the first problems)' } };

export const LOKI_ROUTES: Route[] = [
  {
    method: 'post', path: '/loki/api/v1/push', scope: 'ingest',
    summary: 'Loki push API (Promtail, Alloy, Vector, Fluent Bit, winston-loki, pino-loki)',
    description: 'A Loki PushRequest as JSON (optionally gzip) or snappy-compressed protobuf (application/x-protobuf). '
      + 'Answers 204 No Content once every entry is in the stream. Errors are plain text, as Loki answers them. '
      + 'Entries or streams refused one by one (malformed labels, a timestamp outside the accepted window, a wrong type) get 400 naming the first few; the other entries are stored. '
      + 'A full backlog or Redis down: 503 with Retry-After, nothing stored. See docs/loki.md.',
    body: { type: 'object', required: ['streams'], properties: { streams: { type: 'array', items: { type: 'object' } } } },
    ok: { status: 204, description: 'every entry is stored (no body)' },
    errors: [...INGEST_ERRORS, 'LOGD_INVALID_PROTOBUF', 'LOGD_RECORDS_REJECTED'],
    reply: lokiReply,
    errorSchemas: LOKI_ERROR_SCHEMAS,
    enabled,
    handle: (x, req, ctx) => push(ctx.cfg, ctx.queue, x, req),
  },
  {
    method: 'get', path: '/ready', scope: 'public',
    summary: 'Readiness probe of Loki clients',
    description: '200 "ready" while this worker is connected to Redis (pushes can be stored), else 503.',
    ok: { description: '"ready"', contentType: TEXT },
    errors: ['LOGD_QUEUE_UNAVAILABLE'],
    reply: lokiReply,
    errorSchemas: LOKI_ERROR_SCHEMAS,
    enabled,
    handle: (x, _req, ctx) => {
      if (ctx.queue.redis.status === 'ready') return send(x, 200, TEXT, 'ready\n');
      lokiReply(x, new LogdError('LOGD_QUEUE_UNAVAILABLE', 'not ready: the queue (Redis) is unreachable'));
    },
  },
];
