/** The command line: `logd <command> [options]`; each command declares its help, flags and runner here. */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { loadConfig, type Config, type Overrides } from '../config';
import { LogdError } from '../errors';
import { httpWorker } from '../http/worker';
import { initLogger, type Logger } from '../log';
import { persisterMain } from '../persist/main';
import { migrate } from '../persist/migrate';
import { withEmbeddedEndpoints } from '../supervisor/embedded';
import { runChild } from '../supervisor/child';
import { serve } from '../supervisor/primary';
import { check } from './check';
import { dlq } from './dlq';
import { purgeCommand } from './purge';
import { status } from './status';
import { storage } from './storage';
import { tail } from './tail';
import { token } from './token';

type Flags = {
  limit?: string; all?: boolean; name?: string; scope?: string; device?: string; until?: string;
  level?: string; q?: string; since?: string; json?: boolean; retry?: boolean; url?: string; 'token-file'?: string;
};

interface Command {
  summary: string;
  help: string;
  /** flags of this command, besides --config and --help */
  flags: readonly string[];
  positionals: boolean;
  run(cfg: Config, args: string[], flags: Flags, log: Logger): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: 'run the collector: HTTP workers, the persister and, when Redis or\n            PostgreSQL is not configured, embedded ones under the data directory',
    help: `usage: logd serve [--config PATH] [--port N] [--workers N] [--data-dir DIR]

Runs the collector in the foreground. SIGTERM or SIGINT stops it gracefully:
it stops listening, answers requests in flight, persists what the stream
holds, and exits 0 (or 1 if server.shutdown_timeout_ms ran out).
`,
    flags: ['port', 'workers', 'data-dir'],
    positionals: false,
    run: (cfg, _args, _flags, log) => serve(cfg, log),
  },
  migrate: {
    summary: 'apply schema.sql to the configured PostgreSQL (idempotent)',
    help: `usage: logd migrate [--config PATH] [--data-dir DIR]

Applies schema.sql to the configured PostgreSQL (or a running logd's embedded
one). Every statement is idempotent; \`logd serve\` does the same at start.
`,
    flags: ['data-dir'],
    positionals: false,
    run: async (cfg, _args, _flags, log) => {
      await migrate(withEmbeddedEndpoints(cfg), log);
      log.info('schema applied');
      return 0;
    },
  },
  status: {
    summary: 'backlog, persist rate and component health of a running logd',
    help: `usage: logd status [--config PATH] [--data-dir DIR]

Prints the health of Redis and PostgreSQL, the backlog of logs not yet
persisted, the dead-letter count, each live persister's rate over one
second, and the storage totals with the last and next partition drop
(\`logd storage\` lists the partitions). Exits 0 when healthy, 1 otherwise.
`,
    flags: ['data-dir'],
    positionals: false,
    run: (cfg) => status(withEmbeddedEndpoints(cfg), process.stdout),
  },
  storage: {
    summary: 'partitions of logs: ranges, rows, size, search indexes, retention; last and next drop',
    help: `usage: logd storage [--config PATH] [--data-dir DIR]

Lists the partitions of \`logs\` oldest first (with their level leaves when
retention.by_level is set): range, logs, size on disk, its search indexes
(open: its range has not ended; pending, building or built), and when
retention drops them (a running logd's persister drops it at its next
maintenance pass, once the stream holds no log received before that time).
Then the totals, the last drop and the next.
`,
    flags: ['data-dir'],
    positionals: false,
    run: (cfg) => storage(withEmbeddedEndpoints(cfg), process.stdout),
  },
  check: {
    summary: 'validate the configuration and connectivity, in plain words',
    help: `usage: logd check [--config PATH] [--data-dir DIR]

Validates the configuration, connects to Redis and PostgreSQL, checks that
Redis cannot evict or lose the stream and that the schema is applied. Prints
one line per finding; exits 0 when all is good, 1 otherwise.
`,
    flags: ['data-dir'],
    positionals: false,
    run: (cfg) => check(withEmbeddedEndpoints(cfg), process.stdout),
  },
  token: {
    summary: 'create, list or revoke bearer tokens (scopes: ingest, read, admin)',
    help: `usage: logd token create --name NAME --scope SCOPE[,SCOPE...] [--config PATH]
       logd token list [--config PATH]
       logd token revoke ID [--config PATH]

Once any active token exists, every route but /health and the API docs needs
\`Authorization: Bearer <token>\` with the route's scope: ingest (POST
/api/log, /api/logs/batch), read (GET /api/logs..., /api/stats), admin
(everything, /metrics, DELETE /api/logs). \`create\` prints the token once;
only its SHA-256 hash is stored (Redis hash logd:tokens). Revocation takes
effect within about a second.
`,
    flags: ['name', 'scope', 'data-dir'],
    positionals: true,
    run: (cfg, [action, ...ids], flags) => {
      if (!['create', 'list', 'revoke'].includes(action)) return usage('token');
      return token(withEmbeddedEndpoints(cfg), action, ids, flags, process.stdout, process.stderr);
    },
  },
  purge: {
    summary: "delete a device's logs (all, or those created before --until)",
    help: `usage: logd purge --device D [--until T] [--config PATH] [--data-dir DIR]

Deletes the logs of device D created before T (ISO-8601, no offset = UTC, or
epoch milliseconds), or all of its logs without --until, as DELETE /api/logs
does: in chunks of one transaction each, the statistics rollups adjusted in
the same transactions, then the cached reads of the device and the
statistics invalidated. Prints how many logs were deleted. Logs of the
device still in the stream are persisted afterwards.
`,
    flags: ['device', 'until', 'data-dir'],
    positionals: false,
    run: (cfg, _args, flags) => purgeCommand(withEmbeddedEndpoints(cfg), flags, process.stdout, process.stderr),
  },
  dlq: {
    summary: 'list or re-queue dead-letter entries (logs PostgreSQL refused)',
    help: `usage: logd dlq list [--limit N] [--config PATH]
       logd dlq replay (ID... | --all) [--limit N] [--config PATH]

Entries the persister could not store are moved to the dead-letter stream
(queue.dead_stream, default logs:dead) with the error. \`list\` shows them
(oldest first, at most --limit, default 100); \`replay\` re-queues the given
entries (or, with --all, the first --limit) into the stream for the
persister, and removes them from the dead-letter stream. Fix the cause first
(a replayed entry that fails again comes back).
`,
    flags: ['limit', 'all', 'data-dir'],
    positionals: true,
    run: (cfg, [action, ...ids], flags) => {
      if ((action !== 'list' && action !== 'replay') || (action === 'replay' && !ids.length && !flags.all)) return usage('dlq');
      return dlq(withEmbeddedEndpoints(cfg), action, ids, intFlag('limit', flags.limit) ?? 100, process.stdout);
    },
  },
  tail: {
    summary: 'follow new logs as they arrive (GET /api/tail), like journalctl -f',
    help: `usage: logd tail [--device D] [--level L[,L...]] [-q TEXT] [--since 10m] [--json] [--retry]
                 [--url URL] [--token-file FILE] [--config PATH]

Prints each new log as logd accepts it, one line each: time, level, device,
message and log_data when it holds anything (levels coloured on a terminal).
--device, --level and -q filter as GET /api/logs does (q: words, each a
case-insensitive substring of the message; a "quoted phrase" is one term).
--since 10m (units s, m, h, d) first prints the stored logs of that window,
oldest first, at most 10000, then follows: logs accepted while it switches
are printed once (it resumes the live tail from a few seconds before the
stored logs were read and drops what it printed already). --json prints
each log as one JSON object per line.

The token (scope read) comes from the LOGD_TOKEN environment variable or
--token-file, never from a flag (flags show in ps). The server is --url, else
http://<server.host>:<server.port> of the configuration.

Lines on stderr: "-- N logs skipped (reading too slowly) --" when logd
skipped logs this reader did not take fast enough; loss and return of
logd's queue. Ctrl-C ends it with exit code 0. A lost or refused connection
exits 1 with the reason, unless --retry: then it reconnects with backoff and
resumes where it was, without a gap while logd's stream still holds it
(tail.resume_window_s; else it says so). A token or filter the server
refuses (401, 403, 422) exits 2 with the server's detail, --retry or not.
`,
    flags: ['device', 'level', 'q', 'since', 'json', 'retry', 'url', 'token-file'],
    positionals: false,
    run: (cfg, _args, flags) => tail(cfg, { ...flags, tokenFile: flags['token-file'] }, process.stdout, process.stderr),
  },
};

