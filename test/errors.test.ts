/**
 * The error catalogue: every code is well-formed, documented in README.md,
 * and answered on the wire with its status, its message and its code.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, LogdError, type ErrorCode } from '../src/errors';
import { initLogger } from '../src/log';
import { sendError, type Exchange } from '../src/http/respond';
import { ROOT } from './helpers/logd';

interface Answer {
  statusLine: string;
  headers: Record<string, string>;
  body: string;
}

/** What sendError writes for `err`, through a response that records the calls send() makes on uWS's HttpResponse. */
function answer(err: LogdError): Answer {
  const a: Answer = { statusLine: '', headers: {}, body: '' };
  const res = {
    cork(fn: () => void) { fn(); return res; },
    writeStatus(line: string) { a.statusLine = line; return res; },
    writeHeader(k: string, v: string) { a.headers[k.toLowerCase()] = v; return res; },
    end(body: string) { a.body = body; return res; },
    endWithoutBody() { return res; },
  };
  const x = { res: res as unknown as HttpResponse, id: 'test', head: false, ended: false, close: false, held: 0, onEnd: () => undefined } as unknown as Exchange;
  sendError(x, err);
  return a;
}

t.test('every catalogue entry', async (t) => {
  initLogger('silent', 'test'); // sendError logs 5xx answers
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(code, /^LOGD_[A-Z0-9_]+$/, `${code} is named LOGD_*`);
    t.ok(spec.status === 0 || (spec.status >= 400 && spec.status < 600), `${code} has an HTTP error status`);
    t.ok(spec.message.length > 0, `${code} has a message`);
    const status = spec.status === 0 ? '—' : String(spec.status);
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${code}\` | ${status} |`));
    t.ok(row, `${code} is documented in README.md with its status`);
    if (spec.status === 0) {
      // not an HTTP answer: logd exits with it
      t.pass(`${code} is not sent over HTTP`);
      continue;
    }
    // README marks the codes only nginx answers ("| nginx: ..."): logd itself sends the others, with a reason phrase.
    const byLogd = !/^\| `[A-Z0-9_]+` \| \d+ \| nginx:/.test(row ?? '');
    const plain = answer(new LogdError(code as ErrorCode));
    const err = new LogdError(code as ErrorCode, 'a detail of this request', { cause: new Error('low') });
    const detailed = answer(err);
    const wire = (a: Answer) => ({
      status: a.statusLine.slice(0, 3),
      reasonPhrase: byLogd ? /^\d{3} [A-Z]/.test(a.statusLine) : 'nginx',
      contentType: a.headers['content-type'],
      retryAfter: a.headers['retry-after'] !== undefined,
      challenge: /^Bearer /.test(a.headers['www-authenticate'] ?? ''),
      body: JSON.parse(a.body) as unknown,
    });
    const expected = (detail: string) => ({
      status: String(spec.status),
      reasonPhrase: byLogd ? true : 'nginx',
      contentType: 'application/json',
      retryAfter: spec.status === 503, // README: "retry (Retry-After)"
      challenge: spec.status === 401 || spec.status === 403, // RFC 9110 section 11.6.1 / RFC 6750 section 3
      body: { detail, code },
    });
    t.same([wire(plain), wire(detailed), (err.cause as Error | undefined)?.message], [expected(spec.message), expected('a detail of this request'), 'low'],
      `${code} is answered ${spec.status} with {detail, code}: the catalogue's message, or the request's detail (the cause kept for the log)`);
  }
});
