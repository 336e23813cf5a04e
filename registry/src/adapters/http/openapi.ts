import swagger from "@fastify/swagger";
import { fastifySwaggerUi, type FastifySwaggerUiOptions } from "@fastify/swagger-ui";
import type { FastifyInstance, FastifySchema, RouteOptions } from "fastify";
import { z } from "zod";

/**
 * OpenAPI for the registry's HTTP API, generated from the same zod schemas the handlers
 * validate with. Schemas attached to routes are for documentation only: zod stays the
 * validator (readable ROSTER_BAD_REQUEST messages) and responses are serialised with
 * JSON.stringify, so a response schema never strips a field the API returns.
 */

/** The body of every error answer. */
export const ErrorBody = z.object({ code: z.string().meta({ description: "a stable ROSTER_... code (docs/errors.md)" }), message: z.string() });

type ResponseSpec = z.ZodType | { description: string; schema?: z.ZodType; contentType?: string };

export interface DocSpec {
  summary: string;
  description?: string;
  tags: string[];
  params?: z.ZodType;
  querystring?: z.ZodType;
  headers?: z.ZodType;
  body?: z.ZodType;
  /** By status code; a bare zod schema is described as "OK"/"error". */
  response?: Record<number, ResponseSpec>;
  /** Leave the route out of the OpenAPI document (static files, the docs themselves). */
  hide?: boolean;
}

/** zod → JSON schema (OpenAPI 3.0 dialect); the "input" side for what clients send. */
export function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  return z.toJSONSchema(schema, {
    io,
    target: "openapi-3.0",
    unrepresentable: "any",
    override: (ctx) => {
      // Answers may gain fields over time: document them open, not additionalProperties: false.
      if (io === "output" && ctx.jsonSchema.additionalProperties === false) delete ctx.jsonSchema.additionalProperties;
    },
  }) as Record<string, unknown>;
}

/**
 * A fastify route `schema` built from zod schemas, for the OpenAPI document only.
 *
 *   app.get("/v1/things/:name", { schema: docSchema({ summary: "One thing", tags: ["things"],
 *     params: ThingParams, response: { 200: Thing, 404: ErrorBody } }) }, handler)
 *
 * Keep validating inside the handler with the same zod schema (`ThingParams.safeParse`).
 */
export function docSchema(spec: DocSpec): FastifySchema {
  const out: Record<string, unknown> = { summary: spec.summary, tags: spec.tags };
  if (spec.description) out.description = spec.description;
  if (spec.hide) out.hide = true;
  if (spec.params) out.params = jsonSchemaOf(spec.params, "input");
  if (spec.querystring) out.querystring = jsonSchemaOf(spec.querystring, "input");
  if (spec.headers) out.headers = jsonSchemaOf(spec.headers, "input");
  if (spec.body) out.body = jsonSchemaOf(spec.body, "input");
  if (spec.response) {
    const response: Record<string, unknown> = {};
    for (const [code, r] of Object.entries(spec.response)) {
      const ok = Number(code) < 400;
      const { description, schema, contentType } =
        r instanceof z.ZodType ? { description: ok ? "OK" : "error", schema: r, contentType: undefined } : r;
      if (contentType) {
        response[code] = { description, content: { [contentType]: { schema: schema ? jsonSchemaOf(schema, "output") : { type: "string" } } } };
      } else if (schema) {
        response[code] = { description, ...jsonSchemaOf(schema, "output") };
      } else {
        response[code] = { description, type: "null" };
      }
    }
    out.response = response;
  }
  return out as FastifySchema;
}

export interface RouteEntry {
  method: string;
  url: string;
  hidden: boolean;
}

const routeLists = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Every route registered on `app` after `registerOpenApi` (for the "every route is documented" test). */
export function routesOf(app: FastifyInstance): RouteEntry[] {
  return routeLists.get(app) ?? [];
}

/**
 * The Content-Security-Policy of every /docs response: the page loads its scripts and styles from
 * /docs/static only (no inline script; Swagger UI sets inline styles), talks to this origin only,
 * and cannot be framed. Not the plugin's default policy: its `upgrade-insecure-requests` breaks
 * the page on a plain-HTTP registry.
 */
export const DOCS_CSP =
  "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; form-action 'self'; frame-ancestors 'none'; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'";

/**
 * Registers @fastify/swagger (document at /docs/json, /docs/yaml) and @fastify/swagger-ui
 * (page at /docs, assets from the package: works offline). Call before adding routes.
 */
export function registerOpenApi(app: FastifyInstance, info: { title: string; version: string; description?: string }): void {
  const list: RouteEntry[] = [];
  routeLists.set(app, list);
  app.addHook("onRoute", (r: RouteOptions) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const hidden = Boolean((r.schema as { hide?: boolean } | undefined)?.hide);
    for (const m of methods) list.push({ method: String(m), url: r.url, hidden });
  });
  // Documentation only: zod validates in the handlers, JSON.stringify serialises.
  app.setValidatorCompiler(() => (data) => ({ value: data }));
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Called directly, not through register(): a registered plugin only loads at ready(), after
  // buildHttp has added its routes, so its onRoute hook would miss every one of them. Called
  // here it hooks the root now and sees every later route, wherever it is added.
  swagger(app, {
    openapi: {
      openapi: "3.0.3",
      info,
      tags: [
        { name: "health", description: "liveness and readiness probes" },
        { name: "catalog", description: "the service catalog: services, instances, blocking queries" },
        { name: "stream", description: "server-sent events of catalog changes" },
      ],
    },
  }, (err) => {
    if (err) throw err;
  });
  // Wrapped: registered as is, it would look for "@fastify/swagger" among the registered
  // plugins, which the direct call above does not add.
  // (Typed as a callback plugin, it is an async function: await it.)
  const ui = fastifySwaggerUi as unknown as (docs: FastifyInstance, opts: FastifySwaggerUiOptions) => Promise<void>;
  void app.register(async (docs) => ui(docs, { routePrefix: "/docs", uiConfig: { docExpansion: "list", deepLinking: false }, staticCSP: DOCS_CSP }));
}
