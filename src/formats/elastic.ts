/**
 * The Elasticsearch bulk API's body (NDJSON: an action line, then for
 * `index` and `create` a document line), read into one item per action:
 * an accepted log, or the error Elasticsearch would give that item.
 * https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk
 *
 * `index` and `create` store the document; `delete` and `update` (logd
 * keeps no documents to change) fail with 400, as do a malformed action or
 * document line: the item fails, the other items are stored. Blank lines
 * where an action is expected are skipped.
 *
 * A document becomes a log: time from `@timestamp`, else `timestamp`
 * (ISO-8601, fractions past microseconds cut, or epoch milliseconds as a
 * number or a string of digits); message from `message`, else `msg` (not a
 * string: its JSON); device_id from the first non-empty string among
 * `device_fields`; level from the first of `log.level`, `level`, `severity`
 * that levelFromText() knows, else INFO. A dotted path matches a literal
 * dotted key and nested objects alike (`host.name`: `{"host.name": ..}` or
 * `{"host": {"name": ..}}`). Fields used for the columns are taken out of
 * log_data (and objects they leave empty); the rest of the document is
 * log_data, with `index` set to the target index.
 */
import { admit, MAX_LOG_DATA_DEPTH, nestsTooDeep, type Accepted, type Draft } from '../model/entry';
import { levelFromText, type LogLevel } from '../model/levels';
import { parseTimestamp, type Instant } from '../model/time';
import type { AcceptWindow } from '../storage/layout';

/** The action names an answer item is keyed by. */
export type BulkAction = 'index' | 'create' | 'delete' | 'update';

export interface ItemError {
  status: number;
  type: string;
  reason: string;
}

export interface BulkItem {
  action: BulkAction;
  index: string;
  /** the action's `_id`, when it gave one */
  id?: string;
  /** one of entry and error */
  entry?: Accepted;
  error?: ItemError;
}

export interface BulkOptions {
  /** the index of the path (`/{index}/_bulk`), else '' */
  defaultIndex: string;
  deviceFields: readonly string[];
  /** device_id of a document that names none ('' = the item fails) */
  defaultDevice: string;
  window: AcceptWindow;
}

const ACTIONS: ReadonlySet<string> = new Set(['index', 'create', 'delete', 'update']);
const LEVEL_FIELDS = ['log.level', 'level', 'severity'].map((f) => f.split('.'));
/** Largest epoch-ms timestamp (9999-12-31T23:59:59.999Z). */
const MAX_EPOCH_MS = 253402300799999;
const EXTRA_FRACTION = /(\.\d{6})\d+/;
const DIGITS = /^\d{1,15}$/;

type Doc = Record<string, unknown>;

const isObject = (v: unknown): v is Doc => v !== null && typeof v === 'object' && !Array.isArray(v);

const fail = (status: number, type: string, reason: string): ItemError => ({ status, type, reason });
const parsing = (reason: string): ItemError => fail(400, 'mapper_parsing_exception', reason);
const illegal = (reason: string): ItemError => fail(400, 'illegal_argument_exception', reason);

/** The lines of `body` (LF-separated, a CR before the LF dropped). */
function lines(body: string): string[] {
  const out = body.split('\n');
  if (out[out.length - 1] === '') out.pop();
  for (let i = 0; i < out.length; i++) if (out[i].endsWith('\r')) out[i] = out[i].slice(0, -1);
  return out;
}

