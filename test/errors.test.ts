/** The error catalogue: every code is well-formed and documented in README.md. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ERRORS, LogdError, type ErrorCode } from '../src/errors';
import { ROOT } from './helpers/logd';

t.test('every catalogue entry', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(code, /^LOGD_[A-Z0-9_]+$/, `${code} is named LOGD_*`);
    t.ok(spec.status === 0 || (spec.status >= 400 && spec.status < 600), `${code} has an HTTP error status`);
    t.ok(spec.message.length > 0, `${code} has a message`);
    const status = spec.status === 0 ? '—' : String(spec.status);
    t.ok(readme.includes(`| \`${code}\` | ${status} |`), `${code} is documented in README.md with its status`);
    const err = new LogdError(code as ErrorCode, undefined, { cause: new Error('low') });
    t.equal(err.status, spec.status);
    t.equal(err.detail, spec.message);
    t.equal((err.cause as Error).message, 'low', 'keeps the cause');
  }
});
