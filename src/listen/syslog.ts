/**
 * The syslog listeners of an HTTP worker: TCP (RFC 6587), UDP, TLS (RFC
 * 5425) and RELP. The workers share each port through node:cluster (the
 * primary accepts TCP connections and hands them out; a UDP socket's
 * datagrams go to whichever worker reads first). Every message becomes an
 * entry through the same model as the JSON API and is appended in frames
 * (batcher.ts). Syslog senders cannot take a refusal per message, so a
 * message is stored with what parses (src/formats/syslog.ts) and what
 * accept() had to change is said in its log_data.
 *
 * Plain TCP and TLS have no acknowledgement: what the kernel had received
 * when logd died is lost. On stop, each connection is read until it has
 * been quiet for QUIET_MS or the deadline passes, then closed, and what was
 * read is stored before the worker exits. RELP
 * acknowledges a message only once its frame is in the stream.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Config } from '../config';
import type { Logger } from '../log';
import { listenerConnections, listenerMessages, listenerRefused } from '../metrics';
import { accept, type Accepted } from '../model/entry';
import { SyslogFraming, type Framed } from '../formats/framing';
import { RelpParser, RelpProtocolError, relpResponse, RELP_OPEN_OFFERS, RELP_SERVERCLOSE, type RelpFrame } from '../formats/relp';
import { parseSyslog } from '../formats/syslog';
import type { Queue } from '../queue/stream';
import { acceptWindow, type AcceptWindow } from '../storage/layout';
import { SourceFilter } from './allow';
import { Batcher } from './batcher';

type Listener = 'tcp' | 'udp' | 'tls' | 'relp';

/** On stop, a connection is read until it sends nothing for this long, in ms. */
const QUIET_MS = 200;
/** After the connections are closed, the longest stop() waits for what they sent to be stored, in ms. */
const FINAL_DRAIN_MS = 2000;
/** The accepted window is computed again after this long, in ms. */
const WINDOW_MS = 1000;

export interface SyslogListeners {
  /** Stops accepting, reads what open connections had sent (until `deadline`, epoch ms), stores it and closes them. */
  stop(deadline: number): Promise<void>;
}

/** A connection being served, as stop() sees it. */
interface Conn {
  socket: net.Socket;
  lastData: number;
  /** reads what is left, stores it and closes the connection */
  finish(): Promise<void>;
  /** stops reading now, stores (RELP: acknowledges) what was read and closes the connection */
  close(): void;
}

