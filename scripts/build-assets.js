// Part of `npm run build`: writes the files logd serves from dist/assets, so
// a production install (`npm prune --omit=dev`) needs none of the packages
// they come from, and nothing is fetched from a CDN.
//  - dist/assets/docs: the API documentation pages' assets (Swagger UI and
//    ReDoc's standalone bundle), copied (src/http/docs.ts serves them).
//  - dist/assets/console: the console (console/src, Preact and uPlot)
//    bundled by esbuild into app-<hash>.js and app-<hash>.css
//    (src/http/console.ts serves them).
// Each directory gets a manifest.json (logical name -> file name) and a
// gzip twin of every file (<name>.gz), served to clients that take gzip.
'use strict';
const { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const esbuild = require('esbuild');

const root = path.join(__dirname, '..');
const assets = path.join(root, 'dist', 'assets');

function finish(dir, manifest) {
  for (const name of Object.values(manifest)) {
    const file = path.join(dir, name);
    writeFileSync(`${file}.gz`, zlib.gzipSync(readFileSync(file), { level: 9 }));
  }
  writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

function docs() {
  const out = path.join(assets, 'docs');
  const swagger = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  const files = {
    'swagger-ui.css': path.join(swagger, 'swagger-ui.css'),
    'swagger-ui-bundle.js': path.join(swagger, 'swagger-ui-bundle.js'),
    'redoc.standalone.js': require.resolve('redoc/bundles/redoc.standalone.js'),
  };
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const [name, from] of Object.entries(files)) copyFileSync(from, path.join(out, name));
  finish(out, Object.fromEntries(Object.keys(files).map((name) => [name, name])));
}

function consoleApp() {
  const out = path.join(assets, 'console');
  rmSync(out, { recursive: true, force: true });
  const result = esbuild.buildSync({
    entryPoints: { app: path.join(root, 'console', 'src', 'main.tsx') },
    outdir: out,
    entryNames: '[name]-[hash]',
    bundle: true,
    minify: true,
    format: 'iife',
    target: 'es2020',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
  });
  const manifest = {};
  for (const file of Object.keys(result.metafile.outputs)) {
    const name = path.basename(file);
    manifest[`app${path.extname(name)}`] = name;
  }
  finish(out, manifest);
}

docs();
consoleApp();
