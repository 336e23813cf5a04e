// Traffic policy of a service: which instances get which share of the requests, how a
// request is routed, throttled and answered when nothing serves. Set by an operator over
// the registry's HTTP API, stored in KV bucket `roster_policy`, pushed to every gateway
// client (snapshot + delta, like instances). docs/traffic-policy.md documents every field.
import { z } from "zod";
import { durationBetween } from "./duration.js";
import { LIMITS, NAME_PATTERN, PROTOCOL_VERSION } from "./limits.js";
import { Name } from "./messages.js";

/** Bounds of a policy document: it travels in one message to every gateway client. */
export const POLICY_LIMITS = {
  /** Largest encoded policy (the stored document). */
  maxBytes: 64 * 1024,
  maxSubsets: 16,
  maxSplitEntries: 16,
  maxRoutes: 32,
  maxHeadersPerMatch: 8,
  maxHeaderValueLength: 256,
  /** Split weights: any scale (95/5, 0.95/0.05, 19/1), each at most this. */
  maxSplitWeight: 1_000_000,
  maxFallbackBodyBytes: 16 * 1024,
  maxFallbackHeaders: 16,
  maxStaleEntries: 10_000,
  maxStaleEntryBytes: 1024 * 1024,
} as const;

/** Balancers a policy may choose: the gateway client's own names. */
export const POLICY_BALANCERS = ["p2c-peak-ewma", "least-request", "round-robin", "random", "ring-hash"] as const;

/** HTTP header names as undici and node hand them to us: lower-case tokens. */
const HeaderName = z
  .string()
  .regex(/^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$/, { error: "expected a lower-case HTTP header name" });

const CookieName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, { error: "expected a cookie name (an HTTP token)" });

const HeaderValue = z.string().max(POLICY_LIMITS.maxHeaderValueLength);

type ObjectMaker = typeof z.object;

/**
 * The policy schema, built twice: strict (unknown fields rejected, naming them) for what an
 * operator sends, loose (unknown fields dropped: tolerant reader) for what a client receives,
 * so a newer registry can add fields without older clients dropping the whole policy.
 */
