import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from "fastify";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { z } from "zod";
import { BearerAuth, bearerAuthHook, formatIssues, LIMITS, Name, RosterError } from "roster-schemas";
import { ServiceInput } from "../config.js";
import type { InstanceView } from "../core/host.js";
import { AgentError, HTTP_STATUS, type AgentErrorCode } from "../errors.js";

/** What the local API needs from the agent. */
export interface AgentOps {
  info(): { hostId: string; epoch: number; natsConnected: boolean; draining: boolean; instances: number };
  list(): InstanceView[];
  get(id: string): InstanceView;
  /** Registers (or replaces) an instance from a `services[]`-like body. */
  upsert(input: ServiceInput): { id: string; replaced: boolean };
  remove(id: string): void;
  maintenance(id: string, enable: boolean, reason: string | undefined): void;
  ttlReport(id: string, checkId: string, verdict: "pass" | "warn" | "fail", note: string | undefined): void;
}

const IdParams = z.object({ id: Name });
const CheckParams = z.object({ id: Name, checkId: Name, verdict: z.enum(["pass", "warn", "fail"], { error: 'expected "pass", "warn" or "fail"' }) });
const TtlBody = z.strictObject({ note: z.string().max(LIMITS.maxCheckOutputLength).optional() }).optional();
const MaintenanceBody = z.strictObject({ enable: z.boolean(), reason: z.string().max(256).optional() });

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issues = formatIssues(r.error);
    throw Object.assign(new AgentError("ROSTER_BAD_REQUEST", `invalid ${what}: ${issues.join("; ")}`), { issues });
  }
  return r.data;
}

/**
 * The agent's local HTTP API (bound to loopback by default). Bodies are validated with zod;
 * every error is JSON `{ code, message }` with the status from errors.ts.
 */
export function buildApi(ops: AgentOps, log: Logger, auth: { token?: string; openReads?: boolean } = {}, metrics?: Registry): FastifyInstance {
  const app = Fastify({
    // Request lines are info-level: keep them out of the agent's log, errors stay.
    loggerInstance: log.child({ component: "api" }, { level: log.isLevelEnabled("debug") ? "debug" : "warn" }) as FastifyBaseLogger,
    bodyLimit: 256 * 1024,
    // A malformed URL (bad %-escape) is answered by the router itself: keep the { code, message } shape.
    frameworkErrors: (err, _req, reply) => void (reply as FastifyReply).status(400).send({ code: "ROSTER_BAD_REQUEST", message: err.message }),
  });
  // Same bearer check as the registry: with a token, writes need it; reads too unless openReads.
  if (auth.token !== undefined) {
    app.addHook("onRequest", bearerAuthHook(new BearerAuth({ tokens: [{ name: "api.token", secret: auth.token, scopes: ["read", "write"] }], openReads: auth.openReads ?? true, openPaths: ["/healthz"] })));
  }

  // An empty JSON body (`curl -X PUT -H 'content-type: application/json'`) means "no body".
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    const text = typeof body === "string" ? body : body.toString("utf8");
    if (text.trim() === "") return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new AgentError("ROSTER_BAD_REQUEST", `body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof AgentError && err.code in HTTP_STATUS) {
      const body: Record<string, unknown> = { code: err.code, message: err.message };
      const issues = (err as AgentError & { issues?: string[] }).issues;
      if (issues) body.issues = issues;
      return reply.status(HTTP_STATUS[err.code as AgentErrorCode]).send(body);
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) {
      return reply.status(status).send({ code: "ROSTER_BAD_REQUEST", message: (err as Error).message });
    }
    req.log.error({ err }, "local API request failed");
    const code = err instanceof RosterError ? err.code : "ROSTER_INTERNAL";
    return reply.status(500).send({ code, message: (err as Error).message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ code: "ROSTER_NOT_FOUND", message: `no route ${req.method} ${req.url}` });
  });

  app.get("/healthz", async () => ({ status: "ok", ...ops.info() }));

  // Prometheus text format (roster_agent_* and process metrics).
  if (metrics) app.get("/metrics", async (_req, reply) => reply.header("content-type", metrics.contentType).send(await metrics.metrics()));

  app.get("/v1/agent/instances", async () => {
    const { hostId, epoch } = ops.info();
    return { hostId, epoch, instances: ops.list() };
  });

  app.get("/v1/agent/instances/:id", async (req) => ops.get(parse(IdParams, req.params, "path").id));

  app.put("/v1/agent/instances", async (req) => ops.upsert(parse(ServiceInput, req.body, "instance")));

  app.delete("/v1/agent/instances/:id", async (req) => {
    const { id } = parse(IdParams, req.params, "path");
    ops.remove(id);
    return { id, removed: true };
  });

  app.put("/v1/agent/instances/:id/maintenance", async (req) => {
    const { id } = parse(IdParams, req.params, "path");
    const body = parse(MaintenanceBody, req.body, "maintenance body");
    ops.maintenance(id, body.enable, body.reason);
    return { id, maintenance: body.enable };
  });

  app.put("/v1/agent/instances/:id/checks/:checkId/:verdict", async (req) => {
    const { id, checkId, verdict } = parse(CheckParams, req.params, "path");
    const body = parse(TtlBody, req.body ?? undefined, "report body");
    ops.ttlReport(id, checkId, verdict, body?.note);
    return { id, checkId, verdict };
  });

  return app;
}
