/**
 * The console: a browser's page at GET / (src/http/server.ts picks it when
 * Accept names text/html; any other client there gets Elasticsearch's root
 * probe) and its assets at /console/:file, bundled by `npm run build` from
 * console/src into dist/assets/console with content hashes in their names,
 * so they are cached for good and the page is revalidated. The page holds
 * no data: the console reads through the API with the user's token.
 */
import type { HttpRequest } from 'uWebSockets.js';
import { AssetDir } from './assets';
import { send, type Exchange } from './respond';

export const CONSOLE_ASSETS = new AssetDir('console', 'public, max-age=31536000, immutable');

let page: string | undefined;

function consolePage(): string {
  if (page) return page;
  const names = CONSOLE_ASSETS.names();
  page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>logd</title><meta name="color-scheme" content="light dark"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/${names['app.css']}">
<script defer src="/console/${names['app.js']}"></script></head>
<body><div id="app"></div></body></html>`;
  return page;
}

/** A Host header fit to be written into the policy (a name or address, a port). */
const SAFE_HOST = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/;

/**
 * No inline script or style, nothing from elsewhere. The live view's
 * WebSocket is named by its scheme and host: CSP Level 3 lets 'self' match
 * ws: and wss: on the page's host, browsers before it do not
 * (https://www.w3.org/TR/CSP3/#match-url-to-source-expression).
 */
function policy(host: string): string {
  const sockets = SAFE_HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    + `connect-src 'self'${sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
}

export function sendConsolePage(x: Exchange, req: HttpRequest): void {
  send(x, 200, 'text/html; charset=utf-8', consolePage(), {
    'content-security-policy': policy(req.getHeader('host')),
    'cache-control': 'no-cache',
    'referrer-policy': 'no-referrer',
  });
}
