/** `logd tail` as a real process against a real logd: plain and JSON lines, --since, SIGINT, a lost connection, --retry, refusals. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import t from 'tap';
import { LOGD_BIN, postJson, request, serviceEnv, startLogd, startStack, waitRows } from './helpers/logd';
import { waitFor } from './helpers/services';

interface Cli {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

function runTail(args: string[], env: Record<string, string>): Cli {
  const proc = spawn(process.execPath, [LOGD_BIN, 'tail', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { err += d; });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

const log = (device: string, message: string, level = 'INFO', extra: object = {}) => ({ device_id: device, log_level: level, message, ...extra });

t.test('logd tail', async (t) => {
  const { redis, pg, logd } = await startStack(t, { workers: 1, env: { LOGD_AUTH_MODE: 'token' } });
  const token = (scope: string): string => {
    const r = spawnSync(process.execPath, [LOGD_BIN, 'token', 'create', '--name', `cli-${scope}`, '--scope', scope], { env: { ...process.env, ...serviceEnv(redis, pg) }, encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  const read = token('read');
  const ingest = token('ingest');
  const post = async (base: string, body: object) => t.equal((await postJson(`${base}/api/log`, body, { authorization: `Bearer ${ingest}` })).status, 200, 'posted');
  await waitFor('the worker to know the tokens', async () => (await request(`${logd.url}/api/stats`, { headers: { authorization: `Bearer ${read}` } })).status === 200, 10_000);
  const env = { LOGD_TOKEN: read };

  await post(logd.url, log('cli-old', 'stored before', 'WARNING', { log_data: { k: 1 } }));
  await waitRows(pg, 1);

  await t.test('--since: stored logs first, then live ones, plain lines on a pipe; SIGINT exits 0', async (t) => {
    const cli = runTail(['--url', logd.url, '--since', '10m'], env);
    await waitFor('the stored log', () => cli.stdout().includes('stored before'), 10_000);
    // The live tail resumes from before the stored logs were read: a log posted once they are printed shows, connected or not yet.
    await post(logd.url, log('cli-new', 'live one', 'ERROR'));
    await waitFor('the live log', () => cli.stdout().includes('live one'), 10_000);
    const lines = cli.stdout().trim().split('\n');
    t.match(lines[0], /^\d{4}-\d\d-\d\dT\S+ WARNING +cli-old stored before \{"k":1\}$/, 'time, level, device, message, log_data');
    t.match(lines.at(-1), /^\S+ ERROR +cli-new live one$/, 'no log_data when it is empty');
    t.equal(lines.filter((l) => l.includes('stored before')).length, 1, 'the stored log once, though the live tail resumed before it was read');
    t.notMatch(cli.stdout(), /\x1b\[/, 'no colours when stdout is not a terminal');
    cli.proc.kill('SIGINT');
    t.equal(await cli.exited, 0, 'SIGINT: exit 0');
  });

  await t.test('--json and filters', async (t) => {
    const cli = runTail(['--url', logd.url, '--json', '--device', 'cli-j', '--level', 'ERROR,CRITICAL', '-q', '"disk full"'], env);
    // No ready line is printed: post until the first matching log shows (logs before the tail connected are not followed).
    await waitFor('a matching log', async () => {
      await post(logd.url, log('cli-j', 'Disk full on sda', 'ERROR', { log_data: { disk: 'sda' } }));
      return cli.stdout().includes('Disk full');
    }, 10_000, 200);
    await post(logd.url, log('cli-j', 'disk full but INFO', 'INFO'));
    await post(logd.url, log('cli-x', 'disk full, other device', 'ERROR'));
    await post(logd.url, log('cli-j', 'the disk is full', 'CRITICAL'));
    await post(logd.url, log('cli-j', 'disk full again', 'CRITICAL'));
    await waitFor('the last log', () => cli.stdout().includes('disk full again'), 10_000);
    const objects = cli.stdout().trim().split('\n').map((l) => JSON.parse(l));
    t.ok(objects.every((o) => o.device_id === 'cli-j' && ['ERROR', 'CRITICAL'].includes(o.log_level) && /disk full/i.test(o.message)), 'only matching logs');
    t.same(objects.at(-1), { device_id: 'cli-j', log_level: 'CRITICAL', message: 'disk full again', log_data: {}, created_at: objects.at(-1).created_at }, 'the fields of a log');
    t.match(objects[0].log_data, { disk: 'sda' });
    cli.proc.kill('SIGINT');
    t.equal(await cli.exited, 0);
  });

  await t.test('refusals exit 2 with the server\'s detail', async (t) => {
    const noToken = runTail(['--url', logd.url], {});
    t.equal(await noToken.exited, 2, 'no token');
    t.match(noToken.stderr(), /401 LOGD_UNAUTHORIZED/);
    const badLevel = runTail(['--url', logd.url, '--level', 'LOUD'], env);
    t.equal(await badLevel.exited, 2, 'a bad filter');
    t.match(badLevel.stderr(), /422 LOGD_VALIDATION_FAILED/);
    const badSince = runTail(['--url', logd.url, '--since', 'yesterday'], env);
    t.equal(await badSince.exited, 2, 'a bad --since');
    const refused = runTail(['--url', 'http://127.0.0.1:1'], env);
    t.equal(await refused.exited, 1, 'connection refused: 1');
    t.match(refused.stderr(), /ECONNREFUSED/);
    const help = spawnSync(process.execPath, [LOGD_BIN, 'tail', '--help'], { encoding: 'utf8' });
    t.equal(help.status, 0);
    t.match(help.stdout, /^usage: logd tail/);
  });

  await t.test('a lost connection exits 1; --retry reconnects to the restarted logd and resumes', async (t) => {
    const plain = runTail(['--url', logd.url, '--device', 'cli-r'], env);
    const retrying = runTail(['--url', logd.url, '--device', 'cli-r', '--retry'], env);
    await waitFor('both tails to follow', async () => {
      await post(logd.url, log('cli-r', 'first'));
      return plain.stdout().includes('first') && retrying.stdout().includes('first');
    }, 10_000, 200);
    await post(logd.url, log('cli-r', 'marker'));
    await waitFor('every log posted so far', () => retrying.stdout().includes('marker'), 10_000);
    const before = retrying.stdout();
    await logd.stop();
    t.equal(await plain.exited, 1, 'without --retry: exit 1');
    t.match(plain.stderr(), /connection closed \(1001/, 'naming the reason');
    await waitFor('--retry to say it retries', () => /retrying in/.test(retrying.stderr()), 10_000);
    const again = await startLogd({ redis, pg, workers: 1, env: { LOGD_AUTH_MODE: 'token' }, args: ['--port', String(logd.port)], waitHealthy: false });
    t.teardown(() => again.stop());
    await waitFor('logd on the same port', async () => (await fetch(`${logd.url}/health`).catch(() => undefined))?.status === 200, 30_000);
    await waitFor('the token known again', async () => (await postJson(`${logd.url}/api/log`, log('cli-r', 'second'), { authorization: `Bearer ${ingest}` })).status === 200, 10_000, 200);
    await waitFor('the log posted after the restart', () => retrying.stdout().includes('second'), 20_000);
    t.ok(retrying.stdout().startsWith(before), 'the logs before the restart are not repeated');
    t.match(retrying.stdout().slice(before.length), /^\S+ INFO +cli-r second\n$/, 'then the one posted after, once');
    t.equal(retrying.proc.exitCode, null, 'still following');
    retrying.proc.kill('SIGINT');
    t.equal(await retrying.exited, 0);
  });
});
