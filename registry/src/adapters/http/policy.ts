// HTTP routes of traffic policies. Reads need the `read` scope (or openReads), PUT and DELETE the
// `write` scope: the bearer hook of http-auth.ts decides by method, before any body is read.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Name, POLICY_LIMITS, PolicySpec, formatIssues, inSubset, splitShares, type CatalogInstance } from "roster-schemas";
import { z } from "zod";
import { BadRequestError, NotReadyError, PayloadTooLargeError, PolicyInvalidError, PolicyNotFoundError } from "../../errors.js";
import type { CatalogReader } from "../store/catalog-memory.js";
import { ErrorBody, docSchema } from "./openapi.js";
import type { PolicyEntry, PolicyStore } from "../store/policy-store.js";

export interface PolicyRoutesDeps {
  /** Null until NATS is connected and the policy bucket is opened. */
  store: () => PolicyStore | null;
  catalog: CatalogReader;
}

const ServiceParams = z.object({ name: Name }).strict();

const Revision = z.string().regex(/^(W\/)?"?\d{1,15}"?$/, { error: 'expected a revision, e.g. "12"' }).transform((s) => Number(s.replace(/\D/g, "")));
const WriteHeaders = z.looseObject({ "if-match": Revision.optional().meta({ description: 'write only if the policy is at this revision ("0": only if none is set)' }) });

/** The live split: each subset's configured and in-force share from the registry's current instances. */
export const LiveSplitEntry = z.object({
  subset: z.string(),
  weight: z.number(),
  configured: z.number().meta({ description: "share configured, 0..1" }),
  share: z.number().meta({ description: "share in force, 0..1: a subset with no usable instance gives its share to the rest" }),
  usable: z.boolean(),
  instances: z.number().meta({ description: "instances in the subset" }),
  usableInstances: z.number().meta({ description: "of which passing or warning (gateways also leave out those they ejected)" }),
});

export const PolicyAnswer = z.object({
  service: Name,
  revision: z.number().int().meta({ description: "KV revision of the policy (bucket roster_policy); also the ETag" }),
  updatedAt: z.number().int(),
  policy: z.record(z.string(), z.unknown()).meta({ description: "the document as written (docs/traffic-policy.md)" }),
  split: z.array(LiveSplitEntry),
});
export type PolicyAnswer = z.infer<typeof PolicyAnswer>;

const usableStatus = (i: CatalogInstance) => i.status === "passing" || i.status === "warning";

/** The split in force for a policy, from the instances the registry holds now. */
export function liveSplit(policy: Record<string, unknown>, instances: readonly CatalogInstance[]): z.infer<typeof LiveSplitEntry>[] {
  const parsed = PolicySpec.safeParse(policy);
  if (!parsed.success || !parsed.data.split) return [];
  const subsets = Object.entries(parsed.data.subsets ?? {});
  const counts = new Map<string, { all: number; usable: number }>(subsets.map(([name]) => [name, { all: 0, usable: 0 }]));
  // One pass, counting only: this runs on every PUT and GET answer, over all the service's instances.
  for (const i of instances) {
    const usable = usableStatus(i);
    for (const [name, selector] of subsets) {
      if (!inSubset(selector, i)) continue;
      const c = counts.get(name)!;
      c.all++;
      if (usable) c.usable++;
    }
  }
  return splitShares(parsed.data.split, (s) => (counts.get(s)?.usable ?? 0) > 0).map((s) => ({
    ...s,
    instances: counts.get(s.subset)?.all ?? 0,
    usableInstances: counts.get(s.subset)?.usable ?? 0,
  }));
}

function ifNoneMatch(header: string | undefined, etag: string): boolean {
  return !!header && header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag || t.trim() === "*");
}

