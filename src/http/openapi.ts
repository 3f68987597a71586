/**
 * The OpenAPI 3.1 document, generated from the route table and the same JSON
 * Schemas ajv validates with, so the two cannot drift apart.
 */
import { ERRORS, type ErrorCode } from '../errors';
import { deviceIdParamSchema } from './query-schemas';
import { batchSchema, logEntrySchema } from './schemas';
import type { Route } from './routes';

/** Schemas of the path parameters (`:name` in route patterns), as the handlers validate them. */
const PATH_PARAMS: Record<string, object> = { device_id: deviceIdParamSchema };

/** JSON Schema objects as the schemas module declares them (ajv `$id`s become component names). */
type Schema = Record<string, unknown>;

/** Rewrites ajv-style `$ref: 'LogEntry'` to OpenAPI component references and drops `$id`. */
function toOpenApi(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toOpenApi);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$id') continue;
    out[k] = k === '$ref' && typeof v === 'string' && !v.startsWith('#') ? `#/components/schemas/${v}` : toOpenApi(v);
  }
  return out;
}

const issueSchema = {
  type: 'object',
  required: ['loc', 'msg', 'type'],
  properties: {
    loc: { type: 'array', items: { type: ['string', 'integer'] }, description: 'where: ["body", field...] or ["query", parameter]' },
    msg: { type: 'string' },
    type: { type: 'string' },
  },
};

const errorSchema = {
  type: 'object',
  required: ['detail', 'code'],
  properties: {
    detail: {
      description: "FastAPI's detail: a sentence, or for 422 the list of problems",
      oneOf: [{ type: 'string' }, { type: 'array', items: { $ref: '#/components/schemas/ValidationIssue' } }],
    },
    code: { enum: Object.keys(ERRORS).filter((c) => ERRORS[c as ErrorCode].status > 0), description: 'stable error code (README: Errors)' },
  },
};

/** An OpenAPI content map: each media type with its schema. */
const content = (schemas: Record<string, object>): Record<string, object> =>
  Object.fromEntries(Object.entries(schemas).map(([type, schema]) => [type, { schema: toOpenApi(schema) }]));

const LOGD_ERROR_SCHEMAS = { 'application/json': { $ref: '#/components/schemas/Error' } };

function errorResponses(codes: ErrorCode[], body: Record<string, object>): Record<string, object> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ERRORS[code].status, [...(byStatus.get(ERRORS[code].status) ?? []), code]);
  const out: Record<string, object> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: list.map((c) => `\`${c}\`: ${ERRORS[c].message}`).join('; '),
      ...(status === 503 ? { headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'seconds to wait before retrying' } } } : {}),
      content: content(body),
    };
  }
  return out;
}

function operation(route: Route): object {
  const pathParams = [...route.path.matchAll(/:([a-z_]+)/g)].map((m) => m[1]);
  const query = (route.query ?? {}) as { properties?: Record<string, Schema>; required?: string[] };
  const parameters = [
    ...pathParams.map((name) => ({ name, in: 'path', required: true, schema: toOpenApi(PATH_PARAMS[name]) })),
    ...Object.entries(query.properties ?? {}).map(([name, schema]) => ({
      name,
      in: 'query',
      required: (query.required ?? []).includes(name),
      ...(typeof schema.description === 'string' ? { description: schema.description } : {}),
      schema: toOpenApi(schema),
    })),
  ];
  const errors: ErrorCode[] = [...route.errors, 'LOGD_BAD_REQUEST', 'LOGD_HEADERS_TOO_LARGE', 'LOGD_INTERNAL'];
  if (route.scope !== 'public') errors.push('LOGD_UNAUTHORIZED', 'LOGD_FORBIDDEN');
  return {
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    operationId: `${route.method}${route.path.replace(/[^a-zA-Z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
    ...(route.scope === 'public' ? { security: [] } : { security: [{ bearer: [route.scope] }] }),
    ...(parameters.length ? { parameters } : {}),
    ...(route.body ? { requestBody: { required: true, content: content({ [route.bodyType ?? 'application/json']: route.body, ...route.otherBodies }) } } : {}),
    responses: {
      [route.ok.status ?? 200]: {
        description: route.ok.description,
        ...(route.ok.schema || route.ok.contentType ? { content: { [route.ok.contentType ?? 'application/json']: { schema: toOpenApi(route.ok.schema ?? { type: 'string' }) } } } : {}),
      },
      ...errorResponses(errors, route.errorSchemas ?? LOGD_ERROR_SCHEMAS),
    },
  };
}

export function openApiDocument(routes: Route[], version: string): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const r of routes) {
    if (r.hidden) continue;
    const path = r.path.replace(/:([a-z_]+)/g, '{$1}');
    (paths[path] ??= {})[r.method] = operation(r);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'logd',
      version,
      description: 'High-throughput HTTP log collector. Once any token exists, routes need a bearer token with their scope (ingest, read, admin; admin holds all).',
    },
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from `logd token create`' } },
      schemas: {
        LogEntry: toOpenApi(logEntrySchema),
        LogBatch: toOpenApi(batchSchema),
        ValidationIssue: issueSchema,
        Error: errorSchema,
      },
    },
  };
}