function parse(line: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(line) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** The action a line names: `{"index": {...}}`, one key; undefined when the line is no action. */
function actionOf(line: string | undefined): { name: string; meta: Doc } | undefined {
  if (line === undefined) return undefined;
  const p = parse(line);
  if (!('value' in p) || !isObject(p.value)) return undefined;
  const keys = Object.keys(p.value);
  const meta = p.value[keys[0]];
  return keys.length === 1 && isObject(meta) ? { name: keys[0], meta } : undefined;
}

/** Parses a bulk body; one item per action, in order. */
export function parseBulk(body: string, opts: BulkOptions): BulkItem[] {
  const all = lines(body);
  const items: BulkItem[] = [];
  const deviceFields = opts.deviceFields.map((f) => f.split('.'));
  // Shippers repeat one action line: it is parsed once (its meta is only read).
  let lastLine: string | undefined;
  let lastAction: ReturnType<typeof actionOf>;
  let i = 0;
  while (i < all.length) {
    const line = all[i++];
    if (line.trim() === '') continue;
    if (line !== lastLine) {
      lastLine = line;
      lastAction = actionOf(line);
    }
    const action = lastAction;
    if (!action || !ACTIONS.has(action.name)) {
      // A source line follows unless the next line is an action.
      if (i < all.length && !actionOf(all[i])) i++;
      items.push({ action: 'index', index: opts.defaultIndex, error: badAction(line, action?.name, items.length + 1) });
      continue;
    }
    const name = action.name as BulkAction;
    const index = typeof action.meta._index === 'string' ? action.meta._index : opts.defaultIndex;
    const id = typeof action.meta._id === 'string' ? action.meta._id : undefined;
    const item: BulkItem = { action: name, index, id };
    items.push(item);
    if (name === 'delete' || name === 'update') {
      if (name === 'update') i++;
      item.error = illegal(`logd stores logs and changes none: the ${name} action is not served`);
    } else if (!index) {
      if (i < all.length) i++;
      item.error = fail(400, 'action_request_validation_exception', 'Validation Failed: 1: index is missing;');
    } else if (i >= all.length) {
      item.error = illegal(`The bulk request must be terminated by a newline [\\n]: the ${name} action has no document line`);
    } else {
      const made = documentEntry(all[i++], index, deviceFields, opts);
      if ('error' in made) item.error = made.error;
      else item.entry = made.entry;
    }
  }
  return items;
}

function badAction(line: string, name: string | undefined, n: number): ItemError {
  if (name !== undefined) return illegal(`Malformed action/metadata line [${n}], expected one of [create, delete, index, update] but found [${name.slice(0, 100)}]`);
  const p = parse(line);
  const why = 'error' in p ? p.error : 'expected an object with one action name';
  return illegal(`Malformed action/metadata line [${n}]: ${why}`);
}

function documentEntry(line: string, index: string, deviceFields: string[][], opts: BulkOptions): { entry: Accepted } | { error: ItemError } {
  const p = parse(line);
  if ('error' in p) return { error: parsing(`failed to parse: ${p.error}`) };
  if (!isObject(p.value)) return { error: parsing('failed to parse: the document is not a JSON object') };
  const made = draftOf(p.value, index, deviceFields);
  if (typeof made === 'string') return { error: parsing(made) };
  if (!made.device_id && !opts.defaultDevice) return { error: illegal('the document names no device (none of elasticsearch.device_fields) and elasticsearch.default_device_id is empty') };
  const entry = admit(made, opts.window, opts.defaultDevice);
  return typeof entry === 'string' ? { error: parsing(entry) } : { entry };
}

/** A document as a Draft (the document is taken apart), or why it cannot be one. */
function draftOf(doc: Doc, index: string, deviceFields: string[][]): Draft | string {
  const time = takeTime(doc);
  if (typeof time === 'string') return time;
  const message = takeMessage(doc);
  if (message === undefined) return `message nests deeper than ${MAX_LOG_DATA_DEPTH} levels`;
  const device = takeFirst(doc, deviceFields, (v) => (typeof v === 'string' && v !== '' ? v : undefined)) ?? '';
  const level = takeFirst<LogLevel>(doc, LEVEL_FIELDS, (v) => (typeof v === 'string' ? levelFromText(v) : undefined)) ?? 'INFO';
  doc.index = index;
  return { device_id: device, log_level: level, message, data: doc, time: time.at };
}

/** `@timestamp`, else `timestamp`, taken out of `doc`: the Instant (undefined: none), or why it is not a time. */
function takeTime(doc: Doc): { at: Instant | undefined } | string {
  const key = Object.hasOwn(doc, '@timestamp') ? '@timestamp' : Object.hasOwn(doc, 'timestamp') ? 'timestamp' : undefined;
  if (key === undefined) return { at: undefined };
  const v = doc[key];
  delete doc[key];
  const at = instantOf(v);
  return at ? { at } : `failed to parse field [${key}] of type [date]: ${JSON.stringify(v)?.slice(0, 100)} is neither an ISO-8601 date-time nor epoch milliseconds`;
}

function instantOf(v: unknown): Instant | undefined {
  if (typeof v === 'string' && DIGITS.test(v)) v = Number(v);
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= MAX_EPOCH_MS ? parseTimestamp(v) : undefined;
  return typeof v === 'string' ? parseTimestamp(v.replace(EXTRA_FRACTION, '$1')) : undefined;
}

/** `message`, else `msg`, taken out of `doc` ('' when neither); undefined when it nests too deep to write as JSON. */
function takeMessage(doc: Doc): string | undefined {
  const key = Object.hasOwn(doc, 'message') ? 'message' : Object.hasOwn(doc, 'msg') ? 'msg' : undefined;
  if (key === undefined) return '';
  const v = doc[key];
  delete doc[key];
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  return nestsTooDeep(v) ? undefined : JSON.stringify(v);
}

/**
 * The first of `paths` (field names split at their dots) whose value `pick` takes, taken out of `doc` (and the
 * objects that leaves empty), or undefined.
 */
function takeFirst<T>(doc: Doc, paths: string[][], pick: (v: unknown) => T | undefined): T | undefined {
  for (const path of paths) {
    const chain = find(doc, path, pick);
    if (!chain) continue;
    const value = pick(chain[chain.length - 1].holder[chain[chain.length - 1].key]) as T;
    for (let k = chain.length - 1; k >= 0; k--) {
      const { holder, key } = chain[k];
      if (k < chain.length - 1 && Object.keys(holder[key] as Doc).length > 0) break;
      delete holder[key];
    }
    return value;
  }
  return undefined;
}

interface Step {
  holder: Doc;
  key: string;
}

/** The keys leading to a value of `parts` that `pick` takes: literal dotted keys first, then nested objects. */
function find(obj: Doc, parts: string[], pick: (v: unknown) => unknown): Step[] | undefined {
  for (let n = parts.length; n >= 1; n--) {
    const key = parts.slice(0, n).join('.');
    if (!Object.hasOwn(obj, key)) continue;
    const v = obj[key];
    if (n === parts.length) {
      if (pick(v) !== undefined) return [{ holder: obj, key }];
      continue;
    }
    if (!isObject(v)) continue;
    const rest = find(v, parts.slice(n), pick);
    if (rest) return [{ holder: obj, key }, ...rest];
  }
  return undefined;
}
