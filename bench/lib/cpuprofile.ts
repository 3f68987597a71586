/**
 * Reads V8 .cpuprofile files (node --cpu-prof) and says where the time went:
 * each sample is put in the category of the deepest frame of its stack that
 * matches a rule (so JSON.stringify called from validate.js counts as
 * validation), plus the top functions by self time.
 */
import * as fs from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
  /** samples per source line (1-based) of the function's own code */
  positionTicks?: { line: number; ticks: number }[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Rule {
  name: string;
  test: (f: CallFrame) => boolean;
}

/**
 * Builtins (JSON.parse, isUtf8...) often have no frame of their own: their
 * time is the calling function's self time. A line rule splits that self
 * time by the source line that was running (V8's positionTicks).
 */
export interface LineRule {
  file: RegExp;
  line: RegExp;
  name: string;
}

export const HTTP_LINE_RULES: LineRule[] = [
  { file: /\/http\/ingest\.js$/, line: /JSON\.parse\(/, name: 'JSON.parse of the body' },
  { file: /\/http\/ingest\.js$/, line: /isUtf8\)?\(|toString\('utf8'\)/, name: 'UTF-8 check and decode (isUtf8, toString)' },
  { file: /\/http\/ingest\.js$/, line: /includes\('\\\\u'\)|validateBody/, name: 'validation (ajv schema + validate.ts checks)' },
  { file: /\/http\/validate\.js$/, line: /JSON\.stringify/, name: 'validation: JSON.stringify(log_data) (checkEntry)' },
];

const file = (f: CallFrame): string => f.url.replace(/^file:\/\//, '');
const inFile = (re: RegExp) => (f: CallFrame): boolean => re.test(file(f));

/** Categories of an HTTP worker's time (first match from the leaf up wins). */
export const HTTP_RULES: Rule[] = [
  { name: 'idle (event loop waiting)', test: (f) => f.functionName === '(idle)' },
  { name: 'garbage collection', test: (f) => f.functionName === '(garbage collector)' },
  { name: 'frame summary (frameSummary)', test: (f) => f.functionName === 'frameSummary' },
  { name: 'COPY-row encoding (encodeFrame, copyRow)', test: inFile(/\/queue\/frame\.js$/) },
  { name: 'JSON.parse of the body', test: (f) => f.functionName === 'parse' && f.url === '' },
  { name: 'validation (ajv schema + validate.ts checks)', test: (f) => inFile(/\/http\/validate\.js$/)(f) || (f.url === '' && /^validate\d*$/.test(f.functionName)) || inFile(/node_modules\/ajv\//)(f) },
  { name: 'UTF-8 check and decode (isUtf8, toString)', test: (f) => f.functionName === 'isUtf8' || (inFile(/buffer/)(f) && /toString|utf8Slice|slice/.test(f.functionName)) },
  { name: 'Redis client: append.lua EVALSHA (ioredis encode/send/parse)', test: inFile(/node_modules\/(ioredis|redis-parser|denque|@ioredis|standard-as-callback|cluster-key-slot)\//) },
  { name: 'metrics (prom-client)', test: (f) => inFile(/node_modules\/prom-client\//)(f) || inFile(/\/src\/metrics\.js$/)(f) },
  { name: 'response writing (respond.ts, uWS end/cork)', test: (f) => inFile(/\/http\/respond\.js$/)(f) || (f.url === '' && /^(end|cork|writeHeader|writeStatus)$/.test(f.functionName)) },
  { name: 'ingest handler (rest of ingest.ts)', test: inFile(/\/http\/ingest\.js$/) },
  { name: 'body reading (body.ts onData, Buffer copies)', test: inFile(/\/http\/body\.js$/) },
  { name: 'routing, auth, exchange (server.ts, auth.ts)', test: (f) => inFile(/\/http\/(server|auth|routes)\.js$/)(f) },
  { name: 'V8/native not attributed to JS ((program): uWS socket I/O and HTTP parsing, V8 runtime)', test: (f) => f.functionName === '(program)' },
];

/** Categories of the persister's time. */
export const PERSISTER_RULES: Rule[] = [
  { name: 'idle (event loop waiting)', test: (f) => f.functionName === '(idle)' },
  { name: 'garbage collection', test: (f) => f.functionName === '(garbage collector)' },
  { name: 'COPY streaming (pg-copy-streams, stream pipeline)', test: (f) => inFile(/node_modules\/pg-copy-streams\//)(f) || inFile(/^node:internal\/streams|internal\/streams/)(f) },
  { name: 'pg client (queries, protocol)', test: inFile(/node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-)[^/]*\//) },
  { name: 'Redis client (XREADGROUP reply parsing, ack.lua)', test: inFile(/node_modules\/(ioredis|redis-parser|denque|@ioredis|standard-as-callback|cluster-key-slot)\//) },
  { name: 'frame parsing (stream.ts parseEntry)', test: inFile(/\/queue\/stream\.js$/) },
  { name: 'summaries / rollups (summary.ts)', test: inFile(/\/persist\/summary\.js$/) },
  { name: 'persister loop (persister.ts)', test: inFile(/\/persist\/persister\.js$/) },
  { name: 'heartbeat, metrics', test: (f) => inFile(/node_modules\/prom-client\//)(f) || inFile(/\/(metrics|queue\/status|persist\/main)\.js$/)(f) },
  { name: 'V8/native not attributed to JS ((program))', test: (f) => f.functionName === '(program)' },
];

export interface ProfileReport {
  file: string;
  wallMs: number;
  busyMs: number;
  categories: { name: string; ms: number; pctBusy: number }[];
  topSelf: { fn: string; ms: number; pctBusy: number }[];
}

const label = (f: CallFrame): string => {
  const u = file(f);
  const nm = u.lastIndexOf('node_modules/');
  const short = !u ? '(native)' : nm >= 0 ? u.slice(nm) : u.replace(/^.*\/dist\//, 'dist/');
  return `${f.functionName || '(anonymous)'} ${short}${u ? `:${f.lineNumber + 1}` : ''}`;
};

/**
 * `window`: only samples taken between `fromUs` and `toUs` on the monotonic
 * clock (V8 stamps samples with it; process.hrtime reads the same clock).
 */
export function analyse(path: string, rules: Rule[], window?: { fromUs: number; toUs: number }, lineRules: LineRule[] = [], top = 12): ProfileReport {
  const p = JSON.parse(fs.readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const catOf = new Map<number, string>();
  const category = (id: number): string => {
    const known = catOf.get(id);
    if (known) return known;
    let cur: number | undefined = id;
    let found = 'other (node internals, libraries)';
    while (cur !== undefined) {
      const f = byId.get(cur)!.callFrame;
      const r = rules.find((rule) => rule.test(f));
      if (r) {
        found = r.name;
        break;
      }
      cur = parent.get(cur);
    }
    catOf.set(id, found);
    return found;
  };
  const selfUs = new Map<number, number>();
  let total = 0;
  let idle = 0;
  let t = p.startTime;
  const from = window ? window.fromUs : -Infinity;
  const to = window ? window.toUs : Infinity;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    // timeDeltas[i] is the time before sample i; the next delta is the time sample i stood for.
    const us = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
    if (us < 0) continue;
    const id = p.samples[i];
    total += us;
    if (byId.get(id)!.callFrame.functionName === '(idle)') idle += us;
    selfUs.set(id, (selfUs.get(id) ?? 0) + us);
  }
  const sources = new Map<string, string[]>();
  const sourceLine = (url: string, line: number): string => {
    if (!sources.has(url)) {
      try {
        sources.set(url, fs.readFileSync(url.replace(/^file:\/\//, ''), 'utf8').split('\n'));
      } catch {
        sources.set(url, []);
      }
    }
    return sources.get(url)![line - 1] ?? '';
  };
  const cats = new Map<string, number>();
  const self = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number): void => { m.set(k, (m.get(k) ?? 0) + us); };
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    add(self, label(node.callFrame), us);
    const own = category(id);
    const lr = lineRules.filter((r) => r.file.test(file(node.callFrame)));
    const ticks = node.positionTicks ?? [];
    const sum = ticks.reduce((a, x) => a + x.ticks, 0);
    if (!lr.length || !sum) {
      add(cats, own, us);
      continue;
    }
    for (const { line, ticks: n } of ticks) {
      const text = sourceLine(node.callFrame.url, line);
      add(cats, lr.find((r) => r.line.test(text))?.name ?? own, (us * n) / sum);
    }
  }
  const busy = Math.max(1, total - idle);
  const categories = [...cats].filter(([n]) => !n.startsWith('idle')).map(([name, us]) => ({ name, ms: us / 1000, pctBusy: (100 * us) / busy }))
    .sort((a, b) => b.ms - a.ms);
  const topSelf = [...self].filter(([l]) => !l.startsWith('(idle)')).map(([fn, us]) => ({ fn, ms: us / 1000, pctBusy: (100 * us) / busy }))
    .sort((a, b) => b.ms - a.ms).slice(0, top);
  return { file: path, wallMs: total / 1000, busyMs: busy / 1000, categories, topSelf };
}

/** Merges reports of processes of the same role (the HTTP workers). */
export function merge(reports: ProfileReport[]): ProfileReport {
  const cats = new Map<string, number>();
  const self = new Map<string, number>();
  let wall = 0, busy = 0;
  for (const r of reports) {
    wall += r.wallMs;
    busy += r.busyMs;
    for (const c of r.categories) cats.set(c.name, (cats.get(c.name) ?? 0) + c.ms);
    for (const s of r.topSelf) self.set(s.fn, (self.get(s.fn) ?? 0) + s.ms);
  }
  return {
    file: reports.map((r) => r.file).join(', '),
    wallMs: wall,
    busyMs: busy,
    categories: [...cats].map(([name, ms]) => ({ name, ms, pctBusy: (100 * ms) / busy })).sort((a, b) => b.ms - a.ms),
    topSelf: [...self].map(([fn, ms]) => ({ fn, ms, pctBusy: (100 * ms) / busy })).sort((a, b) => b.ms - a.ms).slice(0, 12),
  };
}
