/**
 * The production dependency tree stays small: what `npm prune --omit=dev`
 * leaves (docs/deployment.md) is what logd needs at run time; the API
 * documentation pages' packages are build-time only (scripts/build-assets.js).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import t from 'tap';

const ROOT = path.join(__dirname, '..');

t.test('fewer than 80 production packages, none of the docs pages\' packages', async (t) => {
  const { stdout } = await promisify(execFile)('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT });
  const lines = stdout.trim().split('\n');
  t.ok(lines.length < 80, `${lines.length} lines (the root and its production packages)`);
  const names = lines.map((l) => path.relative(ROOT, l));
  for (const name of ['redoc', 'react', 'react-dom', 'styled-components', 'mobx', 'core-js', 'swagger-ui-dist']) {
    t.notOk(names.includes(path.join('node_modules', name)), `${name} is not a production package`);
  }
});
