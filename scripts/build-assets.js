// Part of `npm run build`: copies the API documentation pages' assets
// (Swagger UI and ReDoc's standalone bundle, from dev dependencies) into
// dist/assets/docs, where logd serves them from (src/http/docs.ts), so a
// production install (`npm prune --omit=dev`) needs neither package nor
// their peers.
'use strict';
const { copyFileSync, mkdirSync } = require('node:fs');
const path = require('node:path');

const out = path.join(__dirname, '..', 'dist', 'assets', 'docs');
const swagger = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const files = {
  'swagger-ui.css': path.join(swagger, 'swagger-ui.css'),
  'swagger-ui-bundle.js': path.join(swagger, 'swagger-ui-bundle.js'),
  'redoc.standalone.js': require.resolve('redoc/bundles/redoc.standalone.js'),
};
mkdirSync(out, { recursive: true });
for (const [name, from] of Object.entries(files)) copyFileSync(from, path.join(out, name));