export function registerPolicyRoutes(app: FastifyInstance, deps: PolicyRoutesDeps): void {
  const store = (): PolicyStore => {
    const s = deps.store();
    if (!s || !s.ready) throw new NotReadyError("policies not loaded from KV yet");
    return s;
  };
  const answer = (e: PolicyEntry): PolicyAnswer => ({
    service: e.service,
    revision: e.revision,
    updatedAt: e.updatedAt,
    policy: e.policy ?? {},
    split: e.policy ? liveSplit(e.policy, deps.catalog.service(e.service).instances) : [],
  });
  const params = (req: FastifyRequest) => {
    const r = ServiceParams.safeParse(req.params);
    if (!r.success) throw new BadRequestError(`invalid path: ${formatIssues(r.error).join("; ")}`);
    return r.data.name;
  };
  const ifMatch = (req: FastifyRequest): number | undefined => {
    const r = WriteHeaders.safeParse(req.headers);
    if (!r.success) throw new BadRequestError(`invalid header: ${formatIssues(r.error).join("; ")}`);
    return r.data["if-match"];
  };

  app.get(
    "/v1/policies",
    { schema: docSchema({ summary: "Every service's traffic policy with its live split", tags: ["policy"], response: { 200: z.array(PolicyAnswer), 503: ErrorBody } }) },
    async () => store().list().filter((e) => e.policy !== null).map(answer),
  );

  app.get(
    "/v1/services/:name/policy",
    {
      schema: docSchema({
        summary: "A service's traffic policy, with the split in force",
        description: "ETag and X-Roster-Policy-Revision: the policy's revision; If-None-Match gives 304.",
        tags: ["policy"],
        params: ServiceParams,
        response: { 200: PolicyAnswer, 304: { description: "not modified" }, 400: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      }),
    },
    async (req, reply: FastifyReply) => {
      const name = params(req);
      const e = store().get(name);
      if (!e || !e.policy) throw new PolicyNotFoundError(name);
      const etag = `"${e.revision}"`;
      void reply.header("ETag", etag).header("X-Roster-Policy-Revision", String(e.revision));
      if (ifNoneMatch(req.headers["if-none-match"], etag)) return reply.code(304).send();
      return answer(e);
    },
  );

  app.put(
    "/v1/services/:name/policy",
    {
      schema: docSchema({
        summary: "Sets a service's traffic policy (write scope)",
        description:
          "The body is the whole policy (docs/traffic-policy.md); it replaces the previous one and reaches every gateway client in milliseconds. " +
          "A bad field is named in a 400 ROSTER_POLICY_INVALID. With If-Match, only if the policy is still at that revision (412 otherwise).",
        tags: ["policy"],
        params: ServiceParams,
        headers: WriteHeaders,
        body: PolicySpec,
        response: { 200: PolicyAnswer, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 412: ErrorBody, 413: ErrorBody, 503: ErrorBody },
      }),
    },
    async (req, reply) => {
      const name = params(req);
      const expected = ifMatch(req);
      const size = Buffer.byteLength(JSON.stringify(req.body ?? null));
      if (size > POLICY_LIMITS.maxBytes) throw new PayloadTooLargeError(`a policy is at most ${POLICY_LIMITS.maxBytes} bytes (got ${size})`);
      if (typeof req.body !== "object" || req.body === null || Array.isArray(req.body)) throw new PolicyInvalidError(["(root): expected a JSON object"]);
      const r = PolicySpec.safeParse(req.body);
      if (!r.success) throw new PolicyInvalidError(formatIssues(r.error));
      // Stored as written (durations as text), so GET → edit → PUT round-trips.
      const e = await store().put(name, req.body as z.input<typeof PolicySpec>, expected);
      void reply.header("ETag", `"${e.revision}"`).header("X-Roster-Policy-Revision", String(e.revision));
      return answer(e);
    },
  );

  app.delete(
    "/v1/services/:name/policy",
    {
      schema: docSchema({
        summary: "Removes a service's traffic policy (write scope): gateways go back to their own options",
        tags: ["policy"],
        params: ServiceParams,
        headers: WriteHeaders,
        response: { 200: z.object({ service: Name, revision: z.number().int() }), 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 412: ErrorBody, 503: ErrorBody },
      }),
    },
    async (req) => {
      const name = params(req);
      const e = await store().remove(name, ifMatch(req));
      return { service: name, revision: e.revision };
    },
  );
}
