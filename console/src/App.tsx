/**
 * The console: the query bar, the search and live views, the sign-in dialog
 * and the banners that say why a call failed. Keyboard: `/` focuses the
 * text search, j/k or the arrows move between rows, Enter expands a row,
 * Esc collapses it or closes the dialog.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { describe, getJson, getToken, LEVELS, setToken, type Failure, type Level } from './api';
import { Live } from './Live';
import { fromInput, fromUrl, RANGES, toInput, toUrl, type Query } from './query';
import { Search } from './Search';

/** The form field a 422 issue's parameter belongs to. */
const FIELD_OF: Record<string, keyof Query> = {
  device_id: 'device', level: 'levels', since: 'range', until: 'range', step: 'range', q: 'q', data: 'data', limit: 'limit',
};

type Issues = Partial<Record<keyof Query, string[]>>;

const isField = (el: EventTarget | null): boolean => el instanceof HTMLElement && (/^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName) || el.isContentEditable);

function moveRow(step: number): void {
  const rows = [...document.querySelectorAll<HTMLElement>('.row')];
  if (!rows.length) return;
  const at = rows.findIndex((r) => r.contains(document.activeElement));
  const next = rows[at < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, at + step))];
  next.focus();
  next.scrollIntoView({ block: 'nearest' });
}

function FieldError({ id, issues }: { id: string; issues?: string[] }) {
  if (!issues?.length) return null;
  return <div class="field-error" id={id} role="alert">{issues.join('; ')}</div>;
}

