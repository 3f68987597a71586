/**
 * Validation at the door: the queue must only ever hold data PostgreSQL can
 * store. Schema rules come from ajv; what JSON Schema cannot say
 * (NUL characters, lone surrogates, nesting depth, real calendar dates) is
 * checked here. Errors are shaped like FastAPI's 422 `detail` list so the
 * reference's clients keep working.
 */
import Ajv, { type ErrorObject } from 'ajv';
import { MAX_LOG_DATA_DEPTH, unstorable, type Accepted } from '../model/entry';
import { parseTimestamp, type Instant } from '../model/time';
import type { AcceptWindow } from '../storage/layout';
import { batchSchema, logEntrySchema, type LogEntry } from './schemas';

export interface Issue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** At most this many issues are reported for one request. */
const MAX_ISSUES = 50;

const ajv = new Ajv({ allErrors: true, strict: true });
ajv.addSchema(logEntrySchema);
const validateEntry = ajv.compile<LogEntry>(logEntrySchema);
const validateBatch = ajv.compile<{ logs: LogEntry[] }>(batchSchema);

function pointerToLoc(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer.slice(1).split('/').map((p) => {
    const key = p.replace(/~1/g, '/').replace(/~0/g, '~');
    return /^\d+$/.test(key) ? Number(key) : key;
  });
}

/** An ajv error as a FastAPI `detail` issue; `root` is where the value came from ('body', 'query'). */
export function toIssue(e: ErrorObject, root: 'body' | 'query' = 'body'): Issue {
  const loc = [root, ...pointerToLoc(e.instancePath)];
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { loc: [...loc, p.missingProperty as string], msg: 'Field required', type: 'missing' };
    case 'additionalProperties':
      return { loc: [...loc, p.additionalProperty as string], msg: 'Extra inputs are not permitted', type: 'extra_forbidden' };
    case 'minLength':
      return { loc, msg: `String should have at least ${p.limit} character${p.limit === 1 ? '' : 's'}`, type: 'string_too_short' };
    case 'maxLength':
      return { loc, msg: `String should have at most ${p.limit} characters`, type: 'string_too_long' };
    case 'minItems':
      return { loc, msg: `List should have at least ${p.limit} item${p.limit === 1 ? '' : 's'}`, type: 'too_short' };
    case 'maxItems':
      return { loc, msg: `List should have at most ${p.limit} items`, type: 'too_long' };
    case 'minimum':
      return { loc, msg: `Input should be greater than or equal to ${p.limit}`, type: 'greater_than_equal' };
    case 'maximum':
      return { loc, msg: `Input should be less than or equal to ${p.limit}`, type: 'less_than_equal' };
    case 'pattern':
      return { loc, msg: `String should match pattern '${p.pattern}'`, type: 'string_pattern_mismatch' };
    case 'enum':
      return { loc, msg: `Input should be ${(p.allowedValues as string[]).map((v) => `'${v}'`).join(', ')}`, type: 'enum' };
    case 'type':
      return { loc, msg: `Input should be a valid ${p.type === 'object' ? 'dictionary' : p.type === 'array' ? 'list' : p.type}`, type: `${p.type === 'object' ? 'dict' : p.type === 'array' ? 'list' : p.type}_type` };
    default:
      return { loc, msg: e.message ?? 'invalid value', type: e.keyword };
  }
}

function schemaIssues(errors: ErrorObject[]): Issue[] {
  const out: Issue[] = [];
  const seenTimestamp = new Set<string>();
  for (const e of errors) {
    // anyOf (timestamp) reports each branch: collapse them into one issue.
    if (/\/timestamp$/.test(e.instancePath)) {
      if (!seenTimestamp.has(e.instancePath)) {
        seenTimestamp.add(e.instancePath);
        out.push(timestampIssue(['body', ...pointerToLoc(e.instancePath)]));
      }
      continue;
    }
    out.push(toIssue(e));
    if (out.length >= MAX_ISSUES) break;
  }
  return out;
}

const timestampIssue = (loc: (string | number)[]): Issue => ({
  loc,
  msg: 'Input should be an ISO-8601 date-time (no offset = UTC) or epoch milliseconds',
  type: 'datetime_parsing',
});

/**
 * The common case (no `\u` escape in the body, so no string to check): only
 * the depth, visiting containers alone and building no locations. The
 * recursion stops at MAX_LOG_DATA_DEPTH + 1, so it cannot exhaust the stack.
 * Measured for a 100-log body: validateBody 70 -> 45 µs against dataIssues,
 * and this check 7.4 -> 1.1 µs against an explicit stack.
 */
