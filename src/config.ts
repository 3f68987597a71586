/**
 * Configuration is declared once, here: every option with its default, unit
 * and a one-line doc that conf/logd.toml repeats (test/config.test.ts keeps
 * them in step). Sources, strongest first: command-line flags, LOGD_* env
 * (LOGD_<SECTION>_<KEY>), the reference's env names (POSTGRES_*, REDIS_*),
 * the TOML file, defaults. The primary validates once and hands workers a
 * frozen copy.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { parse as parseToml } from 'smol-toml';
import { LogdError } from './errors';
import { LOG_LEVELS, type LogLevel } from './model/levels';

interface Leaf {
  type: 'integer' | 'string' | 'boolean' | 'object' | 'array';
  default: number | string | boolean | Readonly<Record<string, number>> | readonly string[];
  description: string;
  minimum?: number;
  maximum?: number;
  enum?: readonly string[];
  properties?: Record<string, object>;
  additionalProperties?: false;
  items?: object;
}

const int = (def: number, description: string, minimum = 0, maximum = Number.MAX_SAFE_INTEGER): Leaf & { type: 'integer' } =>
  ({ type: 'integer', default: def, description, minimum, maximum });
const str = (def: string, description: string, choices?: readonly string[]): Leaf & { type: 'string' } =>
  ({ type: 'string', default: def, description, ...(choices ? { enum: choices } : {}) });
const bool = (def: boolean, description: string): Leaf & { type: 'boolean' } => ({ type: 'boolean', default: def, description });
/** A list of strings (in the environment: separated by commas). */
const list = (def: readonly string[], description: string): Leaf & { type: 'array' } =>
  ({ type: 'array', default: def, description, items: { type: 'string', minLength: 1 } });
/** Who may send to a listener that takes no token. */
const allow = (what: string): Leaf & { type: 'array' } =>
  list(LOOPBACK, `source addresses (CIDR) allowed to send ${what}; default loopback only; others are refused and counted in logd_listener_refused_total`);
const LOOPBACK = ['127.0.0.0/8', '::1/128'];
/** A table of integers, one per log level (each optional). */
const perLevel = (description: string, minimum: number, maximum: number): Leaf & { type: 'object' } => ({
  type: 'object',
  default: {},
  description,
  properties: Object.fromEntries(LOG_LEVELS.map((l) => [l, { type: 'integer', minimum, maximum }])),
  additionalProperties: false,
});

