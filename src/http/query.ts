/**
 * Query strings and path parameters of the read routes, validated with ajv
 * against the route's JSON Schema (query-schemas.ts) and refused with
 * FastAPI's 422 `detail`, each issue naming the parameter
 * (`loc: ["query", "limit"]`).
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { MAX_EPOCH_MS } from './schemas';
import { normalizeTimestamp } from '../model/time';
import { toIssue, type Issue } from './validate';

export type Parsed<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/** An ISO-8601 time (no offset = UTC) or epoch milliseconds, as text PostgreSQL reads the same way whatever its settings. */
export function parseTime(s: string): string | undefined {
  if (/^\d{1,15}$/.test(s)) {
    const ms = Number(s);
    return ms <= MAX_EPOCH_MS ? normalizeTimestamp(ms) : undefined;
  }
  return normalizeTimestamp(s);
}

// No coerceTypes: ajv would turn "1e400" and "Infinity" into Infinity (which then passes maximum), and "0x10" into 16.
// queryParser converts integer parameters itself.
const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: true });
ajv.addFormat('date-time', { type: 'string', validate: (s: string) => parseTime(s) !== undefined });

function queryIssue(e: ErrorObject): Issue {
  if (e.keyword === 'format') {
    return { loc: toIssue(e, 'query').loc, msg: 'Input should be an ISO-8601 date-time (no offset = UTC) or epoch milliseconds', type: 'datetime_parsing' };
  }
  return toIssue(e, 'query');
}

export interface QueryParser<T> {
  (raw: string | undefined): Parsed<T>;
}

/** An optional minus and decimal digits, nothing else. */
const DECIMAL = /^-?\d+$/;

/**
 * A parser for one route's query string. Parameters declared as arrays
 * collect every occurrence, split on commas (duplicates dropped); any other
 * parameter given twice keeps its last value, as FastAPI does. An integer
 * parameter written in decimal becomes a number (the schema then checks its
 * range); any other text stays a string, which the schema refuses.
 */
export function queryParser<T>(schema: { properties: Record<string, { type?: unknown }> }): QueryParser<T> {
  const validate: ValidateFunction<T> = ajv.compile<T>(schema);
  const arrays = new Set(Object.entries(schema.properties).filter(([, p]) => p.type === 'array').map(([k]) => k));
  const integers = new Set(Object.entries(schema.properties).filter(([, p]) => p.type === 'integer').map(([k]) => k));
  return (raw) => {
    // No prototype: a parameter named __proto__ is just an unknown parameter.
    const params: Record<string, unknown> = Object.create(null);
    if (raw) {
      for (const [key, value] of new URLSearchParams(raw)) {
        if (integers.has(key)) {
          params[key] = DECIMAL.test(value) ? Number(value) : value;
          continue;
        }
        if (!arrays.has(key)) {
          params[key] = value;
          continue;
        }
        const list = (params[key] as string[] | undefined) ?? [];
        for (const part of value.split(',')) {
          const item = part.trim();
          if (!list.includes(item)) list.push(item);
        }
        params[key] = list;
      }
    }
    if (!validate(params)) return { ok: false, issues: validate.errors!.map(queryIssue) };
    return { ok: true, value: params };
  };
}

/** A parser for one path parameter as uWS gives it (percent-encoded): decoded, then checked against its schema. */
export function pathParser(name: string, schema: object): (raw: string) => Parsed<string> {
  const validate = ajv.compile<string>(schema);
  return (raw) => {
    let value: string;
    try {
      value = decodeURIComponent(raw);
    } catch {
      return { ok: false, issues: [{ loc: ['path', name], msg: 'Input should be valid percent-encoded UTF-8', type: 'value_error' }] };
    }
    if (!validate(value)) return { ok: false, issues: validate.errors!.map((e) => ({ ...toIssue(e, 'query'), loc: ['path', name] })) };
    return { ok: true, value };
  };
}

/** True when parsed JSON holds what PostgreSQL's jsonb refuses: U+0000 or unpaired surrogates, in a key or a string. */
function unstorable(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (v.includes('\u0000') || !v.isWellFormed()) return true;
    } else if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        if (k.includes('\u0000') || !k.isWellFormed()) return true;
        stack.push(child);
      }
    }
  }
  return false;
}

/** The `data` parameter: JSON text of an object, re-serialized for PostgreSQL's jsonb. */
export function parseDataParam(raw: string): Parsed<string> {
  const issue = (msg: string, type: string): Parsed<string> => ({ ok: false, issues: [{ loc: ['query', 'data'], msg, type }] });
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return issue(`Invalid JSON: ${(err as Error).message}`, 'json_invalid');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return issue('Input should be a JSON object', 'dict_type');
  if (unstorable(value)) return issue('JSON should not contain NUL (U+0000) characters or unpaired surrogates', 'string_unstorable');
  return { ok: true, value: JSON.stringify(value) };
}

/** At most this many terms in `q`: each is one more condition on every row read. */
export const MAX_SEARCH_TERMS = 8;

/**
 * The `q` parameter: its terms, each a case-insensitive substring a message
 * must contain. Words are separated by white space; a double-quoted part is
 * one term, spaces included (a missing closing quote ends it at the end of
 * q). A quote inside a word is a character of the word.
 */
export function parseSearchText(raw: string): Parsed<string[]> {
  const issue = (msg: string, type: string): Parsed<string[]> => ({ ok: false, issues: [{ loc: ['query', 'q'], msg, type }] });
  const terms: string[] = [];
  for (const m of raw.matchAll(/"([^"]*)"?|[^\s"][^\s]*/g)) {
    const term = m[1] ?? m[0];
    if (term && !terms.some((t) => t.toLowerCase() === term.toLowerCase())) terms.push(term);
  }
  if (!terms.length) return issue('q should hold a word or a "quoted phrase" to search for', 'string_no_terms');
  if (terms.length > MAX_SEARCH_TERMS) return issue(`q should hold at most ${MAX_SEARCH_TERMS} words or phrases`, 'too_many_terms');
  return { ok: true, value: terms };
}

/** Keyset cursor: base64url of "<created_at, UTC, microseconds>|<id>" of the last log of a page. */
export function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(`${createdAt}|${id}`).toString('base64url');
}

const CURSOR = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)\|(\d{1,19})$/;
/** logs.id is a bigint: PostgreSQL refuses a larger cursor id with an error. */
const MAX_BIGINT = 2n ** 63n - 1n;

export function decodeCursor(raw: string): Parsed<{ createdAt: string; id: string }> {
  const m = CURSOR.exec(Buffer.from(raw, 'base64url').toString('utf8'));
  if (!m || normalizeTimestamp(m[1]) === undefined || BigInt(m[2]) > MAX_BIGINT) {
    return { ok: false, issues: [{ loc: ['query', 'cursor'], msg: 'Input should be a next_cursor from a previous answer', type: 'value_error' }] };
  }
  return { ok: true, value: { createdAt: m[1], id: m[2] } };
}