function tooDeep(v: object, depth = 1): boolean {
  if (depth > MAX_LOG_DATA_DEPTH) return true;
  if (Array.isArray(v)) {
    for (const x of v) if (x !== null && typeof x === 'object' && tooDeep(x, depth + 1)) return true;
    return false;
  }
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    if (x !== null && typeof x === 'object' && tooDeep(x, depth + 1)) return true;
  }
  return false;
}

/** Walks log_data iteratively (no recursion, so no stack to exhaust). */
function dataIssues(data: object, base: (string | number)[], out: Issue[]): void {
  const stack: [unknown, (string | number)[], number][] = [[data, base, 1]];
  while (stack.length && out.length < MAX_ISSUES) {
    const [value, loc, depth] = stack.pop()!;
    if (typeof value === 'string') {
      const why = unstorable(value);
      if (why) out.push({ loc, msg: why, type: 'string_unstorable' });
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth > MAX_LOG_DATA_DEPTH) {
      out.push({ loc: base, msg: `log_data should be at most ${MAX_LOG_DATA_DEPTH} levels deep`, type: 'too_deep' });
      return;
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) stack.push([value[i], [...loc, i], depth + 1]);
      continue;
    }
    for (const [k, v] of Object.entries(value)) {
      const why = unstorable(k);
      if (why) out.push({ loc: [...loc, k], msg: `Key ${why.slice(7)}`, type: 'string_unstorable' });
      stack.push([v, [...loc, k], depth + 1]);
    }
  }
}

function checkEntry(e: LogEntry, loc: (string | number)[], deepCheckStrings: boolean, window: AcceptWindow, out: Issue[], accepted: Accepted[]): void {
  const before = out.length;
  if (deepCheckStrings) {
    for (const field of ['device_id', 'message'] as const) {
      const why = unstorable(e[field]);
      if (why) out.push({ loc: [...loc, field], msg: why, type: 'string_unstorable' });
    }
  }
  let time: Instant | undefined;
  if (e.timestamp !== undefined) {
    time = parseTimestamp(e.timestamp);
    if (time === undefined) out.push(timestampIssue([...loc, 'timestamp']));
    else {
      const why = window.refuses(e.log_level, time.ms);
      if (why) out.push({ loc: [...loc, 'timestamp'], msg: why, type: 'timestamp_out_of_window' });
    }
  }
  if (e.log_data !== undefined) {
    if (deepCheckStrings) dataIssues(e.log_data, [...loc, 'log_data'], out);
    else if (tooDeep(e.log_data)) out.push({ loc: [...loc, 'log_data'], msg: `log_data should be at most ${MAX_LOG_DATA_DEPTH} levels deep`, type: 'too_deep' });
  }
  if (out.length > before) return;
  // Only now: JSON.stringify recurses, and a too-deep log_data (refused above) would exhaust the stack.
  const data = e.log_data === undefined ? '{}' : JSON.stringify(e.log_data);
  accepted.push({ device_id: e.device_id, log_level: e.log_level, message: e.message, data, time: time?.iso, hour: time?.hour });
}

export type Verdict = { ok: true; entries: Accepted[] } | { ok: false; issues: Issue[] };

/**
 * Validates a parsed body; timestamps must lie in `window`. `rawHasEscapes` is whether the body text contains
 * a `\u` escape: a body that is valid UTF-8 can only carry NUL or lone
 * surrogates through such escapes (raw control characters are invalid
 * JSON), so the per-string scan is skipped for the common body without them.
 */
export function validateBody(kind: 'single' | 'batch', body: unknown, rawHasEscapes: boolean, window: AcceptWindow): Verdict {
  const issues: Issue[] = [];
  const accepted: Accepted[] = [];
  if (kind === 'single') {
    if (!validateEntry(body)) return { ok: false, issues: schemaIssues(validateEntry.errors!) };
    checkEntry(body, ['body'], rawHasEscapes, window, issues, accepted);
  } else {
    if (!validateBatch(body)) return { ok: false, issues: schemaIssues(validateBatch.errors!) };
    const logs = body.logs;
    for (let i = 0; i < logs.length && issues.length < MAX_ISSUES; i++) {
      checkEntry(logs[i], ['body', 'logs', i], rawHasEscapes, window, issues, accepted);
    }
  }
  return issues.length ? { ok: false, issues } : { ok: true, entries: accepted };
}