/** The options, by section. Order here is the order in conf/logd.toml. */
export const OPTIONS = {
  server: {
    host: str('127.0.0.1', 'address the HTTP workers listen on; the proxy (conf/nginx.conf) runs on the same host'),
    port: int(8000, 'TCP port shared by all HTTP workers', 1, 65535),
    workers: int(0, 'number of HTTP worker processes; 0 = available CPUs', 0, 256),
    body_limit_single: int(1048576, 'largest body of POST /api/log, in bytes (1 MiB)', 1),
    body_limit_batch: int(52428800, 'largest body of POST /api/logs/batch, in bytes (50 MiB)', 1),
    shutdown_timeout_ms: int(15000, 'time SIGTERM/SIGINT allows for draining requests and the last persist batch, in ms', 100),
    worker_heap_mb: int(256, 'V8 old-space limit of each HTTP worker, in MiB: keeps RSS low under load; must hold a few of the largest batch bodies', 64),
    max_inflight_bytes: int(67108864, 'request-body bytes one HTTP worker holds at once (declared or read so far, until the answer); past it requests get 503 LOGD_OVERLOADED + Retry-After, in bytes (64 MiB)', 1),
    max_header_bytes: int(16384, 'request headers larger than this in total are answered 431, in bytes (16 KiB)', 1024),
    allow_root: bool(false, 'let `logd serve` run as root with an external Redis or PostgreSQL (only on disposable test machines: the HTTP workers parse untrusted input)'),
    drain_ms: int(6000, 'after SIGTERM/SIGINT, workers keep answering open connections (with Connection: close) this long; keep it above the proxy\'s upstream keepalive_timeout (conf/nginx.conf: 5 s), in ms', 0),
  },
  auth: {
    mode: str('token', 'token: every route but /health, /docs, /redoc, /openapi.json and /upload (journal.allow instead) needs a bearer token (logd token create), even while none exists; open: no authentication', ['token', 'open']),
    allow_open_remote: bool(false, 'let mode = "open" listen on a non-loopback server.host (anyone who reaches the port can then write, read and scrape)'),
  },
  data: {
    dir: str('./var', 'directory for the embedded Redis and PostgreSQL (used only when they are not configured)'),
  },
  redis: {
    host: str('', 'Redis host; empty = start an embedded redis-server under data.dir'),
    port: int(6379, 'Redis port', 1, 65535),
    password: str('', 'Redis password (AUTH); empty = none'),
    db: int(0, 'Redis database number', 0, 15),
    stream: str('logs:stream', 'stream holding accepted, not yet persisted logs'),
    command_timeout_ms: int(2000, 'a Redis command slower than this fails (ingest answers 503), in ms', 10),
    cluster: list([], 'seed nodes ("host:port") of a Redis Cluster; when set, host, port and db are not used and the stream is sharded over queue.shards streams (docs/scaling.md)'),
  },
  postgres: {
    host: str('', 'PostgreSQL host or socket directory; empty = start an embedded postgres under data.dir'),
    port: int(5432, 'PostgreSQL port', 1, 65535),
    user: str('logd', 'PostgreSQL user'),
    password: str('', 'PostgreSQL password; empty = none'),
    database: str('logd', 'PostgreSQL database'),
    pool_size: int(4, 'PostgreSQL connections per HTTP worker, for reads and /health', 1, 100),
    statement_timeout_ms: int(10000, 'a device query, /api/stats or a search without q, data or level running longer than this is cancelled and answered 503 LOGD_QUERY_TIMEOUT, in ms', 1),
    search_concurrency: int(1, 'searches with q, data or level (filters no index serves) running at once per HTTP worker; they never take more of pool_size, so device queries and stats keep the rest', 1, 99),
    search_timeout_ms: int(5000, 'a search with q, data or level running longer than this is cancelled and answered 503 LOGD_QUERY_TIMEOUT, in ms', 1),
    acquire_timeout_ms: int(1000, 'a read that waits longer than this for a free connection of its share is answered 503 LOGD_BUSY + Retry-After, in ms', 1),
  },
  ingest: {
    max_future_s: int(3600, 'a log whose timestamp is more than this ahead of the receive time is refused with 422 (naming timestamp and the accepted window), in s', 0, 31_536_000),
  },
  syslog: {
    host: str('127.0.0.1', 'address the syslog listeners bind to (0.0.0.0 or :: for every interface)'),
    tcp_port: int(0, 'syslog over TCP (RFC 6587: octet counting or newline framing; RFC 5424 or RFC 3164 messages); 0 = off', 0, 65535),
    udp_port: int(0, 'syslog over UDP, one message per datagram; 0 = off', 0, 65535),
    tls_port: int(0, 'syslog over TLS (RFC 5425), needs tls_cert and tls_key; 0 = off', 0, 65535),
    relp_port: int(0, 'RELP (rsyslog omrelp): each message is acknowledged once it is in the stream; 0 = off', 0, 65535),
    tls_cert: str('', 'PEM certificate (chain) of the TLS listener'),
    tls_key: str('', 'PEM private key of the TLS listener'),
    tls_ca: str('', 'PEM CA bundle: when set, TLS senders must present a certificate it signed'),
    allow: allow('syslog'),
    max_line_bytes: int(65536, 'a syslog message longer than this is cut to it and stored with truncated = true in log_data, in bytes (64 KiB)', 480, 16_777_216),
    max_connections: int(1000, 'open TCP, TLS and RELP connections one HTTP worker serves at once; more are closed at once, in connections', 1),
    idle_timeout_s: int(3600, 'a connection that sends nothing this long is closed, in s', 1),
  },
  journal: {
    allow: allow('POST /upload (systemd-journal-upload sends no token; behind nginx logd sees nginx\'s address, so restrict /upload there)'),
    fields: list(['*'], 'journal fields kept in log_data besides those mapped to columns (MESSAGE, PRIORITY, _HOSTNAME, __REALTIME_TIMESTAMP); "*" = all'),
    max_field_bytes: int(65536, 'a journal field value larger than this is left out of log_data (and named in omitted_fields), in bytes (64 KiB)', 64, 16_777_216),
  },
  otlp: {
    enabled: bool(true, 'serve POST /v1/logs (OTLP/HTTP logs, protobuf or JSON; token scope ingest)'),
    device_attributes: list(['host.name', 'service.instance.id', 'service.name'], 'attributes (of the record, else of its resource) whose first present value becomes device_id'),
    default_device_id: str('unknown', 'device_id of a record none of device_attributes names; empty = reject such a record (partial_success)'),
  },
  loki: {
    enabled: bool(true, 'serve POST /loki/api/v1/push (JSON, or snappy-compressed protobuf) and GET /ready (token scope ingest)'),
    device_labels: list(['host', 'hostname', 'instance', 'job'], 'stream labels (else structured metadata) whose first present value becomes device_id'),
    default_device_id: str('unknown', 'device_id of an entry none of device_labels names; empty = reject such an entry (400 naming it; the other entries are stored)'),
  },
  elasticsearch: {
    enabled: bool(true, 'serve POST /_bulk and /{index}/_bulk, and the probes clients send first (GET and HEAD /, GET /_cluster/health, GET /_license, GET /_cat/health) (token scope ingest)'),
    device_fields: list(['host.name', 'hostname', 'host'], 'document fields (dotted paths) whose first present string value becomes device_id'),
    default_device_id: str('unknown', 'device_id of a document none of device_fields names; empty = reject it (its item gets status 400)'),
    version: str('8.17.0', 'Elasticsearch version GET / reports (clients choose their API by it)'),
  },
  storage: {
    partition_hours: int(24, 'width of a partition of `logs` (UTC, aligned to midnight), in hours: 24 (one a day) up to ~100,000 logs a day; above that, a width holding ~60,000 logs (4 at 330,000 a day; or 1, 2, 3, 6, 8, 12), since a rare q reads the open partition row by row (README, "Indexes, and how a search reads")', 1, 24),
    maintenance_interval_s: int(60, 'how often a persister creates partitions ahead and applies retention and the disk budget, in s', 1, 86_400),
    search_indexes: bool(true, 'build search indexes (trigram on message, jsonb_path_ops on log_data) on each partition whose range has ended, one per maintenance pass, in the background'),
    search_index_max_backlog: int(10_000, 'build a search index only while the stream holds fewer unpersisted logs than this, and give a build under way up when it holds more (the build takes CPU the persister may need)', 0),
  },
  retention: {
    days: int(30, 'logs older than this (by timestamp) are refused at the door and expire by whole partitions, in days', 1, 36_500),
    by_level: perLevel('per-level overrides of days, e.g. { DEBUG = 3, ERROR = 90 }; each distinct value gets its own sub-partitions, so a level expires by a partition drop', 1, 36_500),
    max_bytes: int(0, 'disk budget of `logs` (all partitions, indexes included): past it the oldest partitions are dropped even inside retention, and /health says degraded; 0 = off, in bytes', 0),
  },
  queue: {
    group: str('log_workers', 'consumer group the persisters read with'),
    dead_stream: str('logs:dead', 'dead-letter stream for entries that cannot be persisted'),
    max_backlog: int(1000000, 'unpersisted logs in the stream above which ingest answers 503 + Retry-After, in logs', 1),
    claim_idle_ms: int(30000, 'a pending entry idle this long (its persister died) is taken over by a live persister, in ms', 100),
    max_deliveries: int(10, 'an entry delivered more often than this without being persisted goes to the dead-letter stream', 1),
    shards: int(1, 'streams the queue is split into (<stream>:{0}, <stream>:{1}, ...; each with its backlog, dead-letter stream and group on its own cluster slot); a request goes to the shard of its first log\'s device; each shard holds at most max_backlog / shards logs; change it only with an empty backlog', 1, 1024),
    replica_acks: int(0, 'replicas that must have each appended frame before ingest answers 2xx (Redis WAIT); 0 = the master alone (a failover may lose the last acknowledged logs)', 0, 16),
    replica_timeout_ms: int(500, 'longest ingest waits for replica_acks replicas; past it the request is answered 503 LOGD_QUEUE_UNAVAILABLE + Retry-After (the frame may still be persisted), in ms', 1, 60_000),
  },
  persister: {
    batch_max_rows: int(20000, 'most logs loaded by one COPY transaction, in logs', 1),
    batch_max_wait_ms: int(50, 'longest a batch waits to fill before it is loaded, in ms', 0),
    retry_max_backoff_ms: int(5000, 'cap of the exponential backoff between retries while PostgreSQL fails, in ms', 10),
    count: int(1, 'persister processes of this node, each a consumer of every shard with its own COPY connection (more cores for COPY)', 1, 64),
  },
  cache: {
    enabled: bool(true, 'serve device queries and statistics through the Redis cache (cache-aside)'),
    device_ttl_s: int(300, 'lifetime of a cached device query; persisting a log of the device invalidates it at once, in s', 1),
    stats_ttl_s: int(60, 'lifetime of cached statistics; every persisted batch invalidates them at once, in s', 1),
    timeout_ms: int(100, 'a cache command slower than this is abandoned and the database answers, in ms', 1),
    max_memory_pct: int(50, 'cache entries are written only while Redis uses less than this share of its maxmemory (the rest is for the stream), in %', 1, 100),
  },
  tail: {
    max_subscribers: int(256, 'live tails (GET /api/tail WebSockets) one logd serves at once; each HTTP worker admits its share, ceil(max_subscribers / workers), and refuses more with 503 LOGD_TAIL_FULL + Retry-After; with max_buffer_bytes it bounds the memory tails can hold (256 x 1 MiB)', 1),
    max_buffer_bytes: int(1048576, 'unsent bytes one tail may hold: logs that arrive while it holds more are not sent to it but counted in a "skipped" message (a client reading too slowly never slows ingest), in bytes (1 MiB)', 1024),
    resume_window_s: int(10, 'persisted stream entries are kept this long, so a tail that reconnects within it resumes (after=) without a gap; costs Redis memory: ingest rate x window (0 = trim as soon as persisted), in s', 0, 3600),
  },
  log: {
    level: str('info', 'log level of logd\'s own JSON logs', ['fatal', 'error', 'warn', 'info', 'debug', 'trace']),
  },
} as const satisfies Record<string, Record<string, Leaf>>;

