/**
 * OTLP logs (https://opentelemetry.io/docs/specs/otlp/#otlphttp): an
 * ExportLogsServiceRequest, in binary protobuf or in OTLP/JSON, as Drafts of
 * the log model, each record's Draft or the reason it is rejected.
 *
 * The messages are those of github.com/open-telemetry/opentelemetry-proto
 * (opentelemetry/proto/logs/v1/logs.proto, common/v1/common.proto,
 * resource/v1/resource.proto, collector/logs/v1/logs_service.proto) and, for
 * error answers, google.rpc.Status, ErrorInfo and BadRequest
 * (github.com/googleapis/googleapis google/rpc/status.proto and
 * error_details.proto), built from a JSON descriptor: field names are the
 * JSON names (lowerCamelCase). Fields logd does not read (schemaUrl,
 * droppedAttributesCount, entityRefs, the profiling signal's strindex
 * fields) are skipped as unknown.
 *
 * A record maps to a Draft as follows (docs/otlp.md):
 * - device_id: the first of `deviceKeys` with a non-empty string value in
 *   the record's attributes, else in its resource's attributes, else ''.
 * - log_level: severityNumber 1-8 DEBUG, 9-12 INFO, 13-16 WARNING, 17-20
 *   ERROR, 21-24 CRITICAL; any other number: the level severityText names;
 *   else INFO.
 * - message: the body as JSON (below), written as JSON text unless it is
 *   a string (a string body, bytes in base64, a large int64's digits):
 *   then as it is; no body (or an empty one) ''.
 * - time: timeUnixNano, else observedTimeUnixNano (0 is unset), else none
 *   (the receive time); to the microsecond, the rest cut.
 * - log_data: attributes, resource (the resource's attributes), scope
 *   ({name, version, attributes}), trace_id and span_id (lower-case hex),
 *   flags, severity_text, severity_number, event_name, each only when set.
 *   AnyValues become JSON: int64 a number when it is a safe integer, else
 *   its decimal text; a double that is not finite its text ("NaN",
 *   "Infinity", "-Infinity"); bytes base64; a kvlist an object; an empty
 *   AnyValue null.
 *
 * Nesting is followed only as deep as log_data may nest (MAX_LOG_DATA_DEPTH):
 * a record whose attributes or body nest deeper is rejected. In protobuf,
 * each resource, scope and record is decoded on its own: one that does not
 * decode rejects the records it holds, not the request.
 */
import { Root, type Type } from 'protobufjs/light';
import type Long from 'long';
import { MAX_LOG_DATA_DEPTH, type Draft } from '../model/entry';
import { levelFromText, type LogLevel } from '../model/levels';
import { nanosInstant, type Instant } from '../model/time';

