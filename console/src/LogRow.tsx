/**
 * One log in a list: time, level, device, message on one line; expanded, its
 * log_data pretty-printed, the whole record, and buttons that copy it as
 * JSON or as a curl command that searches it again. A row takes the focus
 * (j/k, arrows); Enter expands or collapses it, Esc collapses it.
 */
import { useState } from 'preact/hooks';
import type { StoredLog } from './api';
import { shiftMicros, shortTime } from './query';

export type RowLog = Omit<StoredLog, 'id'> & { id?: number };

/** A curl command that finds the log again: its device at its microsecond. */
export function curlFor(log: RowLog): string {
  const p = new URLSearchParams({ device_id: log.device_id });
  if (log.created_at) {
    p.set('since', log.created_at);
    p.set('until', shiftMicros(log.created_at, 1));
  }
  return `curl -s -H "Authorization: Bearer $LOGD_TOKEN" '${location.origin}/api/logs?${p.toString()}'`;
}

/** The clipboard API needs a secure context (https or localhost); elsewhere a selected textarea and execCommand. */
async function copy(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = document.createElement('textarea');
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand('copy');
  area.remove();
}

interface Props {
  log: RowLog;
  expanded: boolean;
  onToggle(): void;
}

export function LogRow({ log, expanded, onToggle }: Props) {
  const [copied, setCopied] = useState('');
  const copyAs = (what: string, text: string): void => {
    void copy(text).then(() => setCopied(what), () => setCopied('copy failed'));
  };
  const keys = (e: KeyboardEvent): void => {
    if (e.target !== e.currentTarget) return;
    if (e.key === 'Enter') {
      e.preventDefault();
      onToggle();
    } else if (e.key === 'Escape' && expanded) {
      e.preventDefault();
      onToggle();
    }
  };
  return (
    <div class={`row${expanded ? ' open' : ''}`} tabIndex={0} role="row" aria-expanded={expanded} onKeyDown={keys}>
      <div class="line" onClick={onToggle} role="none">
        <span class="time" role="cell">{shortTime(log.created_at)}</span>
        <span class={`level lvl-${log.log_level}`} role="cell">{log.log_level}</span>
        <span class="device" role="cell">{log.device_id}</span>
        <span class="message" role="cell">{log.message ?? ''}</span>
      </div>
      {expanded && (
        <div class="detail" role="cell">
          <div class="detail-actions">
            <button type="button" onClick={() => copyAs('JSON copied', JSON.stringify(log))}>Copy JSON</button>
            <button type="button" onClick={() => copyAs('curl copied', curlFor(log))}>Copy curl</button>
            <span class="copied" role="status">{copied}</span>
          </div>
          <div class="detail-body">
            <div>
              <h4>log_data</h4>
              <pre class="log-data">{log.log_data === null ? 'null' : JSON.stringify(log.log_data, null, 2)}</pre>
            </div>
            <div>
              <h4>record</h4>
              <pre class="record">{JSON.stringify(log, null, 2)}</pre>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