type Options = typeof OPTIONS;
type LeafValue<L> = L extends { type: 'integer' } ? number : L extends { type: 'boolean' } ? boolean
  : L extends { type: 'object' } ? Readonly<Partial<Record<LogLevel, number>>> : L extends { type: 'array' } ? readonly string[] : string;
export type Config = { readonly [S in keyof Options]: { readonly [K in keyof Options[S]]: LeafValue<Options[S][K]> } };

/** Flags of `logd serve` that override config keys. */
export interface Overrides { port?: number; workers?: number; dataDir?: string }

/** The reference's env names, honoured when no LOGD_* variable is set. */
const REFERENCE_ENV: Record<string, string> = {
  POSTGRES_HOST: 'postgres.host',
  POSTGRES_PORT: 'postgres.port',
  POSTGRES_USER: 'postgres.user',
  POSTGRES_PASSWORD: 'postgres.password',
  POSTGRES_DB: 'postgres.database',
  REDIS_HOST: 'redis.host',
  REDIS_PORT: 'redis.port',
};

function schema(): object {
  const properties: Record<string, object> = {};
  for (const [section, leaves] of Object.entries(OPTIONS)) {
    const props: Record<string, object> = {};
    for (const [key, leaf] of Object.entries(leaves)) {
      const { description: _doc, ...rule } = leaf as Leaf;
      props[key] = rule;
    }
    properties[section] = { type: 'object', properties: props, additionalProperties: false, default: {} };
  }
  return { type: 'object', properties, additionalProperties: false };
}

