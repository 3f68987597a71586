/**
 * logd's API as the console calls it: the token (kept in sessionStorage,
 * never in the URL) on every request, a timeout, and each failure sorted by
 * what the console shows for it.
 */

const TOKEN_KEY = 'logd.token';
const TIMEOUT_MS = 15_000;

export const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] as const;
export type Level = (typeof LEVELS)[number];

export interface StoredLog {
  id: number;
  device_id: string;
  log_level: Level;
  message: string | null;
  log_data: Record<string, unknown> | null;
  created_at: string | null;
}

export interface SearchPage {
  total: number;
  data: StoredLog[];
  next_cursor: string | null;
}

export interface Histogram {
  since: string;
  until: string;
  step: string;
  device_id?: string;
  buckets: { start: string; total: number; levels?: Record<Level, number> }[];
}

/** One problem of a 422 answer: `loc` names the parameter (`["query", "data"]`). */
export interface Issue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export type Failure =
  | { kind: 'unauthorized'; detail: string }
  | { kind: 'forbidden'; detail: string }
  | { kind: 'invalid'; issues: Issue[] }
  | { kind: 'unavailable'; status: number; detail: string; retryAfter: string | null }
  | { kind: 'timeout' }
  | { kind: 'network'; detail: string }
  | { kind: 'other'; status: number; detail: string };

export class ApiError extends Error {
  constructor(readonly failure: Failure) {
    super(failure.kind);
  }
}

export const getToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (token: string | null): void => {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
};

const text = (detail: unknown): string => (typeof detail === 'string' ? detail : JSON.stringify(detail));

async function failure(res: Response): Promise<Failure> {
  let body: { detail?: unknown } = {};
  try {
    body = await res.json();
  } catch {
    // not logd's JSON: a proxy's page; the status says enough
  }
  const detail = text(body.detail ?? res.statusText);
  if (res.status === 401) return { kind: 'unauthorized', detail };
  if (res.status === 403) return { kind: 'forbidden', detail };
  if (res.status === 422 && Array.isArray(body.detail)) return { kind: 'invalid', issues: body.detail as Issue[] };
  if (res.status === 503 || res.status === 429) return { kind: 'unavailable', status: res.status, detail, retryAfter: res.headers.get('retry-after') };
  return { kind: 'other', status: res.status, detail };
}

/** GET path?params as JSON; throws ApiError. `signal` cancels it (then it rejects with an AbortError). */
export async function getJson<T>(path: string, params: URLSearchParams, signal?: AbortSignal): Promise<T> {
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ctl.abort(); }, TIMEOUT_MS);
  const cancel = (): void => ctl.abort();
  signal?.addEventListener('abort', cancel);
  const token = getToken();
  try {
    const qs = params.toString();
    const res = await fetch(qs ? `${path}?${qs}` : path, {
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: ctl.signal,
    });
    if (!res.ok) throw new ApiError(await failure(res));
    return (await res.json()) as T;
  } catch (err) {
    if (err instanceof ApiError) throw err;
    if (timedOut) throw new ApiError({ kind: 'timeout' });
    if (signal?.aborted) throw err;
    throw new ApiError({ kind: 'network', detail: (err as Error).message });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  }
}

export const isAbort = (err: unknown): boolean => (err as Error)?.name === 'AbortError';

/** What a failure says, in one line. */
export function describe(f: Failure): string {
  switch (f.kind) {
    case 'unauthorized': return `Sign in: ${f.detail}`;
    case 'forbidden': return `This token lacks the scope read: ${f.detail}`;
    case 'invalid': return f.issues.map((i) => `${i.loc.slice(1).join('.')}: ${i.msg}`).join('; ');
    case 'unavailable': return `logd is busy or its database is unavailable (${f.status}): ${f.detail}${f.retryAfter ? `. Retry after ${f.retryAfter} s.` : ''}`;
    case 'timeout': return `No answer within ${TIMEOUT_MS / 1000} s: logd or the network is slow; narrow the search or retry.`;
    case 'network': return `Cannot reach logd: ${f.detail}`;
    case 'other': return `logd answered ${f.status}: ${f.detail}`;
  }
}
