/**
 * JSON Schemas of the read routes: their query parameters (ajv validates the
 * query string with them, see query.ts) and their answers, for the OpenAPI
 * document. Query values arrive as strings: `type: 'integer'` parameters in
 * decimal are converted, and `type: 'array'` parameters are collected from
 * repeated and comma-separated values, before validation (query.ts).
 */
import { HISTOGRAM_STEPS, MAX_BUCKETS } from '../read/histogram';
import { LOG_LEVELS, MAX_EPOCH_MS } from './schemas';

export const MAX_LIMIT = 1000;
export const DEFAULT_LIMIT = 100;

/** PostgreSQL text cannot hold U+0000. */
const NO_NUL = '^[^\\u0000]*$';

const limit = {
  type: 'integer', minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT,
  description: `most logs in the answer (1..${MAX_LIMIT})`,
} as const;

/** `format: 'date-time'` is checked by logd's own rule (query.ts), the same as the `timestamp` of a posted log. */
const time = (description: string) => ({
  type: 'string', format: 'date-time', maxLength: 40,
  description: `${description}: ISO-8601 (no offset = UTC, microseconds kept) or epoch milliseconds (0..${MAX_EPOCH_MS})`,
}) as const;

/** The `{device_id}` path parameter of GET /api/logs/{device_id} (percent-decoded). */
export const deviceIdParamSchema = {
  type: 'string', minLength: 1, maxLength: 50, pattern: NO_NUL, description: 'the device whose logs to read',
} as const;

export const deviceLogsQuerySchema = {
  $id: 'DeviceLogsQuery',
  type: 'object',
  additionalProperties: false,
  properties: { limit },
} as const;

export const searchQuerySchema = {
  $id: 'SearchLogsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    device_id: { ...deviceIdParamSchema, description: 'only this device' },
    level: {
      type: 'array', minItems: 1, maxItems: LOG_LEVELS.length, uniqueItems: true, items: { type: 'string', enum: LOG_LEVELS },
      description: 'only these levels: repeat the parameter (level=ERROR&level=CRITICAL) or separate with commas (level=ERROR,CRITICAL)',
    },
    since: time('only logs created at or after this time'),
    until: time('only logs created before this time'),
    q: {
      type: 'string', minLength: 1, maxLength: 200, pattern: NO_NUL,
      description: 'only logs whose message contains every word of it, case-insensitively, as a substring; a "double-quoted phrase" is one term, spaces included (q=timeout db-7: both words; q="disk full": the phrase). At most 8 terms; %, _ and \\ are literal. A term of 1 or 2 characters cannot use the search indexes',
    },
    data: {
      type: 'string', maxLength: 2000, contentMediaType: 'application/json', contentSchema: { type: 'object' },
      description: 'a JSON object: only logs whose log_data contains it (jsonb @>), e.g. {"disk":"/dev/sda"}',
    },
    limit,
    cursor: {
      type: 'string', maxLength: 200, pattern: '^[A-Za-z0-9_-]+$',
      description: 'next_cursor of the previous page: the page after it (same filters)',
    },
  },
} as const;

export const statsQuerySchema = {
  $id: 'StatsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    since: time('count only logs created at or after this time (exact); without it, all logs'),
  },
} as const;

export const histogramQuerySchema = {
  $id: 'HistogramQuery',
  type: 'object',
  additionalProperties: false,
  required: ['since'],
  properties: {
    since: time('the range start (inclusive)'),
    until: time('the range end (exclusive); default: now'),
    step: {
      type: 'string', enum: Object.keys(HISTOGRAM_STEPS),
      description: `the bucket width, buckets aligned to UTC midnight; default: the smallest that gives at most 200 buckets. At most ${MAX_BUCKETS} buckets`,
    },
    device_id: { ...deviceIdParamSchema, description: 'only this device: each bucket then has its total, without levels' },
  },
} as const;

export const MAX_DEVICES = 100;

export const devicesQuerySchema = {
  $id: 'DevicesQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    prefix: { type: 'string', maxLength: 50, pattern: NO_NUL, default: '', description: 'only devices whose id starts with this text (case-sensitive; % and _ are literal); empty: every device' },
    limit: { type: 'integer', minimum: 1, maximum: MAX_DEVICES, default: 20, description: `most devices in the answer (1..${MAX_DEVICES})` },
  },
} as const;

