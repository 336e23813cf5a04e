/**
 * Observability routes of the registry's HTTP API: `GET /metrics` (Prometheus text format) and
 * `GET /v1/prometheus/targets` (Prometheus `http_sd` service discovery from the catalog).
 */
import type { FastifyInstance } from "fastify";
import { Name, formatIssues, type CatalogInstance } from "roster-schemas";
import type { Registry as PromRegistry } from "prom-client";
import { z } from "zod";
import { BadRequestError, NotReadyError } from "../errors.js";
import type { HttpDeps } from "./http.js";
import { ErrorBody, docSchema } from "./openapi.js";

/** The querystring as sent: `service` repeatable and/or comma-separated. */
const TargetsQueryInput = z
  .object({
    service: z.union([z.string(), z.array(z.string())]).optional().describe("service name(s), repeatable or comma-separated; default every service"),
    status: z.enum(["passing", "any"]).optional().describe("`any` (default) lists every instance and exposes its status as a label; `passing` only passing ones"),
  })
  .strict();

const TargetsQuery = TargetsQueryInput.transform((q, ctx) => {
  const raw = q.service === undefined ? [] : Array.isArray(q.service) ? q.service : [q.service];
  const services = raw.flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s !== "");
  for (const s of services) {
    if (!Name.safeParse(s).success) ctx.addIssue({ code: "custom", path: ["service"], message: `"${s.slice(0, 80)}" is not a valid service name` });
  }
  return { services, status: q.status ?? "any" };
});

const TargetGroup = z.object({
  targets: z.array(z.string()).describe("one `address:port`"),
  labels: z.record(z.string(), z.string()).describe("`__meta_roster_*` labels"),
});


/** `[a-zA-Z0-9_]` only, as Prometheus label names require (Consul SD does the same to meta keys). */
export function sanitizeLabelName(key: string): string {
  return key.replace(/[^a-zA-Z0-9_]/g, "_");
}

/** One instance as a Prometheus `http_sd` target group. */
export function targetGroup(i: CatalogInstance): z.infer<typeof TargetGroup> {
  const host = i.address.includes(":") && !i.address.startsWith("[") ? `[${i.address}]` : i.address;
  const labels: Record<string, string> = {
    __meta_roster_service: i.service,
    __meta_roster_instance: i.id,
    __meta_roster_host: i.host,
    __meta_roster_address: i.address,
    __meta_roster_port: String(i.port),
    __meta_roster_status: i.status,
    // Wrapped in separators (as Consul SD does) so a relabel regex like `.*,prod,.*` needs no anchoring cases.
    __meta_roster_tags: `,${i.tags.join(",")},`,
    __meta_roster_weight: String(i.weight),
  };
  if (i.zone !== undefined) labels.__meta_roster_zone = i.zone;
  if (i.reason !== undefined) labels.__meta_roster_reason = i.reason;
  for (const [k, v] of Object.entries(i.meta)) labels[`__meta_roster_meta_${sanitizeLabelName(k)}`] = v;
  return { targets: [`${host}:${i.port}`], labels };
}

const METRICS_SCHEMA = docSchema({
  summary: "Prometheus metrics of this registry (text exposition format)",
  tags: ["observability"],
  response: { 200: { description: "Prometheus text exposition format", contentType: "text/plain" } },
});
const TARGETS_SCHEMA = docSchema({
  summary: "Prometheus http_sd targets: one target group per instance with __meta_roster_* labels",
  tags: ["observability"],
  querystring: TargetsQueryInput,
  response: { 200: z.array(TargetGroup), 400: ErrorBody, 503: ErrorBody },
});

export interface MetricsRouteDeps extends Pick<HttpDeps, "catalog" | "loaded"> {
  metrics?: PromRegistry;
}

export function registerMetricsRoutes(app: FastifyInstance, deps: MetricsRouteDeps): void {
  const metrics = deps.metrics;
  if (metrics) {
    app.get(
      "/metrics",
      { schema: METRICS_SCHEMA },
      async (_req, reply) => {
        const body = await metrics.metrics();
        return reply.header("content-type", metrics.contentType).send(body);
      },
    );
  }

  app.get(
    "/v1/prometheus/targets",
    { schema: TARGETS_SCHEMA },
    async (request) => {
      // Before the catalog is loaded an empty list would make Prometheus drop every target;
      // an error makes it keep the last good list.
      if (deps.loaded && !deps.loaded()) throw new NotReadyError("catalog not loaded from KV yet");
      const r = TargetsQuery.safeParse(request.query);
      if (!r.success) throw new BadRequestError(`invalid query: ${formatIssues(r.error).join("; ")}`);
      const { services, status } = r.data;
      const views = services.length === 0 ? deps.catalog.services() : services.map((name) => deps.catalog.service(name));
      const out: Array<z.infer<typeof TargetGroup>> = [];
      for (const v of views) {
        for (const i of v.instances) if (status === "any" || i.status === "passing") out.push(targetGroup(i));
      }
      return out;
    },
  );
}
