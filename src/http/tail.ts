/**
 * GET /api/tail on uWS: the WebSocket of a live tail (src/tail/ reads the
 * stream and fans it out; src/tail/messages.ts lists the messages).
 *
 * Everything is checked before upgrading, in the usual JSON error shape:
 * headers, the token (scope read), the query (422), this worker's share of
 * tail.max_subscribers (503). Browsers cannot set headers on a WebSocket, so
 * besides Authorization the token may come as a subprotocol: the client
 * offers `logd.v1, logd.token.<token>` and the server selects `logd.v1`
 * (never echoing the token). A token in the URL is not read: URLs end up in
 * access logs.
 */
import uWS from 'uWebSockets.js';
import { LogdError } from '../errors';
import { log } from '../log';
import { TailFilter } from '../tail/filter';
import { TailHub, type Subscriber } from '../tail/hub';
import { errorMessage } from '../tail/messages';
import { MAX_POSITION_LENGTH, parsePosition } from '../tail/position';
import { readHeaders, refusal, type Headers } from './headers';
import { parseSearchText, queryParser } from './query';
import { searchQuerySchema } from './query-schemas';
import { sendError, type Exchange } from './respond';
import type { Context } from './routes';
import type { Issue } from './validate';

export const TAIL_PATH = '/api/tail';
export const TAIL_PROTOCOL = 'logd.v1';
const TOKEN_PROTOCOL = 'logd.token.';

/** Clients send nothing: a message bigger than this is closed with 1009, any other with 1008 (text) or 1003 (binary). */
const MAX_MESSAGE = 1024;
/** uWS buffers a message up to this size; beyond it, it drops the connection without a close frame. */
const MAX_PAYLOAD = 16 * 1024;
/** Idle tails are pinged within this many seconds (proxies: conf/nginx.conf's proxy_read_timeout is longer). */
const IDLE_TIMEOUT_S = 60;

export const tailQuerySchema = {
  $id: 'TailQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    device_id: searchQuerySchema.properties.device_id,
    level: searchQuerySchema.properties.level,
    q: searchQuerySchema.properties.q,
    after: {
      type: 'string', maxLength: MAX_POSITION_LENGTH, pattern: '^\\d{1,20}-\\d{1,20}(,\\d{1,20}-\\d{1,20})*$',
      description: 'the `position` of a message received before: resume after it (gap-free while the stream holds it, tail.resume_window_s after persisting). '
        + 'A stream entry ID `<ms>-<seq>`; with a sharded queue (queue.shards > 1, or a Redis Cluster) one entry ID per shard in shard order, joined by `,` '
        + '(`1733220000000-0,1733220000123-4,0-0`), or one ID meaning that ID on every shard. Treat it as opaque.',
    },
  },
} as const;

const parseTailQuery = queryParser<{ device_id?: string; level?: string[]; q?: string; after?: string }>(tailQuerySchema);

/** Starts an exchange, as server.ts counts and answers requests. */
export type Begin = (res: uWS.HttpResponse, id: string, head: boolean, route: string) => Exchange;

interface TailSocket {
  filter: TailFilter;
  /** one entry ID per shard */
  after: string[] | undefined;
  sub?: Subscriber;
  closed: boolean;
}

export interface TailSockets {
  behavior: uWS.WebSocketBehavior<TailSocket>;
  /** closes every tail with 1001 (the worker stops) */
  closeAll(): void;
}

/** The handshake's headers, besides those every request is read for. */
interface Handshake {
  key: string;
  protocols: string[];
  extensions: string;
}

function readHandshake(req: uWS.HttpRequest): { h: Headers; ws: Handshake } {
  const ws: Handshake = { key: '', protocols: [], extensions: '' };
  const h = readHeaders(req, (name, value) => {
    if (name === 'sec-websocket-key') ws.key = value;
    else if (name === 'sec-websocket-protocol') ws.protocols.push(...value.split(',').map((p) => p.trim()));
    else if (name === 'sec-websocket-extensions') ws.extensions = value;
  });
  return { h, ws };
}