export const purgeQuerySchema = {
  $id: 'PurgeLogsQuery',
  type: 'object',
  additionalProperties: false,
  required: ['device_id'],
  properties: {
    device_id: { ...deviceIdParamSchema, description: 'the device whose logs to delete' },
    until: time("delete only logs created before this time; without it, all of the device's logs"),
  },
} as const;

// ---------------------------------------------------------------------------
// answers

export const storedLogSchema = {
  type: 'object',
  required: ['id', 'device_id', 'log_level', 'message', 'log_data', 'created_at'],
  properties: {
    id: { type: 'integer' },
    device_id: { type: 'string' },
    log_level: { type: 'string', enum: LOG_LEVELS },
    message: { type: ['string', 'null'] },
    log_data: { type: ['object', 'null'] },
    created_at: { type: ['string', 'null'], format: 'date-time', description: 'event time, UTC, microseconds: 2026-11-28T03:57:59.661000Z' },
  },
} as const;

export const deviceLogsAnswerSchema = {
  type: 'object',
  required: ['source', 'total', 'data'],
  properties: {
    source: { enum: ['cache', 'database'], description: 'where this answer came from' },
    total: { type: 'integer', description: 'number of logs in data (as the reference: not the device\'s total)' },
    data: { type: 'array', items: storedLogSchema, description: 'newest first (created_at, then id, descending)' },
  },
} as const;

export const searchAnswerSchema = {
  type: 'object',
  required: ['total', 'data', 'next_cursor'],
  properties: {
    total: { type: 'integer', description: 'number of logs in data' },
    data: { type: 'array', items: storedLogSchema, description: 'newest first (created_at, then id, descending)' },
    next_cursor: { type: ['string', 'null'], description: 'pass as cursor for the next page; null on the last page' },
  },
} as const;

export const statsAnswerSchema = {
  type: 'object',
  required: ['source', 'total_logs', 'logs_by_level', 'recent_devices', 'top_devices'],
  properties: {
    source: { enum: ['cache', 'database'] },
    since: { type: 'string', format: 'date-time', description: 'the window start, when since was given' },
    total_logs: { type: 'integer' },
    logs_by_level: {
      type: 'object', properties: Object.fromEntries(LOG_LEVELS.map((l) => [l, { type: 'integer' }])),
      description: 'every level, 0 included',
    },
    recent_devices: { type: 'array', items: { type: 'string' }, maxItems: 10, description: 'the 10 devices with the most logs, most first' },
    top_devices: {
      type: 'array', maxItems: 10,
      items: { type: 'object', required: ['device_id', 'count'], properties: { device_id: { type: 'string' }, count: { type: 'integer' } } },
      description: 'recent_devices with their counts',
    },
  },
} as const;

export const histogramAnswerSchema = {
  type: 'object',
  required: ['since', 'until', 'step', 'buckets'],
  properties: {
    since: { type: 'string', format: 'date-time' },
    until: { type: 'string', format: 'date-time' },
    step: { type: 'string' },
    device_id: { type: 'string', description: 'when the histogram is of one device' },
    buckets: {
      type: 'array',
      description: 'every bucket the range touches, oldest first, empty ones with 0; the first and last count only their part inside the range',
      items: {
        type: 'object',
        required: ['start', 'total'],
        properties: {
          start: { type: 'string', format: 'date-time', description: 'the bucket start (UTC)' },
          total: { type: 'integer' },
          levels: {
            type: 'object', properties: Object.fromEntries(LOG_LEVELS.map((l) => [l, { type: 'integer' }])),
            description: 'per level, every level listed (without device_id only)',
          },
        },
      },
    },
  },
} as const;

export const devicesAnswerSchema = {
  type: 'object',
  required: ['devices'],
  properties: {
    devices: { type: 'array', items: { type: 'string' }, description: 'device ids with stored logs, in the database\'s order (byte order under collation C)' },
  },
} as const;

export const purgeAnswerSchema = {
  type: 'object',
  required: ['device_id', 'until', 'deleted'],
  properties: {
    device_id: { type: 'string' },
    until: { type: ['string', 'null'], description: 'the until parameter as given; null: every log of the device' },
    deleted: { type: 'integer', description: 'logs deleted (0 when the device had none)' },
  },
} as const;
