/**
 * Interactive API docs, never from a CDN: Swagger UI at /docs and ReDoc at
 * /redoc, both reading /openapi.json. `npm run build` copies their assets
 * from the dev dependencies into dist/assets/docs (scripts/build-assets.js);
 * they are read from there on first use and kept in memory.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootPath } from '../paths';

/** The files /docs/assets/:file may serve, by their type. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css',
  'swagger-ui-bundle.js': 'text/javascript',
  'redoc.standalone.js': 'text/javascript',
};

const loaded = new Map<string, string>();

/** An asset's content and type, or undefined when the name is not one of ASSETS. */
export function asset(name: string): { body: string; type: string } | undefined {
  const type = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
  if (!type) return undefined;
  let body = loaded.get(name);
  if (body === undefined) {
    body = readFileSync(rootPath('dist', 'assets', 'docs', name), 'utf8');
    loaded.set(name, body);
  }
  return { body, type };
}

const SWAGGER_INIT = "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });";

export const SWAGGER_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>logd API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>${SWAGGER_INIT}</script>
</body></html>`;

export const REDOC_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>logd API</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script>
</body></html>`;

/**
 * Content-Security-Policy of each page: only logd's own assets and
 * /openapi.json, the one inline script by its hash
 * (https://www.w3.org/TR/CSP3/#grammardef-hash-source). Both UIs set inline
 * styles (ReDoc through styled-components), and ReDoc runs its search index
 * in a blob: worker; icons are data: images.
 */
const CSP_COMMON = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const inlineHash = (script: string): string => `'sha256-${createHash('sha256').update(script).digest('base64')}'`;

export const SWAGGER_CSP = `${CSP_COMMON}; script-src 'self' ${inlineHash(SWAGGER_INIT)}`;
export const REDOC_CSP = `${CSP_COMMON}; script-src 'self'; worker-src blob:`;