const validate = new Ajv({ useDefaults: true, allErrors: false }).compile(schema());

function leafOf(dotted: string): Leaf | undefined {
  const [section, key] = dotted.split('.');
  return (OPTIONS as Record<string, Record<string, Leaf>>)[section]?.[key];
}

function fromEnvString(dotted: string, name: string, raw: string): number | string | boolean | Record<string, number> | string[] {
  const leaf = leafOf(dotted)!;
  if (leaf.type === 'string') return raw;
  if (leaf.type === 'array') return raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (leaf.type === 'object') return perLevelFromEnv(dotted, name, raw);
  if (leaf.type === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new LogdError('LOGD_CONFIG_INVALID', `${name} (${dotted}) must be true or false, got "${raw}"`);
  }
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n)) {
    throw new LogdError('LOGD_CONFIG_INVALID', `${name} (${dotted}) must be an integer, got "${raw}"`);
  }
  return n;
}

/** LEVEL=N pairs separated by commas ("DEBUG=3,ERROR=90"); the schema checks levels and ranges. */
function perLevelFromEnv(dotted: string, name: string, raw: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pair of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z]+)\s*=\s*(-?\d+)$/.exec(pair);
    if (!m) throw new LogdError('LOGD_CONFIG_INVALID', `${name} (${dotted}) must be LEVEL=N pairs separated by commas, got "${raw}"`);
    out[m[1].toUpperCase()] = Number(m[2]);
  }
  return out;
}

