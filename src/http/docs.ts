/**
 * Interactive API docs, never from a CDN: Swagger UI at /docs and ReDoc at
 * /redoc, both reading /openapi.json. `npm run build` copies their assets
 * from the dev dependencies into dist/assets/docs (scripts/build-assets.js);
 * they are read from there on first use and kept in memory (src/http/assets.ts).
 */
import { createHash } from 'node:crypto';
import { AssetDir } from './assets';

/** /docs/assets/:file: the files the build copied (not content-hashed, so cached for a day). */
export const DOCS_ASSETS = new AssetDir('docs', 'public, max-age=86400');

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
