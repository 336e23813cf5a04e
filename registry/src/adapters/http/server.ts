import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from "fastify";
import { Name, formatIssues, parseDuration } from "roster-schemas";
import type { Logger } from "pino";
import { z } from "zod";
import { BadRequestError, NotReadyError, OverloadedError, RouteNotFoundError, ServiceNotFoundError } from "../../errors.js";
import { BodyCache, PublicFragments } from "./body-cache.js";
import type { CatalogReader } from "../store/catalog-memory.js";
import { registerCatalogRoutes } from "./catalog.js";
import { registerMetricsRoutes } from "./metrics.js";
import { registerDashboard } from "./dashboard.js";
import { ErrorBody, docSchema, registerOpenApi } from "./openapi.js";
import { PublicInstance } from "./public-instance.js";
import { registerStreamRoutes, type StreamOptions } from "./stream.js";
import { registerHistoryRoutes } from "./history.js";
import { installHttpSecurity, httpServerOptions, type HttpSecurity } from "./auth.js";
import { installErrorHandler } from "./error-handler.js";
import { defaultJitter, waitWhileListening } from "./blocking-wait.js";

export interface StatusBody {
  revision: number;
  hosts: number;
  lostHosts: number;
  instances: number;
  services: number;
  selfPreservation: boolean;
  drops: { total: number; byReason: Record<string, number>; byKind: Record<string, number> };
  natsConnected: boolean;
  catalogLoaded: boolean;
  [extra: string]: unknown;
}

export interface HttpDeps {
  catalog: CatalogReader;
  status: () => StatusBody;
  ready: () => boolean;
  /** False until the catalog is loaded from KV: catalog routes answer 503 ROSTER_NOT_READY meanwhile. */
  loaded?: () => boolean;
  /** True while self-preservation holds the catalog: catalog reads carry `X-Roster-Degraded: 1`. */
  degraded?: () => boolean;
  maxBlockingWaitMs: number;
  logger: Logger;
  /** Extra wait added to a blocking query (default: random up to wait/16, as Consul does). */
  jitter?: (waitMs: number) => number;
  /** Served on GET /metrics when given. */
  metrics?: import("prom-client").Registry;
  /** Event streams (/v1/stream, /v1/services/:name/stream): ring size, heartbeat. */
  stream?: StreamOptions;
  /** The bulk lane: a catalog body it does not admit (overloaded) is answered 503 ROSTER_OVERLOADED with Retry-After. */
  bulk?: { admit(): boolean; retryAfterMs(): number };
  /** Tokens, HTTPS, rate limit, body limit (http-auth.ts); absent = open HTTP on the listen address. */
  security?: HttpSecurity;
}

const ServiceParams = z.object({ name: Name }).strict();

const Index = z
  .string()
  .regex(/^\d{1,15}$/, { error: "expected a non-negative integer" })
  .transform(Number);

const Wait = z.string().transform((s, ctx) => {
  const ms = parseDuration(s);
  if (ms === null) {
    ctx.addIssue({ code: "custom", message: 'expected a duration like "30s" or "500ms"' });
    return z.NEVER;
  }
  return ms;
});

const InstancesQuery = z
  .object({
    status: z.enum(["passing", "any"]).default("any").meta({ description: "`passing` keeps only passing instances" }),
    zone: Name.optional().meta({ description: "only instances in this zone" }),
    tag: z.string().min(1).max(64).optional().meta({ description: "only instances with this tag" }),
    index: Index.optional().meta({ description: "blocking query: wait until the service's revision (X-Roster-Index) passes this" }),
    wait: Wait.optional().meta({ description: 'longest wait of a blocking query, e.g. "30s" (capped by maxBlockingWait)' }),
  })
  .strict();