function set(tree: Record<string, Record<string, unknown>>, dotted: string, value: unknown): void {
  const [section, key] = dotted.split('.');
  (tree[section] ??= {})[key] = value;
}

function envLayer(env: NodeJS.ProcessEnv, tree: Record<string, Record<string, unknown>>): void {
  for (const [name, dotted] of Object.entries(REFERENCE_ENV)) {
    const raw = env[name];
    if (raw !== undefined && raw !== '') set(tree, dotted, fromEnvString(dotted, name, raw));
  }
  for (const [section, leaves] of Object.entries(OPTIONS)) {
    for (const key of Object.keys(leaves)) {
      const name = `LOGD_${section}_${key}`.toUpperCase();
      const raw = env[name];
      if (raw !== undefined) set(tree, `${section}.${key}`, fromEnvString(`${section}.${key}`, name, raw));
    }
  }
}

function readToml(file: string): Record<string, Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new LogdError('LOGD_CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseToml(text) as Record<string, Record<string, unknown>>;
  } catch (err) {
    throw new LogdError('LOGD_CONFIG_INVALID', `config file ${file} is not valid TOML: ${(err as Error).message}`, { cause: err });
  }
}

/** Loads, merges and validates the configuration; throws LOGD_CONFIG_INVALID naming the key. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env, flags: Overrides = {}): Config {
  const tree = file ? readToml(file) : {};
  envLayer(env, tree);
  if (flags.port !== undefined) set(tree, 'server.port', flags.port);
  if (flags.workers !== undefined) set(tree, 'server.workers', flags.workers);
  if (flags.dataDir !== undefined) set(tree, 'data.dir', flags.dataDir);
  if (!validate(tree)) {
    const e = validate.errors![0];
    const where = e.instancePath.slice(1).replace(/\//g, '.');
    const key = e.keyword === 'additionalProperties'
      ? [where, (e.params as { additionalProperty: string }).additionalProperty].filter(Boolean).join('.')
      : where;
    const what = e.keyword === 'additionalProperties' ? 'is not a known option' : e.message;
    throw new LogdError('LOGD_CONFIG_INVALID', `${key || 'config'} ${what}`);
  }
  const cfg = tree as unknown as {
    server: { host: string; workers: number; drain_ms: number; shutdown_timeout_ms: number };
    auth: { mode: string; allow_open_remote: boolean };
    postgres: { pool_size: number; search_concurrency: number };
    queue: { replica_acks: number; replica_timeout_ms: number };
    redis: { command_timeout_ms: number; cluster: string[] };
    data: { dir: string };
  };
  if (cfg.server.drain_ms >= cfg.server.shutdown_timeout_ms) {
    throw new LogdError('LOGD_CONFIG_INVALID', `server.drain_ms (${cfg.server.drain_ms}) must be below server.shutdown_timeout_ms (${cfg.server.shutdown_timeout_ms})`);
  }
  if (cfg.queue.replica_acks && cfg.queue.replica_timeout_ms >= cfg.redis.command_timeout_ms) {
    throw new LogdError('LOGD_CONFIG_INVALID', `queue.replica_timeout_ms (${cfg.queue.replica_timeout_ms}) must be below redis.command_timeout_ms (${cfg.redis.command_timeout_ms}): the WAIT is a Redis command`);
  }
  for (const node of cfg.redis.cluster) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(node)) throw new LogdError('LOGD_CONFIG_INVALID', `redis.cluster has "${node}", which is not host:port`);
  }
  if (cfg.postgres.search_concurrency >= cfg.postgres.pool_size) {
    throw new LogdError('LOGD_CONFIG_INVALID', `postgres.search_concurrency (${cfg.postgres.search_concurrency}) must be below postgres.pool_size (${cfg.postgres.pool_size}): device queries and stats keep the rest`);
  }
  if (cfg.auth.mode === 'open' && !isLoopback(cfg.server.host) && !cfg.auth.allow_open_remote) {
    throw new LogdError('LOGD_CONFIG_INVALID', `auth.mode = "open" on server.host ${cfg.server.host} would let anyone who reaches it write and read logs: listen on 127.0.0.1, use auth.mode = "token", or set auth.allow_open_remote = true`);
  }
  checkListeners(tree as unknown as Config);
  if (cfg.server.workers === 0) cfg.server.workers = availableParallelism();
  cfg.data.dir = path.resolve(cfg.data.dir);
  return deepFreeze(tree) as unknown as Config;
}

/** The cross-option rules of the syslog and journal listeners. */
function checkListeners(c: Config): void {
  for (const key of ['syslog.allow', 'journal.allow'] as const) {
    const [section, name] = key.split('.') as ['syslog' | 'journal', 'allow'];
    for (const cidr of c[section][name]) {
      if (parseCidr(cidr) === undefined) throw new LogdError('LOGD_CONFIG_INVALID', `${key} has "${cidr}", which is not an address or CIDR block (10.0.0.0/8, 2001:db8::/32, 192.0.2.7)`);
    }
  }
  if (c.syslog.tls_port && (!c.syslog.tls_cert || !c.syslog.tls_key)) {
    throw new LogdError('LOGD_CONFIG_INVALID', `syslog.tls_port (${c.syslog.tls_port}) needs syslog.tls_cert and syslog.tls_key`);
  }
  const ports = (['tcp_port', 'tls_port', 'relp_port'] as const).filter((k) => c.syslog[k] !== 0);
  for (const k of ports) {
    const clash = ports.find((o) => o !== k && c.syslog[o] === c.syslog[k]);
    if (clash) throw new LogdError('LOGD_CONFIG_INVALID', `syslog.${k} and syslog.${clash} are both ${c.syslog[k]}`);
  }
}