function buildPolicy(obj: ObjectMaker) {
  const Subset = obj({
    /** Instances carrying every one of these tags. */
    tags: z.array(z.string().min(1).max(LIMITS.maxTagLength)).max(LIMITS.maxTags).optional(),
    /** Instances whose meta has every one of these key/values. */
    meta: z.record(z.string().min(1).max(LIMITS.maxMetaKeyLength), z.string().max(LIMITS.maxMetaValueLength)).optional(),
  });

  const HeaderMatch = z.union([
    HeaderValue,
    obj({ exact: HeaderValue }),
    obj({ prefix: HeaderValue.min(1) }),
    obj({ present: z.boolean() }),
  ]);

  const Route = obj({
    match: obj({
      headers: z
        .record(HeaderName, HeaderMatch)
        .refine((h) => Object.keys(h).length >= 1 && Object.keys(h).length <= POLICY_LIMITS.maxHeadersPerMatch, {
          error: `expected 1 to ${POLICY_LIMITS.maxHeadersPerMatch} headers`,
        }),
    }),
    subset: Name,
  });

  const SplitEntry = obj({
    subset: Name,
    weight: z.number().min(0).max(POLICY_LIMITS.maxSplitWeight),
  });

  const Affinity = z.union([obj({ header: HeaderName }), obj({ cookie: CookieName })], {
    error: 'expected { header: "<name>" } or { cookie: "<name>" }',
  });

  const Timeouts = obj({
    /** One try, until the response headers. */
    try: durationBetween(1, 600_000).optional(),
    /** The whole request across tries and backoff. */
    deadline: durationBetween(1, 3_600_000).optional(),
  });

  const Throttle = obj({
    adaptive: z.boolean(),
    /** SRE book's K: reject locally once requests exceed k × accepts. Lower rejects sooner. */
    k: z.number().min(1).max(10).optional(),
    /** Window over which requests and accepts are counted. */
    window: durationBetween(1000, 600_000).optional(),
  });

  const RateLimit = obj({
    perSecond: z.number().positive().max(1_000_000),
    /** Bucket size: requests allowed at once after a quiet time (default: perSecond). */
    burst: z.number().int().min(1).max(1_000_000).optional(),
  });

  const Stale = obj({
    /** Serve the last good answer of the same GET up to this old. */
    maxAge: durationBetween(1, 86_400_000),
    /** Answers kept per caller process and service (least recently used go first). */
    maxEntries: z.number().int().min(1).max(POLICY_LIMITS.maxStaleEntries).optional(),
    /** Larger answers are not kept. */
    maxBodyBytes: z.number().int().min(1).max(POLICY_LIMITS.maxStaleEntryBytes).optional(),
  });

  const Fallback = obj({
    /** A static answer: its status... */
    status: z.number().int().min(200).max(599).optional(),
    /** ...body (text, sent as is)... */
    body: z.string().max(POLICY_LIMITS.maxFallbackBodyBytes).optional(),
    /** ...and headers. */
    headers: z
      .record(HeaderName, HeaderValue)
      .refine((h) => Object.keys(h).length <= POLICY_LIMITS.maxFallbackHeaders, { error: `at most ${POLICY_LIMITS.maxFallbackHeaders} headers` })
      .optional(),
    /** Opt-in, idempotent GETs only: the last good answer within maxAge, before the static one. */
    stale: Stale.optional(),
  }).superRefine((f, ctx) => {
    if (f.status === undefined && f.stale === undefined) ctx.addIssue({ code: "custom", message: "expected a static answer (status) or stale, or both" });
    if (f.status === undefined && (f.body !== undefined || f.headers !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["status"], message: "a static body or headers need a status" });
    }
  });

  return obj({
    subsets: z
      .record(Name, Subset)
      .refine((s) => Object.keys(s).length <= POLICY_LIMITS.maxSubsets, { error: `at most ${POLICY_LIMITS.maxSubsets} subsets` })
      .optional(),
    split: z.array(SplitEntry).min(1).max(POLICY_LIMITS.maxSplitEntries).optional(),
    routes: z.array(Route).max(POLICY_LIMITS.maxRoutes).optional(),
    affinity: Affinity.optional(),
    timeouts: Timeouts.optional(),
    retries: obj({ max: z.number().int().min(0).max(10) }).optional(),
    balancer: z.enum(POLICY_BALANCERS).optional(),
    throttle: Throttle.optional(),
    rateLimit: RateLimit.optional(),
    fallback: Fallback.optional(),
  }).superRefine((p, ctx) => {
    const defined = new Set(Object.keys(p.subsets ?? {}));
    const seen = new Set<string>();
    p.split?.forEach((e, i) => {
      if (!defined.has(e.subset)) ctx.addIssue({ code: "custom", path: ["split", i, "subset"], message: `unknown subset "${e.subset}" (not in subsets)` });
      if (seen.has(e.subset)) ctx.addIssue({ code: "custom", path: ["split", i, "subset"], message: `subset "${e.subset}" appears twice in the split` });
      seen.add(e.subset);
    });
    if (p.split && !p.split.some((e) => e.weight > 0)) ctx.addIssue({ code: "custom", path: ["split"], message: "at least one weight must be above 0" });
    if (p.affinity && p.balancer !== undefined && p.balancer !== "ring-hash") {
      ctx.addIssue({ code: "custom", path: ["balancer"], message: "an affinity needs consistent hashing: balancer ring-hash, or leave balancer out" });
    }
    p.routes?.forEach((r, i) => {
      if (!defined.has(r.subset)) ctx.addIssue({ code: "custom", path: ["routes", i, "subset"], message: `unknown subset "${r.subset}" (not in subsets)` });
    });
  });
}

/** What an operator sends (PUT /v1/services/:name/policy, `roster policy set`): unknown fields are errors. */
export const PolicySpec = buildPolicy(z.strictObject as unknown as ObjectMaker);
/** What a receiver parses (deltas, snapshots, last-known-good file): unknown fields are dropped. */
export const Policy = buildPolicy(z.object);
/** A policy as parsed: durations in milliseconds. */
export type Policy = z.output<typeof Policy>;
/** A policy as written: durations as "500ms" / "2s" or milliseconds. */
export type PolicyDocument = z.input<typeof PolicySpec>;

/** The stored document: a JSON object as the operator wrote it (durations as text), validated by PolicySpec. */
const PolicyBody = z.record(z.string(), z.unknown());

/**
 * One change to one service's policy. `revision` is the KV revision (bucket `roster_policy`) of
 * this change, `prevRevision` that of the previous change to the same service's policy (0 if
 * none). A put carries the whole policy: a delta is the full state as of its revision.
 */
export const PolicyDelta = z.discriminatedUnion("op", [
  z.object({
    v: z.literal(PROTOCOL_VERSION),
    kind: z.literal("policy-delta"),
    op: z.literal("put"),
    service: Name,
    revision: z.number().int().positive(),
    prevRevision: z.number().int().nonnegative(),
    policy: PolicyBody,
  }),
  z.object({
    v: z.literal(PROTOCOL_VERSION),
    kind: z.literal("policy-delta"),
    op: z.literal("delete"),
    service: Name,
    revision: z.number().int().positive(),
    prevRevision: z.number().int().nonnegative(),
  }),
]);
export type PolicyDelta = z.infer<typeof PolicyDelta>;

