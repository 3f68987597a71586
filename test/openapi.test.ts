/** The OpenAPI document covers every route, parameter, body and error; the docs pages and their assets are served. */
import Ajv2020 from 'ajv/dist/2020';
import t from 'tap';
import { ERRORS } from '../src/errors';
import { ROUTES } from '../src/http/routes';
import { request, startStack } from './helpers/logd';

t.test('openapi', async (t) => {
  const { logd } = await startStack(t, { workers: 1 });
  const r = await request(`${logd.url}/openapi.json`);
  t.equal(r.status, 200);
  const doc = r.body;
  t.equal(doc.openapi, '3.1.0');

  await t.test('every route, with its parameters, body, answers and errors', async (t) => {
    for (const route of ROUTES.filter((x) => !x.hidden)) {
      const path = route.path.replace(/:([a-z_]+)/g, '{$1}');
      const op = doc.paths[path]?.[route.method];
      t.ok(op, `${route.method.toUpperCase()} ${path} is documented`);
      if (!op) continue;
      t.equal(op.summary, route.summary);
      t.ok(op.responses[String(route.ok.status ?? 200)], `its ${route.ok.status ?? 200}`);
      for (const code of route.errors) {
        t.match(op.responses[String(ERRORS[code].status)]?.description ?? '', code, `${path}: ${code}`);
      }
      if (route.scope !== 'public') {
        t.same(op.security, [{ bearer: [route.scope] }], `${path}: needs the ${route.scope} scope`);
        t.ok(op.responses['401'] && op.responses['403'], `${path}: 401 and 403`);
      }
      const query = (route.query ?? {}) as { properties?: Record<string, unknown> };
      for (const name of Object.keys(query.properties ?? {})) {
        t.ok(op.parameters.some((p: { name: string; in: string }) => p.name === name && p.in === 'query'), `${path}: query parameter ${name}`);
      }
      for (const m of route.path.matchAll(/:([a-z_]+)/g)) {
        t.ok(op.parameters.some((p: { name: string; in: string }) => p.name === m[1] && p.in === 'path'), `${path}: path parameter ${m[1]}`);
      }
      if (route.body) t.ok(op.requestBody.content[route.bodyType ?? 'application/json'].schema, `${path}: request body (${route.bodyType ?? 'application/json'})`);
      // errors in the route's own shape where it has one (a protocol's), else logd's Error
      const errorTypes = Object.keys(route.errorSchemas ?? { 'application/json': {} }).sort();
      t.same(Object.keys(op.responses['401']?.content ?? op.responses['500'].content).sort(), errorTypes, `${path}: errors as ${errorTypes.join(', ')}`);
    }
    const status = doc.paths['/v1/logs'].post.responses['400'].content['application/json'].schema;
    t.match(status.description, /google\.rpc\.Status/, 'OTLP errors are a google.rpc.Status');
    t.equal(doc.paths['/api/log'].post.responses['400'].content['application/json'].schema.$ref, '#/components/schemas/Error', 'logd\'s own routes answer its Error');
  });

  await t.test('the schemas are valid JSON Schema 2020-12 and resolve', async (t) => {
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema({ $id: 'doc', components: doc.components });
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      const text = JSON.stringify(schema).replace(/#\/components/g, 'doc#/components');
      t.doesNotThrow(() => ajv.compile(JSON.parse(text)), `components.schemas.${name} compiles`);
    }
    const validate = ajv.compile({ $ref: 'doc#/components/schemas/LogBatch' });
    t.ok(validate({ logs: [{ device_id: 'd', log_level: 'INFO', message: 'm' }] }), 'a valid batch passes');
    t.notOk(validate({ logs: [{ device_id: 'd', log_level: 'LOUD', message: 'm' }] }), 'an invalid one fails');
  });

  await t.test('/docs and /redoc with their assets, no CDN', async (t) => {
    for (const page of ['/docs', '/redoc']) {
      const p = await request(`${logd.url}${page}`);
      t.equal(p.status, 200);
      t.match(p.headers.get('content-type'), /^text\/html/);
      t.notMatch(p.text, /https?:\/\//, `${page} loads nothing from another host`);
      const assets = [...p.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
      t.ok(assets.length > 0);
      for (const a of assets) {
        const res = await fetch(`${logd.url}${a}`);
        t.equal(res.status, 200, `${a} is served`);
        t.ok((await res.arrayBuffer()).byteLength > 10_000, `${a} has content`);
      }
    }
    t.equal((await request(`${logd.url}/docs/assets/..%2Fpackage.json`)).status, 404, 'only the listed assets');
  });
});