/** An address or CIDR block as [address, prefix, family], or undefined. */
export function parseCidr(cidr: string): [string, number, 'ipv4' | 'ipv6'] | undefined {
  const [addr, bits, extra] = cidr.split('/');
  const family = isIP(addr);
  if (!family || extra !== undefined) return undefined;
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  return prefix >= 0 && prefix <= max ? [addr, prefix, family === 4 ? 'ipv4' : 'ipv6'] : undefined;
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (v && typeof v === 'object') deepFreeze(v);
  return Object.freeze(o);
}

/** The documented default of every option, as `section.key` → value (for docs and tests). */
export function defaults(): Map<string, Leaf> {
  const out = new Map<string, Leaf>();
  for (const [section, leaves] of Object.entries(OPTIONS)) {
    for (const [key, leaf] of Object.entries(leaves)) out.set(`${section}.${key}`, leaf as Leaf);
  }
  return out;
}

/** Whether an address only this machine can reach (127.0.0.0/8, ::1, localhost). */
export const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

/** What /health, `logd check` and the start-up log say while authentication is off (none while it is on). */
export const openWarning = (c: Config): string[] => (c.auth.mode === 'open'
  ? [`authentication is OFF (auth.mode = "open"): anyone who reaches ${c.server.host}:${c.server.port} can send, read and scrape logs`]
  : []);

export const embeddedRedis = (c: Config): boolean => c.redis.host === '' && c.redis.cluster.length === 0;
export const embeddedPostgres = (c: Config): boolean => c.postgres.host === '';
