/**
 * The search view: the volume chart of the range, then the matching logs,
 * newest first, one page at a time (GET /api/logs); the next page loads when
 * the end of the list scrolls into view, following next_cursor.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, getJson, isAbort, type Failure, type Histogram, type SearchPage, type StoredLog } from './api';
import { Chart } from './Chart';
import { LogRow } from './LogRow';
import { bounds, searchParams, type Query } from './query';

interface Props {
  query: Query;
  /** changes whenever the search must run again */
  generation: number;
  onFailure(f: Failure): void;
  onZoom(since: number, until: number): void;
}

interface Results {
  params: URLSearchParams;
  logs: StoredLog[];
  cursor: string | null;
}

export function Search({ query, generation, onFailure, onZoom }: Props) {
  const [results, setResults] = useState<Results | undefined>();
  const [histogram, setHistogram] = useState<Histogram | undefined>();
  const [loading, setLoading] = useState(false);
  const [expanded, setExpanded] = useState<Set<number>>(new Set());
  const sentinel = useRef<HTMLDivElement>(null);
  const more = useRef<() => void>(() => undefined);
  const inflight = useRef<AbortController | undefined>(undefined);

  const failed = (err: unknown): void => {
    if (isAbort(err)) return;
    onFailure(err instanceof ApiError ? err.failure : { kind: 'network', detail: String(err) });
  };

  useEffect(() => {
    inflight.current?.abort();
    const ctl = new AbortController();
    inflight.current = ctl;
    const range = bounds(query);
    const params = searchParams(query, range);
    setLoading(true);
    setExpanded(new Set());
    const h = new URLSearchParams({ since: range.since, until: range.until });
    if (query.device) h.set('device_id', query.device);
    getJson<Histogram>('/api/histogram', h, ctl.signal).then(setHistogram, (err) => { setHistogram(undefined); failed(err); });
    getJson<SearchPage>('/api/logs', params, ctl.signal).then(
      (page) => { setResults({ params, logs: page.data, cursor: page.next_cursor }); setLoading(false); },
      (err) => { if (!isAbort(err)) { setResults(undefined); setLoading(false); } failed(err); },
    );
    return () => ctl.abort();
  }, [generation]);

  more.current = () => {
    if (loading || !results?.cursor) return;
    const ctl = new AbortController();
    inflight.current = ctl;
    const params = new URLSearchParams(results.params);
    params.set('cursor', results.cursor);
    setLoading(true);
    getJson<SearchPage>('/api/logs', params, ctl.signal).then(
      (page) => { setResults({ ...results, logs: [...results.logs, ...page.data], cursor: page.next_cursor }); setLoading(false); },
      (err) => { if (!isAbort(err)) setLoading(false); failed(err); },
    );
  };

  useEffect(() => {
    const seen = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more.current(); }, { rootMargin: '200px' });
    seen.observe(sentinel.current!);
    return () => seen.disconnect();
  }, []);

  // A page that does not fill the screen leaves the sentinel in view: the observer reports no change, so look again.
  useEffect(() => {
    const el = sentinel.current!;
    if (results?.cursor && !loading && el.getBoundingClientRect().top < innerHeight + 200) more.current();
  }, [results, loading]);

  const toggle = (id: number): void => {
    const next = new Set(expanded);
    if (!next.delete(id)) next.add(id);
    setExpanded(next);
  };

  return (
    <div class="search">
      {histogram && <Chart histogram={histogram} onZoom={onZoom} />}
      <div class="rows" role="table" aria-label="logs" aria-busy={loading}>
        {results?.logs.map((log) => <LogRow key={log.id} log={log} expanded={expanded.has(log.id)} onToggle={() => toggle(log.id)} />)}
      </div>
      <div ref={sentinel} class="sentinel" aria-live="polite">
        {loading ? 'Loading…' : results && (results.cursor ? '' : results.logs.length ? `${results.logs.length} logs, the end of the results` : 'No log matches')}
      </div>
    </div>
  );
}