const USAGE = `usage: logd <command> [options]

commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)}  ${c.summary}`).join('\n')}

options (every command):
  --config PATH     TOML configuration file (see conf/logd.toml)
  -h, --help        help; \`logd <command> --help\` for a command's

options of serve:
  --port N          HTTP port (server.port, default 8000)
  --workers N       HTTP worker processes (server.workers, default: available CPUs)
  --data-dir DIR    data directory of the embedded services (data.dir, default ./var)

Environment: LOGD_<SECTION>_<KEY> overrides any option (LOGD_SERVER_PORT=9000);
POSTGRES_HOST/PORT/USER/PASSWORD/DB and REDIS_HOST/PORT select external services.
`;

function usage(command: string): Promise<number> {
  process.stderr.write(COMMANDS[command].help);
  return Promise.resolve(2);
}

function intFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new LogdError('LOGD_CONFIG_INVALID', `--${name} must be an integer, got "${raw}"`);
  return n;
}

const FLAG_TYPES = {
  config: { type: 'string' }, port: { type: 'string' }, workers: { type: 'string' }, 'data-dir': { type: 'string' },
  limit: { type: 'string' }, all: { type: 'boolean' }, name: { type: 'string' }, scope: { type: 'string' },
  device: { type: 'string' }, until: { type: 'string' },
  level: { type: 'string' }, q: { type: 'string', short: 'q' }, since: { type: 'string' }, json: { type: 'boolean' }, retry: { type: 'boolean' },
  url: { type: 'string' }, 'token-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    await runChild({ http: httpWorker, persister: persisterMain });
    return -1; // the child keeps running
  }
  const name = argv[0];
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`logd: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  const allowed = new Set(['config', 'help', ...command.flags]);
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv.slice(1), options: FLAG_TYPES, allowPositionals: true, strict: true }));
    const unknown = Object.keys(values).find((k) => !allowed.has(k));
    if (unknown) throw new Error(`option --${unknown} is not an option of ${name}`);
    if (!command.positionals && positionals.length) throw new Error(`unexpected argument "${positionals[0]}"`);
  } catch (err) {
    process.stderr.write(`logd ${name}: ${(err as Error).message}\n\n${command.help}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(command.help);
    return 0;
  }
  let cfg: Config;
  let flags: Flags;
  try {
    const overrides: Overrides = {
      port: intFlag('port', values.port as string | undefined),
      workers: intFlag('workers', values.workers as string | undefined),
      dataDir: values['data-dir'] as string | undefined,
    };
    cfg = loadConfig((values.config as string | undefined) ?? process.env.LOGD_CONFIG, process.env, overrides);
    flags = {
      limit: values.limit as string | undefined, all: values.all as boolean | undefined, name: values.name as string | undefined, scope: values.scope as string | undefined,
      device: values.device as string | undefined, until: values.until as string | undefined,
      level: values.level as string | undefined, q: values.q as string | undefined, since: values.since as string | undefined,
      json: values.json as boolean | undefined, retry: values.retry as boolean | undefined, url: values.url as string | undefined,
      'token-file': values['token-file'] as string | undefined,
    };
    intFlag('limit', flags.limit);
  } catch (err) {
    process.stderr.write(`logd: invalid configuration: ${(err as Error).message}\n`);
    return 2;
  }
  const log = initLogger(cfg.log.level, name === 'serve' ? 'primary' : name);
  try {
    return await command.run(cfg, positionals, flags, log);
  } catch (err) {
    // A configuration error found once running (`logd serve` as root, for one) exits 2 as well: conf/logd.service does not restart it.
    if (err instanceof LogdError && err.code === 'LOGD_CONFIG_INVALID') {
      process.stderr.write(`logd: invalid configuration: ${err.message}\n`);
      return 2;
    }
    log.fatal({ err }, `${name} failed`);
    process.stderr.write(`logd ${name}: ${(err as Error).message}\n`);
    return 1;
  }
}
