/**
 * JSON Schemas of the request bodies: ajv validates with them, and the
 * OpenAPI document is generated from the same objects.
 */
import { MAX_DEVICE_ID, MAX_LOG_DATA_DEPTH, MAX_MESSAGE } from '../model/entry';
import { LOG_LEVELS, type LogLevel } from '../model/levels';

export { LOG_LEVELS, type LogLevel };

/** Largest epoch-ms timestamp accepted (9999-12-31T23:59:59.999Z). */
export const MAX_EPOCH_MS = 253402300799999;
export const MAX_BATCH = 1000;

export const logEntrySchema = {
  $id: 'LogEntry',
  type: 'object',
  required: ['device_id', 'log_level', 'message'],
  additionalProperties: false,
  properties: {
    device_id: { type: 'string', minLength: 1, maxLength: MAX_DEVICE_ID, description: 'device or service that sent the log' },
    log_level: { type: 'string', enum: LOG_LEVELS, description: 'severity' },
    message: { type: 'string', minLength: 1, maxLength: MAX_MESSAGE, description: 'the log line' },
    log_data: {
      type: 'object',
      description: `structured context, stored as JSONB (at most ${MAX_LOG_DATA_DEPTH} levels deep); default {}`,
    },
    timestamp: {
      description: 'event time: ISO-8601 (no offset = UTC) or epoch milliseconds; default: receive time. Refused (422, type timestamp_out_of_window) when older than the level\'s retention (retention.days, retention.by_level) or more than ingest.max_future_s ahead',
      anyOf: [
        { type: 'string', minLength: 10, maxLength: 40 },
        { type: 'integer', minimum: 0, maximum: MAX_EPOCH_MS },
      ],
    },
  },
} as const;

export const batchSchema = {
  $id: 'LogBatch',
  type: 'object',
  required: ['logs'],
  additionalProperties: false,
  properties: {
    logs: { type: 'array', minItems: 1, maxItems: MAX_BATCH, items: { $ref: 'LogEntry' } },
  },
} as const;

export interface LogEntry {
  device_id: string;
  log_level: LogLevel;
  message: string;
  log_data?: Record<string, unknown>;
  timestamp?: string | number;
}

/** Answers, for the OpenAPI document. */
export const logReceivedSchema = {
  type: 'object',
  required: ['status', 'message_id', 'received_at'],
  properties: {
    status: { const: 'received' },
    message_id: { type: 'string', description: '<stream entry ID>:<position in the request>', examples: ['1795838279662-0:0'] },
    received_at: { type: 'string', format: 'date-time' },
  },
} as const;

export const batchReceivedSchema = {
  type: 'object',
  required: ['status', 'count', 'message_ids', 'received_at'],
  properties: {
    status: { const: 'received' },
    count: { type: 'integer', minimum: 1, maximum: MAX_BATCH },
    message_ids: { type: 'array', items: { type: 'string' }, description: 'one per log, in request order' },
    received_at: { type: 'string', format: 'date-time' },
  },
} as const;

/** POST /api/logs/batch with an NDJSON body (src/http/ndjson.ts). */
export const ndjsonReceivedSchema = {
  type: 'object',
  required: ['status', 'count', 'message_ids', 'received_at', 'errors', 'rejected', 'items'],
  properties: {
    status: { const: 'received' },
    count: { type: 'integer', minimum: 1, description: 'lines stored' },
    message_ids: { type: 'array', items: { type: 'string' }, description: 'one per stored line, in request order' },
    received_at: { type: 'string', format: 'date-time' },
    errors: { type: 'boolean', description: 'whether any line was rejected' },
    rejected: { type: 'integer', minimum: 0, description: 'lines rejected (not stored)' },
    items: {
      type: 'array',
      description: 'the first 100 rejected lines',
      items: {
        type: 'object',
        required: ['line', 'status', 'detail'],
        properties: {
          line: { type: 'integer', minimum: 1, description: 'line number, from 1, blank lines counted' },
          status: { enum: [400, 422], description: '400: not UTF-8 or not JSON; 422: not a valid log entry' },
          detail: { type: 'array', items: { type: 'object' }, description: 'the problems, as in a 422 detail (loc starts with "line", n)' },
        },
      },
    },
  },
} as const;

const componentSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { enum: ['up', 'down'] }, latency_ms: { type: 'number' }, error: { type: 'string' } },
} as const;

export const healthSchema = {
  type: 'object',
  required: ['status', 'reasons', 'components'],
  properties: {
    status: { enum: ['healthy', 'degraded', 'unhealthy'], description: 'degraded: ingest still accepts; unhealthy: Redis is down' },
    reasons: { type: 'array', items: { type: 'string' }, description: 'why the status is not healthy; also, whatever the status, that authentication is off' },
    components: {
      type: 'object',
      properties: {
        redis: componentSchema,
        postgres: componentSchema,
        stream: {
          type: 'object',
          properties: { backlog: { type: 'integer' }, max_backlog: { type: 'integer' }, dead_letters: { type: 'integer' } },
        },
        persisters: { type: 'object', additionalProperties: { type: 'object' }, description: 'live persisters by consumer name' },
      },
    },
  },
} as const;