const DESCRIPTOR = {
  nested: {
    AnyValue: {
      oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] } },
      fields: {
        stringValue: { type: 'string', id: 1 },
        boolValue: { type: 'bool', id: 2 },
        intValue: { type: 'int64', id: 3 },
        doubleValue: { type: 'double', id: 4 },
        arrayValue: { type: 'ArrayValue', id: 5 },
        kvlistValue: { type: 'KeyValueList', id: 6 },
        bytesValue: { type: 'bytes', id: 7 },
      },
    },
    ArrayValue: { fields: { values: { rule: 'repeated', type: 'AnyValue', id: 1 } } },
    KeyValueList: { fields: { values: { rule: 'repeated', type: 'KeyValue', id: 1 } } },
    KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } } },
    InstrumentationScope: {
      fields: { name: { type: 'string', id: 1 }, version: { type: 'string', id: 2 }, attributes: { rule: 'repeated', type: 'KeyValue', id: 3 } },
    },
    Resource: { fields: { attributes: { rule: 'repeated', type: 'KeyValue', id: 1 } } },
    LogRecord: {
      fields: {
        timeUnixNano: { type: 'fixed64', id: 1 },
        observedTimeUnixNano: { type: 'fixed64', id: 11 },
        severityNumber: { type: 'int32', id: 2 },
        severityText: { type: 'string', id: 3 },
        body: { type: 'AnyValue', id: 5 },
        attributes: { rule: 'repeated', type: 'KeyValue', id: 6 },
        flags: { type: 'fixed32', id: 8 },
        traceId: { type: 'bytes', id: 9 },
        spanId: { type: 'bytes', id: 10 },
        eventName: { type: 'string', id: 12 },
      },
    },
    ScopeLogs: { fields: { scope: { type: 'InstrumentationScope', id: 1 }, logRecords: { rule: 'repeated', type: 'LogRecord', id: 2 } } },
    ResourceLogs: { fields: { resource: { type: 'Resource', id: 1 }, scopeLogs: { rule: 'repeated', type: 'ScopeLogs', id: 2 } } },
    ExportLogsServiceRequest: { fields: { resourceLogs: { rule: 'repeated', type: 'ResourceLogs', id: 1 } } },
    ExportLogsPartialSuccess: { fields: { rejectedLogRecords: { type: 'int64', id: 1 }, errorMessage: { type: 'string', id: 2 } } },
    ExportLogsServiceResponse: { fields: { partialSuccess: { type: 'ExportLogsPartialSuccess', id: 1 } } },
    Any: { fields: { typeUrl: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
    Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 }, details: { rule: 'repeated', type: 'Any', id: 3 } } },
    ErrorInfo: { fields: { reason: { type: 'string', id: 1 }, domain: { type: 'string', id: 2 } } },
    FieldViolation: { fields: { field: { type: 'string', id: 1 }, description: { type: 'string', id: 2 } } },
    BadRequest: { fields: { fieldViolations: { rule: 'repeated', type: 'FieldViolation', id: 1 } } },
    // ExportLogsServiceRequest on the wire with each Resource, InstrumentationScope and LogRecord left as its bytes
    ScopeLogsParts: { fields: { scope: { type: 'bytes', id: 1 }, logRecords: { rule: 'repeated', type: 'bytes', id: 2 } } },
    ResourceLogsParts: { fields: { resource: { type: 'bytes', id: 1 }, scopeLogs: { rule: 'repeated', type: 'ScopeLogsParts', id: 2 } } },
    RequestParts: { fields: { resourceLogs: { rule: 'repeated', type: 'ResourceLogsParts', id: 1 } } },
  },
};

const ROOT = Root.fromJSON(DESCRIPTOR);
export const ExportLogsServiceRequest: Type = ROOT.lookupType('ExportLogsServiceRequest');
export const ExportLogsServiceResponse: Type = ROOT.lookupType('ExportLogsServiceResponse');
export const Status: Type = ROOT.lookupType('Status');
export const ErrorInfo: Type = ROOT.lookupType('ErrorInfo');
export const BadRequest: Type = ROOT.lookupType('BadRequest');
const RequestParts = ROOT.lookupType('RequestParts');
const Resource = ROOT.lookupType('Resource');
const InstrumentationScope = ROOT.lookupType('InstrumentationScope');
const LogRecord = ROOT.lookupType('LogRecord');

/** The request is not an ExportLogsServiceRequest (nothing of it is stored); `field` names where, when known. */
export class OtlpInvalid extends Error {
  constructor(readonly description: string, readonly field = '') {
    super(field ? `${field}: ${description}` : description);
    this.name = 'OtlpInvalid';
  }
}

/** What a request holds: every log record, in order, as a Draft or the reason it is rejected. */
export interface Decoded {
  records: (Draft | string)[];
  /** the path of record `n` in the request: resourceLogs[i].scopeLogs[j].logRecords[k] */
  where(n: number): string;
}

// Messages as protobufjs decodes them: fields not sent read as their defaults from the prototype, so a oneof
// member is told set by being an own property.
interface PbKeyValue { key: string; value: PbAnyValue | null }
interface PbAnyValue {
  stringValue: string;
  boolValue: boolean;
  intValue: Long;
  doubleValue: number;
  arrayValue: { values: PbAnyValue[] } | null;
  kvlistValue: { values: PbKeyValue[] } | null;
  bytesValue: Uint8Array;
}
interface PbLogRecord {
  timeUnixNano: Long;
  observedTimeUnixNano: Long;
  severityNumber: number;
  severityText: string;
  body: PbAnyValue | null;
  attributes: PbKeyValue[];
  flags: number;
  traceId: Uint8Array;
  spanId: Uint8Array;
  eventName: string;
}
interface PbScope { name: string; version: string; attributes: PbKeyValue[] }
/** RequestParts' messages: the resource, scope and records still encoded. */
interface RawScopeLogs { scope: Uint8Array; logRecords: Uint8Array[] }
interface RawResourceLogs { resource: Uint8Array; scopeLogs: RawScopeLogs[] }