export function App() {
  const [applied, setApplied] = useState<Query>(() => fromUrl(location.search));
  const [form, setForm] = useState<Query>(applied);
  const [generation, setGeneration] = useState(0);
  const [issues, setIssues] = useState<Issues>({});
  const [banner, setBanner] = useState('');
  const [login, setLogin] = useState<{ open: boolean; error: string }>({ open: false, error: '' });
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const [devices, setDevices] = useState<string[]>([]);
  const textInput = useRef<HTMLInputElement>(null);
  const tokenInput = useRef<HTMLInputElement>(null);

  const run = (q: Query, push: boolean): void => {
    setApplied(q);
    setForm(q);
    setIssues({});
    setBanner('');
    setGeneration((g) => g + 1);
    const url = toUrl(q);
    if (push && url !== location.search) history.pushState(null, '', url);
  };

  const onFailure = (f: Failure): void => {
    if (f.kind === 'unauthorized') {
      const refused = getToken() !== null;
      setToken(null);
      setSignedIn(false);
      // The search and the chart both answer 401: the second finds the token already forgotten.
      setLogin((l) => (refused || !l.open ? { open: true, error: refused ? `logd refused the token (401): ${f.detail}` : '' } : l));
    } else if (f.kind === 'invalid') {
      const found: Issues = {};
      for (const issue of f.issues) {
        const field = FIELD_OF[String(issue.loc[1])];
        if (field) (found[field] ??= []).push(issue.msg);
      }
      setIssues(found);
      const elsewhere = f.issues.filter((i) => !FIELD_OF[String(i.loc[1])]);
      if (elsewhere.length) setBanner(describe({ kind: 'invalid', issues: elsewhere }));
    } else {
      setBanner(describe(f));
    }
  };

  useEffect(() => {
    const back = (): void => run(fromUrl(location.search), false);
    addEventListener('popstate', back);
    return () => removeEventListener('popstate', back);
  }, []);

  useEffect(() => {
    if (login.open) tokenInput.current?.focus();
  }, [login.open]);

  useEffect(() => {
    const keys = (e: KeyboardEvent): void => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === 'Escape' && login.open) {
        setLogin({ open: false, error: '' });
        return;
      }
      if (isField(e.target) || login.open) return;
      if (e.key === '/') {
        e.preventDefault();
        textInput.current?.focus();
      } else if (e.key === 'j' || e.key === 'ArrowDown') {
        e.preventDefault();
        moveRow(1);
      } else if (e.key === 'k' || e.key === 'ArrowUp') {
        e.preventDefault();
        moveRow(-1);
      }
    };
    addEventListener('keydown', keys);
    return () => removeEventListener('keydown', keys);
  }, [login.open]);

  // Suggestions for the device field: known devices starting with what is typed.
  useEffect(() => {
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      getJson<{ devices: string[] }>('/api/devices', new URLSearchParams({ prefix: form.device, limit: '20' }), ctl.signal)
        .then((a) => setDevices(a.devices), () => undefined);
    }, 150);
    return () => { clearTimeout(timer); ctl.abort(); };
  }, [form.device, signedIn]);

  const set = <K extends keyof Query>(key: K, value: Query[K]): void => setForm({ ...form, [key]: value });
  const toggleLevel = (l: Level): void => {
    const levels = form.levels.includes(l) ? form.levels.filter((x) => x !== l) : LEVELS.filter((x) => x === l || form.levels.includes(x));
    run({ ...form, levels }, true);
  };
  const setRange = (range: string): void => {
    if (range) return run({ ...form, range, since: '', until: '' }, true);
    const now = Date.now();
    setForm({ ...form, range: '', since: new Date(now - RANGES[form.range || '24h']).toISOString(), until: new Date(now).toISOString() });
  };
  const signIn = (e: Event): void => {
    e.preventDefault();
    const token = tokenInput.current!.value.trim();
    if (!token) return;
    setToken(token);
    setSignedIn(true);
    setLogin({ open: false, error: '' });
    run(applied, false);
  };
  const signOut = (): void => {
    setToken(null);
    setSignedIn(false);
    setGeneration((g) => g + 1);
  };
  const described = (field: keyof Query): string | undefined => (issues[field]?.length ? `err-${field}` : undefined);

  return (
    <div class="app">
      <header class="top">
        <strong class="brand">logd</strong>
        <nav class="tabs" role="tablist" aria-label="view">
          <button type="button" role="tab" aria-selected={applied.view === 'search'} onClick={() => run({ ...form, view: 'search' }, true)}>Search</button>
          <button type="button" role="tab" aria-selected={applied.view === 'live'} onClick={() => run({ ...form, view: 'live' }, true)}>Live</button>
        </nav>
        <span class="spacer" />
        <a href="/docs" class="link">API docs</a>
        {signedIn
          ? <button type="button" onClick={signOut}>Sign out</button>
          : <button type="button" onClick={() => setLogin({ open: true, error: '' })}>Sign in</button>}
      </header>
      <form class="query" onSubmit={(e) => { e.preventDefault(); run(form, true); }} aria-label="query">
        <div class="field">
          <label for="device">Device</label>
          <input id="device" list="devices" value={form.device} placeholder="any" autocomplete="off" aria-invalid={!!issues.device} aria-describedby={described('device')}
            onInput={(e) => set('device', e.currentTarget.value)} />
          <datalist id="devices">{devices.map((d) => <option key={d} value={d} />)}</datalist>
          <FieldError id="err-device" issues={issues.device} />
        </div>
        <fieldset class="field levels" aria-invalid={!!issues.levels} aria-describedby={described('levels')}>
          <legend>Levels</legend>
          {LEVELS.map((l) => (
            <label key={l} class={`chip lvl-${l}`}>
              <input type="checkbox" checked={form.levels.includes(l)} onChange={() => toggleLevel(l)} />{l}
            </label>
          ))}
          <FieldError id="err-levels" issues={issues.levels} />
        </fieldset>
        <div class="field">
          <label for="range">Range</label>
          <select id="range" value={form.range} disabled={applied.view === 'live'} aria-invalid={!!issues.range} aria-describedby={described('range')}
            onChange={(e) => setRange(e.currentTarget.value)}>
            {Object.keys(RANGES).map((r) => <option key={r} value={r}>last {r}</option>)}
            <option value="">from … to (UTC)</option>
          </select>
          <FieldError id="err-range" issues={issues.range} />
        </div>
        {!form.range && (
          <>
            <div class="field">
              <label for="since">From (UTC)</label>
              <input id="since" type="datetime-local" step={1} value={toInput(form.since)} onInput={(e) => set('since', fromInput(e.currentTarget.value))} />
            </div>
            <div class="field">
              <label for="until">To (UTC)</label>
              <input id="until" type="datetime-local" step={1} value={toInput(form.until)} onInput={(e) => set('until', fromInput(e.currentTarget.value))} />
            </div>
          </>
        )}
        <div class="field grow">
          <label for="q">Text <kbd>/</kbd></label>
          <input id="q" ref={textInput} type="search" value={form.q} placeholder='words, "a phrase"' aria-invalid={!!issues.q} aria-describedby={described('q')}
            onInput={(e) => set('q', e.currentTarget.value)} />
          <FieldError id="err-q" issues={issues.q} />
        </div>
        <div class="field grow">
          <label for="data">Data (JSON)</label>
          <input id="data" value={form.data} placeholder='{"disk":"/dev/sda"}' disabled={applied.view === 'live'} aria-invalid={!!issues.data} aria-describedby={described('data')}
            onInput={(e) => set('data', e.currentTarget.value)} />
          <FieldError id="err-data" issues={issues.data} />
        </div>
        <button type="submit" class="primary">{applied.view === 'live' ? 'Apply' : 'Search'}</button>
      </form>
      {banner && <div class="banner" role="alert">{banner}<button type="button" onClick={() => run(applied, false)}>Retry</button></div>}
      <FieldError id="err-limit" issues={issues.limit} />
      <main>
        {applied.view === 'live'
          ? <Live query={applied} generation={generation} onFailure={onFailure} />
          : <Search query={applied} generation={generation} onFailure={onFailure}
              onZoom={(since, until) => run({ ...applied, range: '', since: new Date(since).toISOString(), until: new Date(until).toISOString() }, true)} />}
      </main>
      {login.open && (
        <div class="backdrop">
          <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="login-title">
            <form onSubmit={signIn}>
              <h2 id="login-title">Sign in to logd</h2>
              <p>logd needs a token with the scope <code>read</code> (<code>logd token create --scope read</code>). It is kept in this tab only.</p>
              <label for="token">Token</label>
              <input id="token" ref={tokenInput} type="password" autocomplete="off" placeholder="logd_…" />
              {login.error && <div class="field-error" role="alert">{login.error}</div>}
              <div class="dialog-actions">
                <button type="button" onClick={() => setLogin({ open: false, error: '' })}>Cancel</button>
                <button type="submit" class="primary">Sign in</button>
              </div>
            </form>
          </div>
        </div>
      )}
    </div>
  );
}
