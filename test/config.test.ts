/** Configuration: defaults, sources and their order, and errors that name the key. */
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { parse } from 'smol-toml';
import { defaults, loadConfig } from '../src/config';
import { LOGD_BIN, ROOT } from './helpers/logd';

const tmpToml = (text: string): string => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'logd-conf-')), 'logd.toml');
  writeFileSync(file, text);
  return file;
};

t.test('defaults', async (t) => {
  const cfg = loadConfig(undefined, {});
  t.equal(cfg.server.port, 8000);
  t.ok(cfg.server.workers >= 1, 'workers 0 means available CPUs');
  t.equal(cfg.server.body_limit_single, 1024 * 1024);
  t.equal(cfg.server.body_limit_batch, 50 * 1024 * 1024);
  t.equal(cfg.redis.host, '', 'embedded Redis by default');
  t.equal(cfg.postgres.host, '', 'embedded PostgreSQL by default');
  t.equal(cfg.data.dir, path.resolve('./var'));
  t.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.server), 'frozen');
});

t.test('conf/logd.toml documents every option with its default', async (t) => {
  const text = readFileSync(path.join(ROOT, 'conf', 'logd.toml'), 'utf8');
  const shipped = parse(text) as Record<string, Record<string, unknown>>;
  for (const [key, leaf] of defaults()) {
    const [section, name] = key.split('.');
    t.same(shipped[section]?.[name], leaf.default, `${key} = ${JSON.stringify(leaf.default)}`);
    t.ok(text.includes(`# ${leaf.description}\n${name} =`), `${key} has its doc comment`);
  }
  t.same(loadConfig(path.join(ROOT, 'conf', 'logd.toml'), {}), loadConfig(undefined, {}), 'the shipped file is the defaults');
});

