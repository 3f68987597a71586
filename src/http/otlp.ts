/**
 * POST /v1/logs: OTLP/HTTP logs (https://opentelemetry.io/docs/specs/otlp/#otlphttp),
 * binary protobuf or JSON, decoded by src/formats/otlp.ts. The answer is in
 * the request's encoding: 200 with an ExportLogsServiceResponse once Redis
 * has every record that was not rejected (partialSuccess counts and names
 * the rejected ones), else a google.rpc.Status (JSON when the request's
 * encoding is unknown) with the HTTP status the spec asks for: 400 for a
 * body that does not decode, 503 with Retry-After while the backlog is full
 * or Redis is down (nothing stored: the exporter's retry stores it once).
 */
import type { HttpRequest } from 'uWebSockets.js';
import type { Config } from '../config';
import { LogdError, type ErrorCode } from '../errors';
import {
  BadRequest, decodeJson, decodeProtobuf, ErrorInfo, ExportLogsServiceResponse, OtlpInvalid, Status, type Decoded,
} from '../formats/otlp';
import { protocolRecords } from '../metrics';
import { admit, type Accepted } from '../model/entry';
import type { Queue } from '../queue/stream';
import { acceptWindow } from '../storage/layout';
import { parseJson, readRequest, type Reply } from './body';
import { appendEntries } from './ingest';
import { ERROR_HEADERS, logFailure, send, type Exchange } from './respond';
import type { Route } from './routes';

type Encoding = 'protobuf' | 'json';

const PROTOBUF_TYPE = /^application\/(x-)?protobuf\s*(;|$)/i;
const JSON_TYPE = /^application\/json\s*(;|$)/i;
const CONTENT_TYPES: Record<Encoding, string> = { protobuf: 'application/x-protobuf', json: 'application/json' };

/** Rejected records named in partialSuccess.errorMessage (the count covers them all). */
const MAX_NAMED = 5;

/** A problem at a known place of the request: Status.message, and a BadRequest field violation in its details. */
interface Violation {
  field: string;
  description: string;
}

/** google.rpc.Code of an HTTP status (github.com/googleapis/googleapis google/rpc/code.proto). */
function grpcCode(status: number): number {
  if (status === 401) return 16; // UNAUTHENTICATED
  if (status === 403) return 7; // PERMISSION_DENIED
  if (status === 404) return 5; // NOT_FOUND
  if (status === 405 || status === 501 || status === 505) return 12; // UNIMPLEMENTED
  if (status === 429) return 8; // RESOURCE_EXHAUSTED
  if (status === 503) return 14; // UNAVAILABLE
  if (status >= 500) return 13; // INTERNAL
  return 3; // INVALID_ARGUMENT
}

const TYPE_URL = 'type.googleapis.com/google.rpc.';

/** The violation an error names, when its detail is one. */
const violationOf = (err: LogdError): Violation | undefined =>
  (typeof err.detail === 'object' && err.detail !== null && 'description' in err.detail ? err.detail as Violation : undefined);

function statusMessage(err: LogdError): string {
  const v = violationOf(err);
  if (!v) return typeof err.detail === 'string' ? err.detail : err.message;
  return v.field ? `${v.field}: ${v.description}` : v.description;
}

/** google.rpc.Status in OTLP/JSON: code, message, and details (BadRequest for a 400, ErrorInfo with logd's code). */
function statusJson(err: LogdError): string {
  const message = statusMessage(err);
  const details: object[] = [];
  if (err.status === 400) {
    details.push({ '@type': `${TYPE_URL}BadRequest`, fieldViolations: [violationOf(err) ?? { field: '', description: message }] });
  }
  details.push({ '@type': `${TYPE_URL}ErrorInfo`, reason: err.code, domain: 'logd' });
  return JSON.stringify({ code: grpcCode(err.status), message, details });
}

function statusProtobuf(err: LogdError): Uint8Array {
  const message = statusMessage(err);
  const details: { typeUrl: string; value: Uint8Array }[] = [];
  if (err.status === 400) {
    const fieldViolations = [violationOf(err) ?? { field: '', description: message }];
    details.push({ typeUrl: `${TYPE_URL}BadRequest`, value: BadRequest.encode({ fieldViolations }).finish() });
  }
  details.push({ typeUrl: `${TYPE_URL}ErrorInfo`, value: ErrorInfo.encode({ reason: err.code, domain: 'logd' }).finish() });
  return Status.encode({ code: grpcCode(err.status), message, details }).finish();
}

const replyIn = (encoding: Encoding): Reply => (x, err) => {
  logFailure(x, err);
  const body = encoding === 'protobuf' ? statusProtobuf(err) : statusJson(err);
  send(x, err.status, CONTENT_TYPES[encoding], body, ERROR_HEADERS[err.status]);
};

/** Answers an error as a google.rpc.Status in OTLP/JSON (errors found before the request's encoding is known). */
const replyJson: Reply = replyIn('json');
const replyProtobuf: Reply = replyIn('protobuf');

function decode(body: Buffer, encoding: Encoding, keys: readonly string[]): Decoded | LogdError {
  try {
    if (encoding === 'protobuf') return decodeProtobuf(body, keys);
    const parsed = parseJson(body);
    return parsed instanceof LogdError ? parsed : decodeJson(parsed.value, keys);
  } catch (err) {
    if (!(err instanceof OtlpInvalid)) throw err;
    const code: ErrorCode = encoding === 'protobuf' ? 'LOGD_INVALID_PROTOBUF' : 'LOGD_BAD_REQUEST';
    return new LogdError(code, { field: err.field, description: err.description });
  }
}

