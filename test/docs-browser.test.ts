/**
 * /docs and /redoc in a real headless Chromium (Debian's, driven by
 * playwright-core): each page renders the API from /openapi.json under the
 * Content-Security-Policy logd sends, with no violation of it by logd's own
 * assets or inline code. The policy does block ReDoc's one CDN request (its
 * "API docs by Redocly" logo, which ReDoc hides when it fails to load): the
 * pages use nothing from outside logd.
 */
import t from 'tap';
import { chromium } from 'playwright-core';
import { startStack } from './helpers/logd';

const CHROMIUM = '/usr/bin/chromium';

t.test('the docs pages satisfy their Content-Security-Policy', async (t) => {
  const { logd } = await startStack(t, { workers: 1 });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());

  const pages = [
    // What each UI shows once it has read /openapi.json: an operation of the route table.
    { path: '/docs', rendered: '#swagger-ui .opblock-summary-path[data-path="/api/logs/batch"]' },
    { path: '/redoc', rendered: 'text=Send 1 to 1000 logs' },
  ];
  for (const { path, rendered } of pages) {
    await t.test(path, async (t) => {
      const page = await browser.newPage();
      const violations: string[] = [];
      page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
      await page.exposeFunction('reportViolation', (v: string) => violations.push(v));
      await page.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
          (window as unknown as { reportViolation(v: string): void }).reportViolation(`${e.violatedDirective} ${e.blockedURI}`);
        });
      });
      const res = await page.goto(`${logd.url}${path}`);
      t.match(res?.headers()['content-security-policy'], /default-src 'none'/, 'the page has a policy');
      await page.locator(rendered).first().waitFor({ timeout: 30_000 });
      t.pass(`${path} rendered the API`);
      const external = (v: string): boolean => v.includes("'https://cdn.redoc.ly/redoc/logo-mini.svg'") || v === 'img-src https://cdn.redoc.ly/redoc/logo-mini.svg';
      t.same(violations.filter((v) => !external(v)), [], 'no violation by logd\'s own assets or inline code');
      await page.close();
    });
  }
});