/** Reply to a policy snapshot request (the request body is empty). `policy` is null when none is set. */
export const PolicySnapshot = z.object({
  v: z.literal(PROTOCOL_VERSION),
  kind: z.literal("policy-snapshot"),
  service: Name,
  /** Revision of the last change to this service's policy (0 if never set). */
  revision: z.number().int().nonnegative(),
  policy: PolicyBody.nullable(),
});
export type PolicySnapshot = z.infer<typeof PolicySnapshot>;

/** The value stored in KV bucket `roster_policy` under the service's name. */
export const PolicyRecord = z.object({
  v: z.literal(PROTOCOL_VERSION),
  service: Name,
  /** The document as the operator wrote it (validated with PolicySpec before it was stored). */
  policy: PolicyBody,
  /** When it was written (epoch ms, the writing registry's clock: for people). */
  updatedAt: z.number().int().nonnegative(),
});
export type PolicyRecord = z.infer<typeof PolicyRecord>;

/** KV bucket of policies: key = service name (one token, so it cannot collide with a catalog key). */
export const POLICY_BUCKET = "roster_policy";

/** Per-service policy deltas (core NATS fan-out to gateway clients). */
export function policySubject(service: string): string {
  if (!NAME_PATTERN.test(service)) throw new TypeError(`invalid service "${service}": expected ${NAME_PATTERN}`);
  return `roster.v1.policy.${service}`;
}

export const POLICY_WILDCARD = "roster.v1.policy.*";

/** Request-reply: the current policy of one service. */
export function policySnapshotSubject(service: string): string {
  if (!NAME_PATTERN.test(service)) throw new TypeError(`invalid service "${service}": expected ${NAME_PATTERN}`);
  return `roster.v1.registry.policy.${service}`;
}

export const POLICY_SNAPSHOT_WILDCARD = "roster.v1.registry.policy.*";

/**
 * Parses a stored/received policy body. Receivers: tolerant (unknown fields dropped); an invalid
 * one is `{ ok: false }` so the caller keeps the previous policy and counts the drop.
 */
export function parsePolicyBody(body: unknown): { ok: true; policy: Policy } | { ok: false; error: z.ZodError } {
  const r = Policy.safeParse(body);
  return r.success ? { ok: true, policy: r.data } : { ok: false, error: r.error };
}

// ---------------------------------------------------------------------------
// Semantics shared by the registry (dashboard, GET) and the gateway client
// ---------------------------------------------------------------------------

export interface SubsetSelector {
  readonly tags?: readonly string[] | undefined;
  readonly meta?: Readonly<Record<string, string>> | undefined;
}

/** True when an instance has every tag and every meta key/value of the subset (an empty subset matches all). */
export function inSubset(subset: SubsetSelector, instance: { readonly tags: readonly string[]; readonly meta: Readonly<Record<string, string>> }): boolean {
  if (subset.tags) for (const t of subset.tags) if (!instance.tags.includes(t)) return false;
  // for...in, not Object.entries: this runs per instance and subset on every change (no allocation).
  if (subset.meta) for (const k in subset.meta) if (instance.meta[k] !== subset.meta[k]) return false;
  return true;
}

export interface SplitShare {
  readonly subset: string;
  /** Weight as configured. */
  readonly weight: number;
  /** Configured share in [0, 1]. */
  readonly configured: number;
  /** Share in force: 0 when the subset has no usable instance, its share given to the rest pro rata. */
  readonly share: number;
  readonly usable: boolean;
}

/**
 * The split in force: a subset with no usable instance gives its share to the others, pro rata
 * to their weights. When no subset with weight > 0 is usable, every share is 0 (the caller then
 * tries the usable subsets of weight 0, or falls back).
 */
export function splitShares(split: ReadonlyArray<{ readonly subset: string; readonly weight: number }>, usable: (subset: string) => boolean): SplitShare[] {
  const total = split.reduce((a, e) => a + e.weight, 0);
  const usableTotal = split.reduce((a, e) => a + (usable(e.subset) ? e.weight : 0), 0);
  return split.map((e) => {
    const u = usable(e.subset);
    return {
      subset: e.subset,
      weight: e.weight,
      configured: total > 0 ? e.weight / total : 0,
      share: u && usableTotal > 0 ? e.weight / usableTotal : 0,
      usable: u,
    };
  });
}

