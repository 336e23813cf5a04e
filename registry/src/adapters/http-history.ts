import type { FastifyInstance, preHandlerHookHandler } from "fastify";
import { CheckState, InstanceStatus, Name, StatusReason, formatIssues, parseDuration, type CatalogInstance } from "roster-schemas";
import { z } from "zod";
import type { ChangeLog } from "../core/change-log.js";
import { BadRequestError } from "../errors.js";
import type { CatalogReader } from "./catalog-memory.js";
import { ErrorBody, docSchema } from "./openapi.js";

/**
 * `GET /v1/services/:name/history`: a service's recent changes with the time the registry saw
 * each, from the change ring the event streams resume from (stream.ts). For the dashboard's
 * timeline and instance pages. A read like any other catalog route: with `http.auth` on, it needs
 * a token with the read scope (http-auth.ts), and it carries nothing the catalog routes do not.
 */
const HistoryChange = z.object({
  revision: z.number().int(),
  id: Name,
  /** When the registry saw the change (epoch ms). */
  at: z.number(),
  op: z.enum(["put", "delete"]),
  status: InstanceStatus.optional(),
  reason: StatusReason.optional(),
  checks: z.array(CheckState).optional(),
});

export const ServiceHistory = z.object({
  service: Name,
  revision: z.number().int(),
  /** Start of the window (epoch ms). */
  from: z.number(),
  /**
   * True when every change of the window is held. False when the ring (streams.ringSize changes
   * per service) or this process' lifetime does not reach back to `from`: the timeline starts at
   * the first change held.
   */
  complete: z.boolean(),
  changes: z.array(HistoryChange),
});
type ServiceHistory = z.infer<typeof ServiceHistory>;

const MAX_WINDOW_MS = 24 * 3_600_000;
const Window = z.string().transform((s, ctx) => {
  const ms = parseDuration(s);
  if (ms === null || ms < 1000 || ms > MAX_WINDOW_MS) {
    ctx.addIssue({ code: "custom", message: 'expected a duration between "1s" and "24h", e.g. "1h"' });
    return z.NEVER;
  }
  return ms;
});
const HistoryQuery = z.object({ window: Window.optional().meta({ description: 'how far back, e.g. "1h" (default 1h, at most 24h)' }) }).strict();
const Params = z.object({ name: Name }).strict();

export interface HistoryDeps {
  catalog: CatalogReader;
  ring: ChangeLog<CatalogInstance>;
  requireLoaded: preHandlerHookHandler;
  now?: () => number;
}

export function registerHistoryRoutes(app: FastifyInstance, deps: HistoryDeps): void {
  const now = deps.now ?? Date.now;
  app.get(
    "/v1/services/:name/history",
    {
      preHandler: deps.requireLoaded,
      schema: docSchema({
        summary: "A service's recent changes with the time the registry saw each (the dashboard's timeline)",
        description:
          "From the in-memory change ring of the event streams: at most streams.ringSize changes per service, since this registry process started. " +
          "`complete` says whether the ring reaches back to the start of the window.",
        tags: ["catalog"],
        params: Params,
        querystring: HistoryQuery,
        response: { 200: ServiceHistory, 400: ErrorBody, 503: ErrorBody },
      }),
    },
    async (request): Promise<ServiceHistory> => {
      const p = Params.safeParse(request.params);
      if (!p.success) throw new BadRequestError(`invalid path: ${formatIssues(p.error).join("; ")}`);
      const q = HistoryQuery.safeParse(request.query);
      if (!q.success) throw new BadRequestError(`invalid query: ${formatIssues(q.error).join("; ")}`);
      const from = now() - (q.data.window ?? 3_600_000);
      const { floor, changes } = deps.ring.held(p.data.name);
      const inWindow = changes.filter((c) => (c.at ?? 0) >= from);
      // Complete when nothing before the window was lost: no eviction (floor 0), or an evicted
      // change is older than the window because a held one before the window survived.
      const complete = floor === 0 || inWindow.length < changes.length;
      return {
        service: p.data.name,
        revision: deps.catalog.service(p.data.name).revision,
        from,
        complete,
        changes: inWindow.map((c) => ({
          revision: c.revision,
          id: c.id,
          at: c.at ?? 0,
          op: c.record ? "put" : "delete",
          ...(c.record ? { status: c.record.status, checks: c.record.checks, ...(c.record.reason ? { reason: c.record.reason } : {}) } : {}),
        })),
      };
    },
  );
}
