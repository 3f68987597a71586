/** The command line: `logd <command> [options]`. */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { loadConfig, type Config, type Overrides } from '../config';
import { LogdError } from '../errors';
import { dlq } from './dlq';
import { httpWorker } from '../http/worker';
import { initLogger } from '../log';
import { persisterMain } from '../persist/main';
import { migrate } from '../persist/migrate';
import { runChild } from '../supervisor/child';
import { serve } from '../supervisor/primary';

const USAGE = `usage: logd <command> [options]

commands:
  serve     run the collector: HTTP workers, the persister and, when Redis or
            PostgreSQL is not configured, embedded ones under the data directory
  migrate   apply schema.sql to the configured PostgreSQL (idempotent)
  dlq       list or re-queue dead-letter entries (logs PostgreSQL refused)

options (every command):
  --config PATH     TOML configuration file (see conf/logd.toml)
  -h, --help        this help

options of serve:
  --port N          HTTP port (server.port, default 8000)
  --workers N       HTTP worker processes (server.workers, default: available CPUs)
  --data-dir DIR    data directory of the embedded services (data.dir, default ./var)

Environment: LOGD_<SECTION>_<KEY> overrides any option (LOGD_SERVER_PORT=9000);
POSTGRES_HOST/PORT/USER/PASSWORD/DB and REDIS_HOST/PORT select external services.
`;

const HELP: Record<string, string> = {
  serve: `usage: logd serve [--config PATH] [--port N] [--workers N] [--data-dir DIR]

Runs the collector in the foreground. SIGTERM or SIGINT stops it gracefully:
it stops listening, answers requests in flight, persists the current batch,
and exits 0 (or 1 if server.shutdown_timeout_ms ran out).
`,
  migrate: `usage: logd migrate [--config PATH]

Applies schema.sql to the configured PostgreSQL. Every statement is idempotent;
\`logd serve\` does the same at start.
`,
  dlq: `usage: logd dlq list [--limit N] [--config PATH]
       logd dlq replay (ID... | --all) [--limit N] [--config PATH]

Entries the persister could not store are moved to the dead-letter stream
(queue.dead_stream, default logs:dead) with the error. \`list\` shows them
(oldest first, at most --limit, default 100); \`replay\` re-queues the given
entries (or, with --all, the first --limit) into the stream for the
persister, and removes them from the dead-letter stream. Fix the cause first
(a replayed entry that fails again comes back).
`,
};

function intFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new LogdError('LOGD_CONFIG_INVALID', `--${name} must be an integer, got "${raw}"`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    await runChild({ http: httpWorker, persister: persisterMain });
    return -1; // the child keeps running
  }
  const command = argv[0];
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (!(command in HELP)) {
    process.stderr.write(`logd: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv.slice(1),
      options: {
        config: { type: 'string' },
        port: { type: 'string' },
        workers: { type: 'string' },
        'data-dir': { type: 'string' },
        limit: { type: 'string' },
        all: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`logd ${command}: ${(err as Error).message}\n\n${HELP[command]}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP[command]);
    return 0;
  }
  if (command !== 'dlq' && positionals.length) {
    process.stderr.write(`logd ${command}: unexpected argument "${positionals[0]}"\n\n${HELP[command]}`);
    return 2;
  }
  let cfg: Config;
  try {
    const flags: Overrides = { port: intFlag('port', values.port), workers: intFlag('workers', values.workers), dataDir: values['data-dir'] };
    cfg = loadConfig(values.config ?? process.env.LOGD_CONFIG, process.env, flags);
  } catch (err) {
    process.stderr.write(`logd: invalid configuration: ${(err as Error).message}\n`);
    return 2;
  }
  const log = initLogger(cfg.log.level, command === 'serve' ? 'primary' : command);
  try {
    if (command === 'migrate') {
      await migrate(cfg);
      log.info('schema applied');
      return 0;
    }
    if (command === 'dlq') {
      const [action, ...ids] = positionals;
      if ((action !== 'list' && action !== 'replay') || (action === 'replay' && !ids.length && !values.all)) {
        process.stderr.write(HELP.dlq);
        return 2;
      }
      return await dlq(cfg, action, ids, intFlag('limit', values.limit) ?? 100, process.stdout);
    }
    return await serve(cfg, log);
  } catch (err) {
    log.fatal({ err }, `${command} failed`);
    process.stderr.write(`logd ${command}: ${(err as Error).message}\n`);
    return 1;
  }
}
