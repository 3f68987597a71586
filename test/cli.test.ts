/**
 * The command line as README runs it: `npx logd <command>` in the checkout
 * after `npm run build` (npm runs the package's own bin, dist/bin/logd.js,
 * which must be executable).
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ROOT } from './helpers/logd';

t.test('npx logd runs the built command line', async (t) => {
  const r = spawnSync('npx', ['--no-install', 'logd', '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr.trim().slice(0, 300)})`);
  t.match(r.stdout, /usage: logd <command>/, 'the usage');
  t.match(r.stdout, /\btail\b/, 'lists logd tail');
});