/** Levels of log_data a value may open below it: log_data > attributes > the value's own levels. */
const ATTRIBUTE_ROOM = MAX_LOG_DATA_DEPTH - 2;
/** log_data > scope > attributes > the value. */
const SCOPE_ATTRIBUTE_ROOM = MAX_LOG_DATA_DEPTH - 3;
const TOO_DEEP = `nests deeper than ${MAX_LOG_DATA_DEPTH} levels`;

/** Thrown where a value nests deeper than its room; caught per record. */
class TooDeep extends Error {}

/** A field of one record (or of its resource or scope) that breaks OTLP/JSON; caught per record. */
class BadField extends Error {}

const TWO_32 = 4294967296;

/** An int64 as JSON: a number when it is a safe integer, else its decimal text. */
function int64Json(v: Long): number | string {
  const n = v.high * TWO_32 + (v.low >>> 0);
  return Number.isSafeInteger(n) ? n : BigInt.asIntN(64, (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0)).toString();
}

const unsigned64 = (v: Long): bigint => (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);

const doubleJson = (n: number): number | string => (Number.isFinite(n) ? n : String(n));

/** Sets `o[k]`, also for "__proto__" (an own property, not the prototype). */
function put(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

function pbValue(v: PbAnyValue, room: number): unknown {
  if (Object.hasOwn(v, 'stringValue')) return v.stringValue;
  if (Object.hasOwn(v, 'intValue')) return int64Json(v.intValue);
  if (Object.hasOwn(v, 'boolValue')) return v.boolValue;
  if (Object.hasOwn(v, 'doubleValue')) return doubleJson(v.doubleValue);
  if (Object.hasOwn(v, 'kvlistValue')) return pbKeyValues(v.kvlistValue?.values ?? [], room - 1);
  if (Object.hasOwn(v, 'arrayValue')) {
    if (room < 1) throw new TooDeep();
    return (v.arrayValue?.values ?? []).map((x) => pbValue(x, room - 1));
  }
  if (Object.hasOwn(v, 'bytesValue')) return Buffer.from(v.bytesValue.buffer, v.bytesValue.byteOffset, v.bytesValue.byteLength).toString('base64');
  return null;
}

/** A KeyValue list as an object opening one level of log_data (with `room` levels left for it and below). */
function pbKeyValues(list: PbKeyValue[], room: number): Record<string, unknown> {
  if (room < 0) throw new TooDeep();
  const o: Record<string, unknown> = {};
  for (const kv of list) put(o, kv.key, kv.value ? pbValue(kv.value, room) : null);
  return o;
}

/** Lower-case hex of an id of `size` bytes, or '' when it is not one (wrong length, all zero). */
function idHex(b: Uint8Array, size: number): string {
  if (b.length !== size || b.every((x) => x === 0)) return '';
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

const SEVERITY_WORDS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
/** SeverityNumber's names by number (logs.proto). */
const SEVERITY_NAMES = ['SEVERITY_NUMBER_UNSPECIFIED', ...SEVERITY_WORDS.flatMap((w) => ['', '2', '3', '4'].map((i) => `SEVERITY_NUMBER_${w}${i}`))];
const SEVERITY_LEVELS: LogLevel[] = ['DEBUG', 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];

/** The model level of a record: its severity number's range (1..24), else its severity text, else INFO. */
export function severityLevel(num: number, text: string): LogLevel {
  if (num >= 1 && num <= 24) return SEVERITY_LEVELS[(num - 1) >> 2];
  return (text && levelFromText(text)) || 'INFO';
}

/** The first of `keys` with a non-empty string value in `attributes`, or ''. */
function deviceIn(attributes: Record<string, unknown> | undefined, keys: readonly string[]): string {
  if (!attributes) return '';
  for (const k of keys) {
    const v = Object.hasOwn(attributes, k) ? attributes[k] : undefined;
    if (typeof v === 'string' && v) return v;
  }
  return '';
}

/** What the records of one ScopeLogs share: their resource's and scope's parts of log_data, or why they are all rejected. */
interface Shared {
  resource?: Record<string, unknown>;
  scope?: Record<string, unknown>;
  /** the device the resource names ('' for none) */
  device: string;
  error?: string;
}

/** One record's fields, read from either encoding. */
interface Fields {
  time: bigint;
  observed: bigint;
  severityNumber: number;
  severityText: string;
  /** the body: a string as it is, anything else already as JSON; undefined when there is none */
  body: unknown;
  attributes?: Record<string, unknown>;
  traceId: string;
  spanId: string;
  flags: number;
  eventName: string;
}

/** The event time: time, else observed time (0 = unset), else none. */
function recordTime(f: Fields): Instant | undefined {
  const ns = f.time || f.observed;
  return ns ? nanosInstant(ns) : undefined;
}

function draftOf(f: Fields, shared: Shared, keys: readonly string[]): Draft {
  const time = recordTime(f);
  const data: Record<string, unknown> = {};
  if (f.attributes) data.attributes = f.attributes;
  if (shared.resource) data.resource = shared.resource;
  if (shared.scope) data.scope = shared.scope;
  if (f.traceId) data.trace_id = f.traceId;
  if (f.spanId) data.span_id = f.spanId;
  if (f.flags) data.flags = f.flags;
  if (f.severityText) data.severity_text = f.severityText;
  if (f.severityNumber) data.severity_number = f.severityNumber;
  if (f.eventName) data.event_name = f.eventName;
  const d: Draft = {
    device_id: deviceIn(f.attributes, keys) || shared.device,
    log_level: severityLevel(f.severityNumber, f.severityText),
    message: f.body === undefined || f.body === null ? '' : typeof f.body === 'string' ? f.body : JSON.stringify(f.body),
    data,
    // every value was read within the room its place leaves (ATTRIBUTE_ROOM, SCOPE_ATTRIBUTE_ROOM)
    boundedDepth: true,
  };
  if (time) d.time = time;
  return d;
}

/** The reason a record is rejected for an error thrown reading `part` of it (a nesting or field error), else rethrows. */
function rejection(err: unknown, part: string): string {
  if (err instanceof TooDeep) return `${part}: ${TOO_DEEP}`;
  if (err instanceof BadField) return `${part}: ${err.message}`;
  throw err;
}

/** Collects records and where each ScopeLogs starts, for Decoded.where(). */
class Collector {
  readonly records: (Draft | string)[] = [];
  private readonly starts: { at: number; i: number; j: number }[] = [];

  scope(i: number, j: number): void {
    this.starts.push({ at: this.records.length, i, j });
  }

  decoded(): Decoded {
    const { records, starts } = this;
    return {
      records,
      where(n) {
        let s = starts[0];
        for (const x of starts) if (x.at <= n) s = x;
        return `resourceLogs[${s.i}].scopeLogs[${s.j}].logRecords[${n - s.at}]`;
      },
    };
  }
}

/** A message of `type` in `bytes`, decoded on its own (a failure is a BadField: the records' rejection). */
function decodePart<T>(type: Type, bytes: Uint8Array): T {
  try {
    return type.decode(bytes) as unknown as T;
  } catch (err) {
    throw new BadField(`not valid protobuf (${(err as Error).message})`);
  }
}

function pbScope(bytes: Uint8Array): Record<string, unknown> | undefined {
  if (!bytes.length) return undefined;
  const scope = decodePart<PbScope>(InstrumentationScope, bytes);
  if (!scope.name && !scope.version && !scope.attributes.length) return undefined;
  const o: Record<string, unknown> = {};
  if (scope.name) o.name = scope.name;
  if (scope.version) o.version = scope.version;
  if (scope.attributes.length) o.attributes = pbKeyValues(scope.attributes, SCOPE_ATTRIBUTE_ROOM);
  return o;
}

function pbResource(bytes: Uint8Array): Record<string, unknown> | undefined {
  if (!bytes.length) return undefined;
  const { attributes } = decodePart<{ attributes: PbKeyValue[] }>(Resource, bytes);
  return attributes.length ? pbKeyValues(attributes, ATTRIBUTE_ROOM) : undefined;
}

function pbShared(rl: RawResourceLogs, sl: RawScopeLogs, keys: readonly string[]): Shared {
  let part = 'resource';
  try {
    const resource = pbResource(rl.resource);
    part = 'scope';
    return { resource, scope: pbScope(sl.scope), device: deviceIn(resource, keys) };
  } catch (err) {
    return { device: '', error: rejection(err, part) };
  }
}

const fixed64 = (v: Long): bigint => (v.low || v.high ? unsigned64(v) : 0n);

function pbRecord(bytes: Uint8Array, shared: Shared, keys: readonly string[]): Draft | string {
  if (shared.error) return shared.error;
  let part = 'log record';
  try {
    const r = decodePart<PbLogRecord>(LogRecord, bytes);
    part = 'attributes';
    const attributes = r.attributes.length ? pbKeyValues(r.attributes, ATTRIBUTE_ROOM) : undefined;
    part = 'body';
    const body = r.body ? pbValue(r.body, MAX_LOG_DATA_DEPTH) : undefined;
    return draftOf({
      time: fixed64(r.timeUnixNano),
      observed: fixed64(r.observedTimeUnixNano),
      severityNumber: r.severityNumber,
      severityText: r.severityText,
      body,
      attributes,
      traceId: idHex(r.traceId, 16),
      spanId: idHex(r.spanId, 8),
      flags: r.flags,
      eventName: r.eventName,
    }, shared, keys);
  } catch (err) {
    return rejection(err, part);
  }
}

/**
 * A binary protobuf ExportLogsServiceRequest; throws OtlpInvalid when its
 * structure does not decode. Each resource, scope and log record is decoded
 * on its own (RequestParts), so one that does not (protobufjs stops at 100
 * nested messages, as protoc does) rejects only the records it holds.
 */
export function decodeProtobuf(body: Uint8Array, keys: readonly string[]): Decoded {
  let req: { resourceLogs: RawResourceLogs[] };
  try {
    req = RequestParts.decode(body) as unknown as { resourceLogs: RawResourceLogs[] };
  } catch (err) {
    throw new OtlpInvalid(`the body is not an ExportLogsServiceRequest: ${(err as Error).message}`);
  }
  const out = new Collector();
  req.resourceLogs.forEach((rl, i) => {
    rl.scopeLogs.forEach((sl, j) => {
      out.scope(i, j);
      const shared = pbShared(rl, sl, keys);
      for (const r of sl.logRecords) out.records.push(pbRecord(r, shared, keys));
    });
  });
  return out.decoded();
}

// OTLP/JSON: the proto3 JSON mapping (lowerCamelCase names, or the proto's own names), with OTLP's deviations:
// traceId and spanId in hex, enums as numbers (names are accepted too), unknown fields ignored.

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `o`'s field by its JSON name, else its proto name; null reads as absent (proto3 JSON). */
function field(o: Json, camel: string, snake: string): unknown {
  const v = o[camel] ?? o[snake];
  return v === null ? undefined : v;
}

/** An array field (absent: empty), or `fail` with what it is instead. */
function arrayField(o: Json, camel: string, snake: string, fail: (msg: string) => Error): unknown[] {
  const v = field(o, camel, snake);
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw fail(`${camel} must be an array`);
  return v;
}

const badField = (msg: string): BadField => new BadField(msg);

function stringField(o: Json, camel: string, snake: string): string {
  const v = field(o, camel, snake);
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new BadField(`${camel} must be a string`);
  return v;
}

const INTEGER = /^-?\d+$/;

/** An integer field as JSON numbers or decimal text (proto3 JSON), checked against [min, max]. */
function integerField(o: Json, camel: string, snake: string, min: bigint, max: bigint): bigint {
  const v = field(o, camel, snake);
  if (v === undefined) return 0n;
  let n: bigint | undefined;
  if (typeof v === 'number' && Number.isInteger(v)) n = BigInt(v);
  else if (typeof v === 'string' && INTEGER.test(v)) n = BigInt(v);
  if (n === undefined || n < min || n > max) throw new BadField(`${camel} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

const MAX_U64 = 2n ** 64n - 1n;
const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;
const MAX_U32 = 2n ** 32n - 1n;
const MIN_I32 = -(2n ** 31n);
const MAX_I32 = 2n ** 31n - 1n;

function severityField(o: Json): number {
  const v = field(o, 'severityNumber', 'severity_number');
  if (typeof v === 'string' && SEVERITY_NAMES.includes(v)) return SEVERITY_NAMES.indexOf(v);
  return Number(integerField(o, 'severityNumber', 'severity_number', MIN_I32, MAX_I32));
}

function doubleField(o: Json): number | string {
  const v = field(o, 'doubleValue', 'double_value');
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || (Number.isNaN(n) && v !== 'NaN')) throw new BadField(`doubleValue must be a number, got ${JSON.stringify(v)}`);
  return doubleJson(n);
}

/** The JSON names of AnyValue's fields and their proto names, in the order a value's kind is looked up. */
const ANY_FIELDS: [string, string][] = [
  ['stringValue', 'string_value'], ['intValue', 'int_value'], ['boolValue', 'bool_value'], ['doubleValue', 'double_value'],
  ['kvlistValue', 'kvlist_value'], ['arrayValue', 'array_value'], ['bytesValue', 'bytes_value'],
];

function jsonValue(v: unknown, room: number): unknown {
  if (!isObject(v)) throw new BadField(`an AnyValue must be an object, got ${JSON.stringify(v)?.slice(0, 40)}`);
  const kind = ANY_FIELDS.find(([camel, snake]) => field(v, camel, snake) !== undefined)?.[0];
  switch (kind) {
    case 'stringValue': return stringField(v, 'stringValue', 'string_value');
    case 'intValue': {
      const n = integerField(v, 'intValue', 'int_value', MIN_I64, MAX_I64);
      return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString();
    }
    case 'boolValue': {
      const b = field(v, 'boolValue', 'bool_value');
      if (typeof b !== 'boolean') throw new BadField(`boolValue must be true or false, got ${JSON.stringify(b)}`);
      return b;
    }
    case 'doubleValue': return doubleField(v);
    case 'kvlistValue': return jsonKeyValues(kvlistValues(v), room - 1);
    case 'arrayValue': {
      if (room < 1) throw new TooDeep();
      const list = field(v, 'arrayValue', 'array_value');
      if (!isObject(list)) throw new BadField('arrayValue must be an object');
      return arrayField(list, 'values', 'values', badField).map((x) => jsonValue(x, room - 1));
    }
    case 'bytesValue': return Buffer.from(stringField(v, 'bytesValue', 'bytes_value'), 'base64').toString('base64');
    default: return null;
  }
}

function kvlistValues(v: Json): unknown[] {
  const list = field(v, 'kvlistValue', 'kvlist_value');
  if (!isObject(list)) throw new BadField('kvlistValue must be an object');
  return arrayField(list, 'values', 'values', badField);
}

function jsonKeyValues(list: unknown[], room: number): Record<string, unknown> {
  if (room < 0) throw new TooDeep();
  const o: Record<string, unknown> = {};
  for (const kv of list) {
    if (!isObject(kv)) throw new BadField('a KeyValue must be an object');
    const value = field(kv, 'value', 'value');
    put(o, stringField(kv, 'key', 'key'), value === undefined ? null : jsonValue(value, room));
  }
  return o;
}

/** The attributes field of `o` as an object, or undefined when there are none. */
function jsonAttributes(o: Json, room: number): Record<string, unknown> | undefined {
  const list = arrayField(o, 'attributes', 'attributes', badField);
  return list.length ? jsonKeyValues(list, room) : undefined;
}

const HEX_ID = /^[0-9a-f]*$/i;

/** A traceId or spanId in hex: lower-case, or '' when absent or invalid (wrong length, all zero, not hex). */
function jsonId(o: Json, camel: string, snake: string, size: number): string {
  const v = stringField(o, camel, snake);
  return v.length === size * 2 && HEX_ID.test(v) && !/^0+$/.test(v) ? v.toLowerCase() : '';
}

function jsonRecord(r: unknown, shared: Shared, keys: readonly string[]): Draft | string {
  if (shared.error) return shared.error;
  if (!isObject(r)) return 'a log record must be an object';
  let part = 'log record';
  try {
    const time = integerField(r, 'timeUnixNano', 'time_unix_nano', 0n, MAX_U64);
    const observed = integerField(r, 'observedTimeUnixNano', 'observed_time_unix_nano', 0n, MAX_U64);
    const severityNumber = severityField(r);
    const severityText = stringField(r, 'severityText', 'severity_text');
    const traceId = jsonId(r, 'traceId', 'trace_id', 16);
    const spanId = jsonId(r, 'spanId', 'span_id', 8);
    const flags = Number(integerField(r, 'flags', 'flags', 0n, MAX_U32));
    const eventName = stringField(r, 'eventName', 'event_name');
    part = 'attributes';
    const attributes = jsonAttributes(r, ATTRIBUTE_ROOM);
    part = 'body';
    const body = field(r, 'body', 'body');
    const value = body === undefined ? undefined : jsonValue(body, MAX_LOG_DATA_DEPTH);
    return draftOf({ time, observed, severityNumber, severityText, body: value, attributes, traceId, spanId, flags, eventName }, shared, keys);
  } catch (err) {
    return rejection(err, part);
  }
}

function jsonScope(sl: Json): Record<string, unknown> | undefined {
  const scope = field(sl, 'scope', 'scope');
  if (scope === undefined) return undefined;
  if (!isObject(scope)) throw new BadField('scope must be an object');
  const name = stringField(scope, 'name', 'name');
  const version = stringField(scope, 'version', 'version');
  const attributes = jsonAttributes(scope, SCOPE_ATTRIBUTE_ROOM);
  if (!name && !version && !attributes) return undefined;
  const o: Record<string, unknown> = {};
  if (name) o.name = name;
  if (version) o.version = version;
  if (attributes) o.attributes = attributes;
  return o;
}

function jsonShared(rl: Json, sl: Json, keys: readonly string[]): Shared {
  let part = 'resource';
  try {
    const r = field(rl, 'resource', 'resource');
    if (r !== undefined && !isObject(r)) throw new BadField('must be an object');
    const resource = r === undefined ? undefined : jsonAttributes(r, ATTRIBUTE_ROOM);
    part = 'scope';
    return { resource, scope: jsonScope(sl), device: deviceIn(resource, keys) };
  } catch (err) {
    return { device: '', error: rejection(err, part) };
  }
}

/** Each element of an array field of `o`, which must be objects: the request's structure, not one record's. */
function structure(o: Json, camel: string, snake: string, at: string): Json[] {
  const list = arrayField(o, camel, snake, (msg) => new OtlpInvalid(msg, at));
  list.forEach((x, i) => {
    if (!isObject(x)) throw new OtlpInvalid('must be an object', `${at}${at ? '.' : ''}${camel}[${i}]`);
  });
  return list as Json[];
}

/** A parsed OTLP/JSON ExportLogsServiceRequest; throws OtlpInvalid when its structure is not one. */
export function decodeJson(req: unknown, keys: readonly string[]): Decoded {
  if (!isObject(req)) throw new OtlpInvalid('the body must be a JSON object (an ExportLogsServiceRequest)');
  const out = new Collector();
  structure(req, 'resourceLogs', 'resource_logs', '').forEach((rl, i) => {
    structure(rl, 'scopeLogs', 'scope_logs', `resourceLogs[${i}]`).forEach((sl, j) => {
      out.scope(i, j);
      const shared = jsonShared(rl, sl, keys);
      const records = arrayField(sl, 'logRecords', 'log_records', (msg) => new OtlpInvalid(msg, `resourceLogs[${i}].scopeLogs[${j}]`));
      for (const r of records) out.records.push(jsonRecord(r, shared, keys));
    });
  });
  return out.decoded();
}