/** The records admit() takes, and the rejected ones: how many, and the first MAX_NAMED named with their place. */
function admitAll(cfg: Config, decoded: Decoded): { entries: Accepted[]; rejected: number; named: string[] } {
  const window = acceptWindow(cfg, Date.now());
  const entries: Accepted[] = [];
  const named: string[] = [];
  let rejected = 0;
  decoded.records.forEach((r, n) => {
    const a = typeof r === 'string' ? r : admit(r, window, cfg.otlp.default_device_id);
    if (typeof a !== 'string') {
      entries.push(a);
      return;
    }
    if (rejected++ < MAX_NAMED) named.push(`${decoded.where(n)}: ${a}`);
  });
  return { entries, rejected, named };
}

/** partialSuccess.errorMessage: the count, then the first rejected records and why. */
function rejectedMessage(rejected: number, total: number, named: string[]): string {
  const more = rejected - named.length;
  return `${rejected} of ${total} log records rejected: ${named.join('; ')}${more ? `; ${more} more not listed` : ''}`;
}

function success(encoding: Encoding, rejected: number, errorMessage: string): string | Uint8Array {
  if (encoding === 'json') {
    return rejected ? JSON.stringify({ partialSuccess: { rejectedLogRecords: String(rejected), errorMessage } }) : '{}';
  }
  return ExportLogsServiceResponse.encode(rejected ? { partialSuccess: { rejectedLogRecords: rejected, errorMessage } } : {}).finish();
}

function exportLogs(cfg: Config, queue: Queue, x: Exchange, body: Buffer, encoding: Encoding, reply: Reply): void {
  const decoded = decode(body, encoding, cfg.otlp.device_attributes);
  if (decoded instanceof LogdError) return reply(x, decoded);
  const { entries, rejected, named } = admitAll(cfg, decoded);
  const message = rejected ? rejectedMessage(rejected, decoded.records.length, named) : '';
  appendEntries(queue, x, entries, () => {
    if (entries.length) protocolRecords.inc({ protocol: 'otlp', outcome: 'stored' }, entries.length);
    if (rejected) protocolRecords.inc({ protocol: 'otlp', outcome: 'rejected' }, rejected);
    send(x, 200, CONTENT_TYPES[encoding], success(encoding, rejected, message));
  }, reply);
}

function otlpLogs(cfg: Config, queue: Queue, x: Exchange, req: HttpRequest): void {
  const contentType = req.getHeader('content-type');
  const encoding: Encoding | undefined = PROTOBUF_TYPE.test(contentType) ? 'protobuf' : JSON_TYPE.test(contentType) ? 'json' : undefined;
  if (!encoding) {
    const got = contentType ? `"${contentType.slice(0, 100)}"` : 'none';
    return replyJson(x, new LogdError('LOGD_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/x-protobuf or application/json, got ${got}`));
  }
  const reply = encoding === 'protobuf' ? replyProtobuf : replyJson;
  readRequest(x, req, cfg.server.body_limit_batch, (body) => exportLogs(cfg, queue, x, body, encoding, reply), reply);
}

export const OTLP_ROUTES: Route[] = [
  {
    method: 'post', path: '/v1/logs', scope: 'ingest',
    summary: 'Export logs (OTLP/HTTP, binary protobuf or JSON)',
    description: 'An ExportLogsServiceRequest as application/x-protobuf or application/json (docs/otlp.md has the mapping). '
      + '200 with an ExportLogsServiceResponse in the request\'s encoding once every record not rejected is in the stream; '
      + 'records rejected one by one (a time outside the accepted window, log_data nested deeper than 32 levels, no device while otlp.default_device_id is empty) '
      + 'are counted and named in partialSuccess, the others stored. Errors are a google.rpc.Status in the request\'s encoding.',
    body: { type: 'string', format: 'binary' },
    bodyType: 'application/x-protobuf',
    ok: { description: 'ExportLogsServiceResponse (empty when every record is stored)', contentType: 'application/x-protobuf' },
    errors: [
      'LOGD_INVALID_PROTOBUF', 'LOGD_INVALID_JSON', 'LOGD_INVALID_UTF8', 'LOGD_INVALID_ENCODING', 'LOGD_BODY_TOO_LARGE', 'LOGD_UNSUPPORTED_MEDIA_TYPE',
      'LOGD_UNSUPPORTED_ENCODING', 'LOGD_OVERLOADED', 'LOGD_QUEUE_UNAVAILABLE', 'LOGD_BACKLOG_FULL',
    ],
    reply: replyJson,
    errorSchemas: {
      'application/json': { type: 'object', description: 'google.rpc.Status in OTLP/JSON', properties: { code: { type: 'integer', description: 'the gRPC code' }, message: { type: 'string' }, details: { type: 'array', items: { type: 'object' }, description: 'google.rpc.ErrorInfo (reason: logd\'s error code, domain: logd) and, for a 400, google.rpc.BadRequest' } } },
      'application/x-protobuf': { type: 'string', format: 'binary', description: 'google.rpc.Status, for a protobuf request' },
    },
    enabled: (cfg) => cfg.otlp.enabled,
    handle: (x, req, ctx) => otlpLogs(ctx.cfg, ctx.queue, x, req),
  },
];