export async function startSyslog(cfg: Config, queue: Queue, log: Logger): Promise<SyslogListeners> {
  const s = cfg.syslog;
  const filter = new SourceFilter(s.allow);
  const conns = new Set<Conn>();
  /** connections admitted and not closed, TLS ones in their handshake included */
  let admitted = 0;
  const servers: net.Server[] = [];
  let udp: dgram.Socket | undefined;
  let udpBatcher: Batcher | undefined;

  let window: AcceptWindow = acceptWindow(cfg, Date.now());
  let windowAt = Date.now();
  const entry = (m: Framed, now: number, peer: string): Accepted => {
    if (now - windowAt > WINDOW_MS) {
      window = acceptWindow(cfg, now);
      windowAt = now;
    }
    return accept(parseSyslog(m.msg, now, { truncated: m.truncated }), window, peer);
  };
  const append = (frame: Parameters<Queue['append']>[0]): Promise<string> => queue.append(frame);
  const failed = (listener: Listener) => (err: Error & { code?: string }): void =>
    log.warn({ listener, code: err.code, err: err.message }, 'syslog: the stream refused a frame; retrying (TCP, TLS, RELP: reading paused) or dropping (UDP)');

  /** Accepts a connection unless its source is not allowed or the worker serves syslog.max_connections. */
  const admit = (listener: Listener, socket: net.Socket): boolean => {
    if (!filter.allows(socket.remoteAddress)) {
      listenerRefused.inc({ listener, reason: 'allow' });
      socket.destroy();
      return false;
    }
    if (admitted >= s.max_connections) {
      listenerRefused.inc({ listener, reason: 'max_connections' });
      socket.destroy();
      return false;
    }
    admitted++;
    socket.once('close', () => admitted--);
    return true;
  };

  /** Common life of a connection: counting, idle timeout, errors, quiet finish on stop. */
  const track = (listener: Listener, socket: net.Socket, onData: (chunk: Buffer, now: number) => void, onEnd: () => Promise<void>): void => {
    listenerConnections.inc({ listener });
    let ended: Promise<void> | undefined;
    const end = (): Promise<void> => (ended ??= onEnd().catch((err) => log.warn({ listener, err: err.message }, 'syslog: connection ended with an error')));
    const c: Conn = {
      socket,
      lastData: 0,
      finish: async () => {
        while (!socket.destroyed && !socket.readableEnded && Date.now() - c.lastData < QUIET_MS) {
          await new Promise((r) => setTimeout(r, QUIET_MS / 4));
        }
        await end();
      },
      close: () => {
        socket.pause();
        void end();
      },
    };
    conns.add(c);
    socket.setTimeout(s.idle_timeout_s * 1000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      c.lastData = Date.now();
      onData(chunk, c.lastData);
    });
    socket.on('end', () => void end());
    socket.on('error', (err) => log.debug({ listener, err: err.message }, 'syslog connection error'));
    socket.on('close', () => {
      conns.delete(c);
      listenerConnections.dec({ listener });
      void end();
    });
  };

  /** Plain syslog over a byte stream (TCP, TLS): framed, parsed, batched; paused while the stream refuses. */
  const serveSyslog = (listener: 'tcp' | 'tls', socket: net.Socket): void => {
    const peer = socket.remoteAddress ?? '';
    const framing = new SyslogFraming(s.max_line_bytes);
    const batcher = new Batcher({ listener, append, pause: (p) => (p ? socket.pause() : socket.resume()), failed: failed(listener) });
    const take = (msgs: Framed[], now: number): void => {
      if (!msgs.length) return;
      listenerMessages.inc({ listener }, msgs.length);
      for (const m of msgs) batcher.add(entry(m, now, peer), undefined, m.msg.length);
    };
    track(listener, socket, (chunk, now) => take(framing.push(chunk), now), async () => {
      take(framing.end(), Date.now());
      await batcher.drain();
      socket.end();
    });
  };

  /** RELP: each message acknowledged once its frame is in the stream; close answered once all are. */
  const serveRelp = (socket: net.Socket): void => {
    const peer = socket.remoteAddress ?? '';
    const parser = new RelpParser(s.max_line_bytes);
    const write = (b: Buffer): void => {
      if (!socket.destroyed) socket.write(b);
    };
    const batcher = new Batcher<number>({
      listener: 'relp',
      append,
      stored: (txnrs) => write(Buffer.concat(txnrs.map((t) => relpResponse(t, 200, 'OK')))),
      pause: (p) => (p ? socket.pause() : socket.resume()),
      failed: failed('relp'),
    });
    let closing = false;
    const handle = (f: RelpFrame, now: number): void => {
      if (f.txnr === 0) return; // a hint: never answered
      switch (f.command) {
        case 'open':
          return write(relpResponse(f.txnr, 200, 'OK', RELP_OPEN_OFFERS));
        case 'syslog':
          listenerMessages.inc({ listener: 'relp' });
          batcher.add(entry({ msg: f.data, truncated: f.truncated }, now, peer), f.txnr, f.data.length);
          return;
        case 'close':
          closing = true;
          void batcher.drain().then(() => {
            write(relpResponse(f.txnr, 200, 'OK'));
            socket.end();
          });
          return;
        default:
          return write(relpResponse(f.txnr, 500, `command ${f.command} not supported`));
      }
    };
    track('relp', socket, (chunk, now) => {
      let frames: RelpFrame[];
      let broken: RelpProtocolError | undefined;
      try {
        frames = parser.push(chunk);
      } catch (err) {
        if (!(err instanceof RelpProtocolError)) throw err;
        broken = err;
        frames = err.frames;
      }
      for (const f of frames) if (!closing) handle(f, now);
      if (broken) {
        log.warn({ peer, err: broken.message }, 'RELP: closing the session');
        void batcher.drain().then(() => {
          write(RELP_SERVERCLOSE);
          socket.end();
        });
      }
    }, async () => {
      await batcher.drain();
      if (!closing) write(RELP_SERVERCLOSE);
      socket.end();
    });
  };

  const listen = (listener: Listener, port: number, server: net.Server, serve: (socket: net.Socket) => void, secure = false): Promise<void> => {
    // the source is checked on the TCP connection, before a TLS handshake
    server.on('connection', (socket: net.Socket) => {
      if (admit(listener, socket) && !secure) serve(socket);
    });
    if (secure) server.on('secureConnection', serve);
    server.on('tlsClientError', (err) => log.debug({ listener, err: err.message }, 'syslog TLS handshake failed'));
    servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: s.host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  };

  const started: Promise<void>[] = [];
  if (s.tcp_port) started.push(listen('tcp', s.tcp_port, net.createServer({ pauseOnConnect: false }), (sock) => serveSyslog('tcp', sock)));
  if (s.relp_port) started.push(listen('relp', s.relp_port, net.createServer(), serveRelp));
  if (s.tls_port) {
    const ca = s.tls_ca ? readFileSync(s.tls_ca) : undefined;
    const server = tls.createServer({ cert: readFileSync(s.tls_cert), key: readFileSync(s.tls_key), ca, requestCert: !!ca, rejectUnauthorized: !!ca });
    started.push(listen('tls', s.tls_port, server, (sock) => serveSyslog('tls', sock), true));
  }
  if (s.udp_port) {
    const batcher = (udpBatcher = new Batcher({ listener: 'udp', append, failed: failed('udp') }));
    const sock = (udp = dgram.createSocket({ type: net.isIPv6(s.host) ? 'udp6' : 'udp4' }));
    sock.on('message', (msg, rinfo) => {
      if (!filter.allows(rinfo.address)) {
        listenerRefused.inc({ listener: 'udp', reason: 'allow' });
        return;
      }
      listenerMessages.inc({ listener: 'udp' });
      const now = Date.now();
      // a datagram is one message (RFC 5426); the framing only cuts it and drops a trailing newline
      batcher.add(entry(udpMessage(msg, s.max_line_bytes), now, rinfo.address), undefined, msg.length);
    });
    sock.on('error', (err) => log.warn({ err: err.message }, 'syslog UDP socket error'));
    started.push(new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: s.host, port: s.udp_port, exclusive: false }, () => {
        sock.off('error', reject);
        resolve();
      });
    }));
  }
  await Promise.all(started);

  return {
    async stop(deadline) {
      for (const server of servers) server.close();
      udp?.close();
      const all = Promise.all([...conns].map((c) => c.finish()).concat(udpBatcher ? [udpBatcher.drain()] : []));
      const until = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
      await Promise.race([all, until(Math.max(0, deadline - Date.now()))]);
      // A sender that never paused: stop reading it, and store (RELP: acknowledge) what was read before the worker exits.
      for (const c of conns) c.close();
      await Promise.race([all, until(FINAL_DRAIN_MS)]);
      for (const c of conns) c.socket.destroy();
    },
  };
}

/** A datagram as one message: at most `max` bytes (flagged when cut), without its trailing newline. */
function udpMessage(msg: Buffer, max: number): Framed {
  let end = msg.length;
  while (end > 0 && (msg[end - 1] === 0x0a || msg[end - 1] === 0x0d)) end--;
  return { msg: msg.subarray(0, Math.min(end, max)), truncated: end > max };
}
