/** A live tail client (GET /api/tail) on the `ws` package, recording every message it receives. */
import WebSocket from 'ws';
import { waitFor } from './services';

export interface TailClient {
  ws: WebSocket;
  /** the messages received so far, parsed */
  messages: any[];
  /** resolves with the close code and reason once the socket is closed */
  closed: Promise<{ code: number; reason: string }>;
  /** the first message (from index `from` on) that `pred` takes, within `ms` */
  next(what: string, pred: (m: any) => boolean, ms?: number, from?: number): Promise<any>;
  /** the logs received, in order */
  logs(): any[];
}

/** The server refused the upgrade with an HTTP answer. */
export class Refused extends Error {
  constructor(readonly status: number, readonly headers: Record<string, string | string[] | undefined>, readonly body: any) {
    super(`refused with ${status}`);
  }
}

export interface TailOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  /** wait for the ready message (default true) */
  ready?: boolean;
}

/** Opens a tail on `base` (http://host:port) with the query string `query`; rejects with Refused when not upgraded. */
export function openTail(base: string, query = '', opts: TailOptions = {}): Promise<TailClient> {
  const url = `${base.replace(/^http/, 'ws')}/api/tail${query ? `?${query}` : ''}`;
  const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers });
  const messages: any[] = [];
  ws.on('message', (data, isBinary) => messages.push(isBinary ? { binary: data } : JSON.parse(data.toString())));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const client: TailClient = {
    ws,
    messages,
    closed,
    next: (what, pred, ms = 5000, from = 0) => waitFor(what, () => messages.slice(from).find(pred), ms, 5),
    logs: () => messages.filter((m) => m.type === 'logs').flatMap((m) => m.logs),
  };
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d; });
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: kept as text
        }
        reject(new Refused(res.statusCode ?? 0, res.headers, body));
      });
    });
    ws.once('error', reject);
    ws.once('open', () => {
      if (opts.ready === false) return resolve(client);
      client.next('the ready message', (m) => m.type === 'ready').then(() => resolve(client), reject);
    });
  });
}

/** A promise's rejection, or a failure if it resolved. */
export async function refusal(p: Promise<TailClient>): Promise<Refused> {
  try {
    const c = await p;
    c.ws.terminate();
  } catch (err) {
    if (err instanceof Refused) return err;
    throw err;
  }
  throw new Error('the tail was upgraded, expected a refusal');
}
