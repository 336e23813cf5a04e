import type { FastifyInstance } from "fastify";
import { Name, formatIssues } from "roster-schemas";
import { z } from "zod";
import { BadRequestError, ForbiddenError, HostNotFoundError } from "../../errors.js";
import { ErrorBody, docSchema } from "./openapi.js";

export interface HostRoutesDeps {
  /** Clears the host's epoch/seq gate and asks it to resync; false when the host is unknown. */
  reset: (hostId: string) => boolean;
  /** With no http.auth, the route answers loopback callers only. */
  authConfigured: boolean;
}

const HostParams = z.object({ host: Name }).strict();
const ResetResult = z.object({ host: Name, reset: z.literal(true) });

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopbackAddress(ip: string | undefined): boolean {
  if (!ip) return false;
  const v4 = ip.startsWith("::ffff:") ? ip.slice(7) : ip;
  return v4 === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * `POST /v1/hosts/:host/reset`: an operator's way out when a forged message (an epoch just under the
 * skew bound, a sequence number far ahead) makes the registry refuse a real agent. Who may call it:
 * holders of a token with the `write` scope (the auth hook: anonymous → 401, read-only → 403); with
 * no tokens configured at all, callers on loopback only (403 otherwise), since a registry without
 * auth may still listen beyond loopback.
 */
export function registerHostRoutes(app: FastifyInstance, deps: HostRoutesDeps): void {
  app.post(
    "/v1/hosts/:host/reset",
    {
      config: { auth: "write" },
      schema: docSchema({
        summary: "Reset a host's epoch/seq gate and ask it to resync (write scope)",
        description:
          "Forgets the epoch and sequence number the registry holds for the host (and its tombstone), puts its heartbeat interval back to " +
          "assumedHeartbeatInterval and asks the agent for its full registration, which then replaces whatever was registered in its name. " +
          "Needs a token with the write scope; without http.auth, loopback callers only.",
        tags: ["hosts"],
        params: HostParams,
        response: { 200: ResetResult, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      }),
    },
    async (request) => {
      if (!deps.authConfigured && !isLoopbackAddress(request.ip)) {
        throw new ForbiddenError("host reset needs http.auth (a token with the write scope) when called from beyond loopback");
      }
      const p = HostParams.safeParse(request.params);
      if (!p.success) throw new BadRequestError(`invalid path: ${formatIssues(p.error).join("; ")}`);
      if (!deps.reset(p.data.host)) throw new HostNotFoundError(p.data.host);
      return { host: p.data.host, reset: true as const };
    },
  );
}
