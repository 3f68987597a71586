/**
 * The live view: logs as they arrive, from logd's WebSocket /api/tail,
 * newest at the top, at most MAX_ROWS kept. The filters are the search's
 * (device_id, level, q). The token travels as a subprotocol, never in the
 * URL. Pause closes the socket and keeps the last position; Resume and the
 * reconnections after an unexpected close ask for the logs after it, so none
 * is missed while the stream still holds them. A refusal comes before the
 * upgrade as an HTTP status a browser's WebSocket does not expose (it sees
 * close 1006): the same filters are then sent to GET /api/logs, whose answer
 * says why.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, getJson, getToken, isAbort, type Failure, type SearchPage } from './api';
import { LogRow, type RowLog } from './LogRow';
import { filterParams, type Query } from './query';

const MAX_ROWS = 2000;
const MAX_BACKOFF_MS = 30_000;

type Item =
  | { key: number; kind: 'log'; log: RowLog }
  | { key: number; kind: 'marker'; text: string };

type Frame =
  | { type: 'ready'; position: string }
  | { type: 'logs'; position: string; logs: RowLog[] }
  | { type: 'skipped'; reason: 'slow' | 'expired'; count: number | null; position: string }
  | { type: 'status'; queue: 'available' | 'unavailable' }
  | { type: 'error'; code: string; detail: string };

interface Props {
  query: Query;
  generation: number;
  onFailure(f: Failure): void;
}

export function Live({ query, generation, onFailure }: Props) {
  const [items, setItems] = useState<Item[]>([]);
  const [state, setState] = useState<'connecting' | 'live' | 'paused' | 'retrying'>('connecting');
  const [note, setNote] = useState('');
  const [queueDown, setQueueDown] = useState(false);
  const [expanded, setExpanded] = useState<Set<number>>(new Set());
  const [paused, setPaused] = useState(false);
  const position = useRef<string | undefined>(undefined);
  const nextKey = useRef(0);

  const add = (fresh: Item[]): void => setItems((old) => [...fresh, ...old].slice(0, MAX_ROWS));
  const marker = (text: string): Item => ({ key: nextKey.current++, kind: 'marker', text });

  // A new query starts a new tail; pausing keeps the position for Resume.
  useEffect(() => {
    position.current = undefined;
    setItems([]);
    setExpanded(new Set());
  }, [generation]);

  useEffect(() => {
    if (paused) {
      setState('paused');
      return undefined;
    }
    let socket: WebSocket | undefined;
    let timer: number | undefined;
    let attempt = 0;
    let stopped = false;
    const diagnose = new AbortController();

    const retry = (): void => {
      const wait = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt++);
      setState('retrying');
      timer = window.setTimeout(open, wait);
    };

    /** Why the server refused the upgrade: the search with the same filters answers it. */
    const whyRefused = (): void => {
      const p = filterParams(query);
      p.set('limit', '1');
      getJson<SearchPage>('/api/logs', p, diagnose.signal).then(
        () => { setNote('The live tail is not available (the connection closed before it started); retrying.'); retry(); },
        (err) => {
          if (isAbort(err)) return;
          const f = err instanceof ApiError ? err.failure : { kind: 'network' as const, detail: String(err) };
          onFailure(f);
          setNote('');
          if (f.kind === 'unavailable' || f.kind === 'network' || f.kind === 'timeout') retry();
          else setPaused(true);
        },
      );
    };

    function open(): void {
      const p = filterParams(query);
      if (position.current) p.set('after', position.current);
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/tail?${p.toString()}`;
      const token = getToken();
      const ws = new WebSocket(url, token ? ['logd.v1', `logd.token.${token}`] : ['logd.v1']);
      socket = ws;
      let ready = false;
      setState('connecting');
      ws.onmessage = (e) => {
        const frame = JSON.parse(String(e.data)) as Frame;
        switch (frame.type) {
          case 'ready':
            ready = true;
            attempt = 0;
            position.current = frame.position;
            setState('live');
            setNote('');
            break;
          case 'logs':
            position.current = frame.position;
            add([...frame.logs].reverse().map((log) => ({ key: nextKey.current++, kind: 'log', log })));
            break;
          case 'skipped':
            position.current = frame.position;
            add([marker(frame.reason === 'slow'
              ? `${frame.count} logs skipped: the view did not keep up`
              : 'Logs from the gap are no longer in the stream; search them')]);
            break;
          case 'status':
            setQueueDown(frame.queue === 'unavailable');
            break;
          case 'error':
            stopped = true;
            setNote(`logd ended the live tail: ${frame.detail} (${frame.code})`);
            setPaused(true);
            break;
        }
      };
      ws.onclose = () => {
        if (stopped || socket !== ws) return;
        if (!ready) whyRefused();
        else retry();
      };
    }

    open();
    return () => {
      stopped = true;
      diagnose.abort();
      window.clearTimeout(timer);
      socket?.close(1000);
    };
  }, [generation, paused]);

  const toggle = (key: number): void => {
    const next = new Set(expanded);
    if (!next.delete(key)) next.add(key);
    setExpanded(next);
  };

  return (
    <div class="live">
      <div class="live-bar">
        <button type="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>{paused ? 'Resume' : 'Pause'}</button>
        <span class={`live-state ${state}`} role="status">{state === 'live' ? 'Live' : state === 'paused' ? 'Paused' : state === 'retrying' ? 'Reconnecting…' : 'Connecting…'}</span>
        <span class="hint">newest at the top; at most {MAX_ROWS.toLocaleString('en')} logs kept; time range and data do not apply</span>
      </div>
      {queueDown && <div class="banner warn" role="alert">The queue (Redis) is unavailable: no new logs arrive until it is back.</div>}
      {note && <div class="banner" role="alert">{note}</div>}
      <div class="rows" role="table" aria-label="live logs">
        {items.map((it) => (it.kind === 'marker'
          ? <div key={it.key} class="marker" role="row"><span role="cell">{it.text}</span></div>
          : <LogRow key={it.key} log={it.log} expanded={expanded.has(it.key)} onToggle={() => toggle(it.key)} />))}
      </div>
    </div>
  );
}
