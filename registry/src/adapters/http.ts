import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from "fastify";
import { Name, formatIssues, parseDuration, type CatalogInstance } from "@roster/schemas";
import type { Logger } from "pino";
import { z } from "zod";
import { BadRequestError, HTTP_STATUS, NotReadyError, RouteNotFoundError, ServiceNotFoundError, httpStatusOf, type RegistryErrorCode } from "../errors.js";
import { BodyCache } from "./body-cache.js";
import type { CatalogReader } from "./catalog-memory.js";

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
  maxBlockingWaitMs: number;
  logger: Logger;
  /** Extra wait added to a blocking query (default: random up to wait/16, as Consul does). */
  jitter?: (waitMs: number) => number;
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
    status: z.enum(["passing", "any"]).default("any"),
    zone: Name.optional(),
    tag: z.string().min(1).max(64).optional(),
    index: Index.optional(),
    wait: Wait.optional(),
  })
  .strict();

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new BadRequestError(`invalid ${what}: ${formatIssues(r.error).join("; ")}`);
  return r.data;
}

/** The public shape of an instance over HTTP. */
function publicInstance(i: CatalogInstance) {
  return {
    id: i.id,
    service: i.service,
    host: i.host,
    address: i.address,
    port: i.port,
    ...(i.zone !== undefined ? { zone: i.zone } : {}),
    tags: i.tags,
    meta: i.meta,
    weight: i.weight,
    status: i.status,
    ...(i.reason !== undefined ? { reason: i.reason } : {}),
    checks: i.checks,
    updatedAt: i.updatedAt,
  };
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
  const app = Fastify({ loggerInstance: deps.logger.child({}, { level }) as FastifyBaseLogger, return503OnClosing: true });
  const closing = new AbortController();
  const jitter = deps.jitter ?? ((w: number) => Math.floor(Math.random() * (w / 16)));
  const bodies = new BodyCache();

  app.addHook("preClose", async () => {
    closing.abort();
  });

  // One place maps error codes to statuses and shapes the body.
  app.setErrorHandler((err, request, reply) => {
    const e = err as { code?: unknown; statusCode?: unknown; message?: string };
    let code: RegistryErrorCode;
    let status: number;
    if (typeof e.code === "string" && e.code in HTTP_STATUS) {
      code = e.code as RegistryErrorCode;
      status = httpStatusOf(err);
    } else if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
      code = "ROSTER_BAD_REQUEST";
      status = e.statusCode;
    } else {
      code = "ROSTER_INTERNAL";
      status = 500;
      request.log.error({ err }, "unhandled error in HTTP handler");
    }
    void reply.code(status).send({ code, message: status === 500 ? "internal error" : (e.message ?? code) });
  });

  app.setNotFoundHandler((request) => {
    throw new RouteNotFoundError(request.method, request.url.split("?")[0] ?? "");
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    const s = deps.status();
    const ready = deps.ready();
    return reply.code(ready ? 200 : 503).send({ ready, natsConnected: s.natsConnected, catalogLoaded: s.catalogLoaded });
  });

  app.get("/v1/status", async () => deps.status());

  // Before the catalog is loaded every service would look unknown (404): say "not ready" instead.
  const requireLoaded = async () => {
    if (deps.loaded && !deps.loaded()) throw new NotReadyError("catalog not loaded from KV yet");
  };

  app.get("/v1/services", { preHandler: requireLoaded }, async (_req, reply) => {
    const list = deps.catalog.services().map((s) => ({
      name: s.name,
      instances: s.instances.length,
      passing: s.instances.filter((i) => i.status === "passing").length,
    }));
    void reply.header("X-Roster-Index", String(deps.catalog.revision));
    return list;
  });

  app.get("/v1/services/:name/instances", { preHandler: requireLoaded }, async (request, reply: FastifyReply) => {
    const { name } = parse(ServiceParams, request.params, "path");
    const q = parse(InstancesQuery, request.query, "query");
    if (q.index !== undefined) {
      const wanted = Math.min(q.wait ?? deps.maxBlockingWaitMs, deps.maxBlockingWaitMs);
      const waitMs = wanted + jitter(wanted);
      const gone = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableEnded) gone.abort();
      };
      reply.raw.once("close", onClose);
      const onClosing = () => gone.abort();
      closing.signal.addEventListener("abort", onClosing, { once: true });
      try {
        await deps.catalog.waitForChange(name, q.index, waitMs, gone.signal);
      } finally {
        reply.raw.off("close", onClose);
        closing.signal.removeEventListener("abort", onClosing);
      }
    }
    const view = deps.catalog.service(name);
    void reply.header("X-Roster-Index", String(view.revision));
    if (!view.known) throw new ServiceNotFoundError(name);
    const etag = `"${view.revision}"`;
    void reply.header("ETag", etag);
    if (etagMatches(request.headers["if-none-match"], etag)) return reply.code(304).send();
    // Encoded once per (revision, query): see body-cache.ts.
    const body = bodies.get(name, view.revision, JSON.stringify([q.status, q.zone, q.tag]), () =>
      view.instances
        .filter((i) => q.status === "any" || i.status === "passing")
        .filter((i) => q.zone === undefined || i.zone === q.zone)
        .filter((i) => q.tag === undefined || i.tags.includes(q.tag))
        .map(publicInstance),
    );
    return reply.type("application/json; charset=utf-8").send(body);
  });

  return app;
}