// Documentation of the answers (zod is the one source of truth; see openapi.ts).
const Ok = z.object({ status: z.literal("ok") });
const Readiness = z.object({ ready: z.boolean(), natsConnected: z.boolean(), catalogLoaded: z.boolean() });
const Status = z.looseObject({
  revision: z.number().meta({ description: "highest catalog revision" }),
  hosts: z.number(),
  lostHosts: z.number(),
  instances: z.number(),
  services: z.number(),
  selfPreservation: z.boolean().meta({ description: "true while expiries are suspended because too many hosts went silent at once" }),
  drops: z.object({ total: z.number(), byReason: z.record(z.string(), z.number()), byKind: z.record(z.string(), z.number()) }),
  natsConnected: z.boolean(),
  catalogLoaded: z.boolean(),
});
const ServiceSummary = z.object({ name: Name, instances: z.number(), passing: z.number() });

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new BadRequestError(`invalid ${what}: ${formatIssues(r.error).join("; ")}`);
  return r.data;
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(",").some((t) => {
    const v = t.trim().replace(/^W\//, "");
    return v === etag || v === "*";
  });
}

/** Builds the HTTP API (fastify). `listen` is the caller's business; tests use `inject()`. */
export function buildHttp(deps: HttpDeps): FastifyInstance {
  // Per-request "incoming/completed" lines are info level: keep the HTTP logger at warn or quieter.
  const parentLevel = deps.logger.levels.values[deps.logger.level] ?? 30;
  const level = parentLevel > 40 ? deps.logger.level : "warn";
  const app = Fastify({
    loggerInstance: deps.logger.child({}, { level }) as FastifyBaseLogger,
    return503OnClosing: true,
    // A malformed URL (bad %-escape) is answered by the router itself: keep the { code, message } shape.
    frameworkErrors: (err, _req, reply) => void (reply as FastifyReply).code(400).send({ code: "ROSTER_BAD_REQUEST", message: err.message }),
    ...httpServerOptions(deps.security),
  });
  const clientKey = installHttpSecurity(app, deps.security);
  const closing = new AbortController();
  const jitter = deps.jitter ?? defaultJitter;
  const bodies = new BodyCache();
  const fragments = new PublicFragments(deps.catalog);

  app.addHook("preClose", async () => {
    closing.abort();
  });

  // Before any route: @fastify/swagger documents the routes added after it.
  registerOpenApi(app, { title: "Roster registry", version: "1", description: "Service catalog of the Roster registry. Errors are {code, message} with a ROSTER_... code." });

  // One place maps error codes to statuses and shapes the body.
  installErrorHandler(app, { what: "HTTP handler" });

  app.setNotFoundHandler((request) => {
    throw new RouteNotFoundError(request.method, request.url.split("?")[0] ?? "");
  });

  app.get("/healthz", { schema: docSchema({ summary: "Liveness: the process answers", tags: ["health"], response: { 200: Ok } }) }, async () => ({ status: "ok" }));

  const readySchema = docSchema({
    summary: "Readiness: connected to NATS and the catalog is loaded",
    tags: ["health"],
    response: { 200: Readiness, 503: { description: "not ready (same body)", schema: Readiness } },
  });
  app.get("/readyz", { schema: readySchema }, async (_req, reply) => {
    const s = deps.status();
    const ready = deps.ready();
    return reply.code(ready ? 200 : 503).send({ ready, natsConnected: s.natsConnected, catalogLoaded: s.catalogLoaded });
  });

  const statusSchema = docSchema({ summary: "Registry status and counters", description: "More fields may be present (counters, KV stats).", tags: ["health"], response: { 200: Status } });
  app.get("/v1/status", { schema: statusSchema }, async () => deps.status());

  // Bulk work gives way to transitions: a body the lane does not admit is refused (a 304 is not bulk).
  const shedBulk = (reply: FastifyReply) => {
    if (!deps.bulk || deps.bulk.admit()) return;
    const seconds = Math.max(1, Math.ceil(deps.bulk.retryAfterMs() / 1000));
    void reply.header("retry-after", String(seconds));
    throw new OverloadedError(seconds);
  };

  // Before the catalog is loaded every service would look unknown (404): say "not ready" instead.
  const requireLoaded = async (_req: unknown, reply: FastifyReply) => {
    if (deps.loaded && !deps.loaded()) throw new NotReadyError("catalog not loaded from KV yet");
    if (deps.degraded?.()) void reply.header("X-Roster-Degraded", "1");
  };

  const servicesSchema = docSchema({
    summary: "Every known service with instance counts",
    description: "Header X-Roster-Index: the catalog revision.",
    tags: ["catalog"],
    response: { 200: z.array(ServiceSummary), 503: ErrorBody },
  });
  app.get("/v1/services", { preHandler: requireLoaded, schema: servicesSchema }, async (_req, reply) => {
    const list = deps.catalog.services().map((s) => ({
      name: s.name,
      instances: s.instances.length,
      passing: s.instances.filter((i) => i.status === "passing").length,
    }));
    void reply.header("X-Roster-Index", String(deps.catalog.revision));
    return list;
  });

  const instancesSchema = docSchema({
    summary: "A service's instances (optionally a blocking query)",
    description:
      "With `index`, waits until the service's revision passes it (at most `wait`, capped by the registry). " +
      "Headers: X-Roster-Index (the service revision) and ETag; If-None-Match gives 304. " +
      "503 ROSTER_OVERLOADED with Retry-After while the registry sheds bulk work (health transitions go first).",
    tags: ["catalog"],
    params: ServiceParams,
    querystring: InstancesQuery,
    response: {
      200: z.array(PublicInstance),
      304: { description: "not modified (If-None-Match matched the ETag)" },
      400: ErrorBody,
      404: ErrorBody,
      503: ErrorBody,
    },
  });
  app.get("/v1/services/:name/instances", { preHandler: requireLoaded, schema: instancesSchema }, async (request, reply: FastifyReply) => {
    const { name } = parse(ServiceParams, request.params, "path");
    const q = parse(InstancesQuery, request.query, "query");
    if (q.index !== undefined) {
      const wanted = Math.min(q.wait ?? deps.maxBlockingWaitMs, deps.maxBlockingWaitMs);
      const waitMs = wanted + jitter(wanted);
      const after = q.index;
      await waitWhileListening(reply, closing.signal, (signal) => deps.catalog.waitForChange(name, after, waitMs, signal));
    }
    // The revision alone: a 304 or a cached body needs no copy of the instances.
    const view = deps.catalog.serviceRevision(name);
    void reply.header("X-Roster-Index", String(view.revision));
    if (!view.known) throw new ServiceNotFoundError(name);
    const etag = `"${view.revision}"`;
    void reply.header("ETag", etag);
    if (etagMatches(request.headers["if-none-match"], etag)) return reply.code(304).send();
    const variant = JSON.stringify([q.status, q.zone, q.tag]);
    // Only a body still to build is bulk work; a held one is a socket write (every watcher after the first).
    if (!bodies.has(name, view.revision, variant)) shedBulk(reply);
    // Encoded once per (revision, query): see body-cache.ts; joined from per-instance fragments.
    const body = bodies.getEncoded(name, view.revision, variant, () =>
      fragments.body(name, (i) => (q.status === "any" || i.status === "passing") && (q.zone === undefined || i.zone === q.zone) && (q.tag === undefined || i.tags.includes(q.tag))),
    );
    return reply.type("application/json; charset=utf-8").send(body);
  });

  registerCatalogRoutes(app, deps, bodies, shedBulk);
  registerMetricsRoutes(app, deps);
  const ring = registerStreamRoutes(app, { catalog: deps.catalog, requireLoaded, clientKey, bodies, fragments, ...deps.stream });
  registerHistoryRoutes(app, { catalog: deps.catalog, ring, requireLoaded });
  registerDashboard(app);

  return app;
}