t.test('sources: flags > LOGD_* > reference env > file > defaults', async (t) => {
  const file = tmpToml('[server]\nport = 7000\n[postgres]\nhost = "db.file"\nport = 6000\n');
  t.equal(loadConfig(file, {}).server.port, 7000, 'file');
  t.equal(loadConfig(file, {}).postgres.host, 'db.file');
  t.equal(loadConfig(file, { POSTGRES_HOST: 'db.ref', POSTGRES_PORT: '6001' }).postgres.port, 6001, 'reference env beats the file');
  t.equal(loadConfig(file, { POSTGRES_HOST: 'db.ref', LOGD_POSTGRES_HOST: 'db.logd' }).postgres.host, 'db.logd', 'LOGD_* beats reference env');
  t.equal(loadConfig(file, { LOGD_SERVER_PORT: '7001' }, { port: 7002 }).server.port, 7002, 'flags beat everything');
  const ref = loadConfig(undefined, { POSTGRES_USER: 'u', POSTGRES_PASSWORD: 'p', POSTGRES_DB: 'd', REDIS_HOST: 'r', REDIS_PORT: '6380' });
  t.same([ref.postgres.user, ref.postgres.password, ref.postgres.database, ref.redis.host, ref.redis.port], ['u', 'p', 'd', 'r', 6380]);
  t.same(loadConfig(tmpToml('[retention]\nby_level = { DEBUG = 3, ERROR = 90 }\n'), {}).retention.by_level, { DEBUG: 3, ERROR: 90 }, 'a per-level table from the file');
  t.same(loadConfig(undefined, { LOGD_RETENTION_BY_LEVEL: 'debug=3, ERROR = 90' }).retention.by_level, { DEBUG: 3, ERROR: 90 }, 'and from LEVEL=N pairs in the environment');
  t.same(loadConfig(undefined, { LOGD_SYSLOG_ALLOW: '10.0.0.0/8, 192.0.2.7,2001:db8::/32' }).syslog.allow, ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32'], 'a list from the environment: separated by commas');
  t.same(loadConfig(tmpToml('[journal]\nfields = ["_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER"]\n'), {}).journal.fields, ['_SYSTEMD_UNIT', 'SYSLOG_IDENTIFIER'], 'and from the file');
  t.same(loadConfig(undefined, { LOGD_REDIS_CLUSTER: '10.0.0.1:6379,[::1]:7000' }).redis.cluster, ['10.0.0.1:6379', '[::1]:7000'], 'cluster seeds from the environment');
});

t.test('bad values fail with a message naming the key', async (t) => {
  const cases: [string, () => unknown, RegExp][] = [
    ['port out of range', () => loadConfig(undefined, { LOGD_SERVER_PORT: '70000' }), /server\.port must be <= 65535/],
    ['env not an integer', () => loadConfig(undefined, { REDIS_PORT: 'abc' }), /REDIS_PORT \(redis\.port\) must be an integer/],
    ['unknown key', () => loadConfig(tmpToml('[server]\nprot = 1\n'), {}), /server\.prot is not a known option/],
    ['unknown section', () => loadConfig(tmpToml('[srv]\nport = 1\n'), {}), /srv is not a known option/],
    ['wrong type in file', () => loadConfig(tmpToml('[queue]\nmax_backlog = "lots"\n'), {}), /queue\.max_backlog must be integer/],
    ['bad enum', () => loadConfig(undefined, { LOGD_LOG_LEVEL: 'loud' }), /log\.level must be equal to one of the allowed values/],
    ['bad TOML', () => loadConfig(tmpToml('[server\n'), {}), /not valid TOML/],
    ['missing file', () => loadConfig('/nonexistent/logd.toml', {}), /cannot read config file/],
    ['unknown level in by_level', () => loadConfig(tmpToml('[retention]\nby_level = { LOUD = 3 }\n'), {}), /retention\.by_level\.LOUD is not a known option/],
    ['retention of 0 days', () => loadConfig(tmpToml('[retention]\nby_level = { DEBUG = 0 }\n'), {}), /retention\.by_level\.DEBUG must be >= 1/],
    ['by_level from env, malformed', () => loadConfig(undefined, { LOGD_RETENTION_BY_LEVEL: 'DEBUG:3' }), /LOGD_RETENTION_BY_LEVEL \(retention\.by_level\) must be LEVEL=N pairs/],
    ['partition wider than a day', () => loadConfig(undefined, { LOGD_STORAGE_PARTITION_HOURS: '48' }), /storage\.partition_hours must be <= 24/],
    ['negative disk budget', () => loadConfig(undefined, { LOGD_RETENTION_MAX_BYTES: '-1' }), /retention\.max_bytes must be >= 0/],
    ['prefix past 32 bits', () => loadConfig(undefined, { LOGD_SYSLOG_ALLOW: '10.0.0.0/33' }), /syslog\.allow has "10\.0\.0\.0\/33", which is not an address or CIDR block/],
    ['a host name in an allow list', () => loadConfig(tmpToml('[journal]\nallow = ["vm1.example.com"]\n'), {}), /journal\.allow has "vm1\.example\.com"/],
    ['an allow list that is not a list', () => loadConfig(tmpToml('[syslog]\nallow = "10.0.0.0/8"\n'), {}), /syslog\.allow must be array/],
    ['TLS without a certificate', () => loadConfig(undefined, { LOGD_SYSLOG_TLS_PORT: '6514' }), /syslog\.tls_port \(6514\) needs syslog\.tls_cert and syslog\.tls_key/],
    ['two syslog listeners on one port', () => loadConfig(undefined, { LOGD_SYSLOG_TCP_PORT: '5140', LOGD_SYSLOG_RELP_PORT: '5140' }), /syslog\.tcp_port and syslog\.relp_port are both 5140/],
    ['a replica wait as long as a Redis command', () => loadConfig(undefined, { LOGD_QUEUE_REPLICA_ACKS: '1', LOGD_QUEUE_REPLICA_TIMEOUT_MS: '2000' }), /queue\.replica_timeout_ms \(2000\) must be below redis\.command_timeout_ms \(2000\)/],
    ['a cluster seed without a port', () => loadConfig(undefined, { LOGD_REDIS_CLUSTER: '10.0.0.1:6379,10.0.0.2' }), /redis\.cluster has "10\.0\.0\.2", which is not host:port/],
  ];
  for (const [name, fn, msg] of cases) t.throws(fn, { code: 'LOGD_CONFIG_INVALID', message: msg }, name);
});

t.test('logd serve exits non-zero naming the bad key, before starting anything', async (t) => {
  const r = spawnSync(process.execPath, [LOGD_BIN, 'serve'], { env: { ...process.env, LOGD_SERVER_WORKERS: '-1' }, encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2);
  t.match(r.stderr, /invalid configuration: server\.workers must be >= 0/);
  const flag = spawnSync(process.execPath, [LOGD_BIN, 'serve', '--port', 'eighty'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(flag.status, 2);
  t.match(flag.stderr, /--port must be an integer/);
});

t.test('--help for logd and every command', async (t) => {
  const top = spawnSync(process.execPath, [LOGD_BIN, '--help'], { encoding: 'utf8' });
  t.equal(top.status, 0);
  for (const command of ['serve', 'migrate', 'status', 'check', 'token', 'dlq']) {
    t.match(top.stdout, new RegExp(`^  ${command} `, 'm'), `logd --help lists ${command}`);
    const r = spawnSync(process.execPath, [LOGD_BIN, command, '--help'], { encoding: 'utf8' });
    t.equal(r.status, 0);
    t.match(r.stdout, new RegExp(`^usage: logd ${command}`), `logd ${command} --help`);
  }
  const bad = spawnSync(process.execPath, [LOGD_BIN, 'frobnicate'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /unknown command "frobnicate"/);
});