export function tailSockets(ctx: Context, begin: Begin): TailSockets {
  const hub = new TailHub(ctx.cfg, ctx.queue.redis, log());

  const upgrade = (res: uWS.HttpResponse, req: uWS.HttpRequest, context: uWS.us_socket_context_t): void => {
    const { h, ws } = readHandshake(req);
    const x = begin(res, h.requestId, false, TAIL_PATH);
    const token = ws.protocols.find((p) => p.startsWith(TOKEN_PROTOCOL))?.slice(TOKEN_PROTOCOL.length);
    const refused = refusal(ctx, 'read', h, h.authorization || (token ? `Bearer ${token}` : ''));
    if (refused) return sendError(x, refused);
    const query = parseTailQuery(req.getQuery());
    if (!query.ok) return sendError(x, new LogdError('LOGD_VALIDATION_FAILED', query.issues));
    const q = query.value;
    const issues: Issue[] = [];
    let terms: string[] | undefined;
    if (q.q !== undefined) {
      const parsed = parseSearchText(q.q);
      if (parsed.ok) terms = parsed.value;
      else issues.push(...parsed.issues);
    }
    const shards = ctx.cfg.queue.shards;
    const after = q.after === undefined ? undefined : parsePosition(q.after, shards);
    if (q.after !== undefined && !after) {
      issues.push({ loc: ['query', 'after'], msg: `Input should be a position received before: ${shards} entry IDs (one per shard) or one`, type: 'value_error' });
    }
    if (issues.length) return sendError(x, new LogdError('LOGD_VALIDATION_FAILED', issues));
    if (hub.size >= hub.capacity) {
      return sendError(x, new LogdError('LOGD_TAIL_FULL', `this worker serves ${hub.capacity} live tails, its share of tail.max_subscribers (${ctx.cfg.tail.max_subscribers}); retry later`));
    }
    const data: TailSocket = { filter: new TailFilter({ device_id: q.device_id, level: q.level, terms }), after, closed: false };
    // The exchange ends here: uWS owns the connection from now on.
    x.ended = true;
    x.onEnd(101);
    res.cork(() => res.upgrade(data, ws.key, ws.protocols.includes(TAIL_PROTOCOL) ? TAIL_PROTOCOL : '', ws.extensions, context));
  };

  const refuse = (ws: uWS.WebSocket<TailSocket>, code: number, detail: string): void => {
    ws.send(errorMessage('LOGD_BAD_REQUEST', detail));
    ws.end(code, detail);
  };

  const behavior: uWS.WebSocketBehavior<TailSocket> = {
    maxPayloadLength: MAX_PAYLOAD,
    idleTimeout: IDLE_TIMEOUT_S,
    sendPingsAutomatically: true,
    // Above what the hub lets a socket hold (tail.max_buffer_bytes) plus one message of the largest request's logs, so uWS itself never drops one.
    maxBackpressure: ctx.cfg.tail.max_buffer_bytes + 2 * ctx.cfg.server.body_limit_batch,
    compression: uWS.DISABLED,
    upgrade,
    open: (ws) => {
      const data = ws.getUserData();
      data.sub = hub.subscribe({
        send: (text) => !data.closed && ws.send(text, false) !== 2,
        buffered: () => (data.closed ? 0 : ws.getBufferedAmount()),
        end: (code, reason) => {
          if (!data.closed) ws.end(code, reason);
        },
        cork: (fn) => {
          if (!data.closed) ws.cork(fn);
        },
      }, data.filter, data.after);
    },
    // RFC 6455 section 7.4.1: 1009 too big to process, 1003 data it cannot accept (binary), 1008 policy (no client messages).
    message: (ws, message, isBinary) => {
      if (message.byteLength > MAX_MESSAGE) return refuse(ws, 1009, `logd tail takes no messages (this one has ${message.byteLength} bytes)`);
      refuse(ws, isBinary ? 1003 : 1008, 'logd tail takes no messages');
    },
    drain: (ws) => {
      const data = ws.getUserData();
      if (data.sub) hub.drained(data.sub);
    },
    close: (ws) => {
      const data = ws.getUserData();
      data.closed = true;
      if (data.sub) hub.unsubscribe(data.sub);
    },
  };

  return {
    behavior,
    closeAll: () => hub.closeAll(1001, 'logd is shutting down'),
  };
}
