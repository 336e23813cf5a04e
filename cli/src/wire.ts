import { z } from "zod";

// What the CLI expects back. Loose objects: a newer server may add fields (they are kept for
// --json); a missing or mistyped field the CLI prints is a ROSTER_CLI_BAD_RESPONSE, not a crash.
// Statuses are plain strings so a status added later prints instead of failing.

const Int = z.number().int();

export const ServiceSummary = z.looseObject({ name: z.string(), instances: Int.nonnegative(), passing: Int.nonnegative() });
export const ServiceList = z.array(ServiceSummary);

export const Check = z.looseObject({ id: z.string(), type: z.string(), status: z.string(), output: z.string().optional(), since: Int });

export const Instance = z.looseObject({
  id: z.string(),
  service: z.string(),
  host: z.string(),
  address: z.string(),
  port: Int,
  zone: z.string().optional(),
  tags: z.array(z.string()),
  meta: z.record(z.string(), z.string()),
  weight: Int,
  status: z.string(),
  reason: z.string().optional(),
  checks: z.array(Check),
  updatedAt: Int,
});
export type Instance = z.infer<typeof Instance>;
export const InstanceList = z.array(Instance);

export const CatalogDump = z.looseObject({ revision: Int.nonnegative(), services: z.record(z.string(), z.array(Instance)) });

export const Readyz = z.looseObject({ ready: z.boolean(), natsConnected: z.boolean(), catalogLoaded: z.boolean() });

export const Status = z.looseObject({
  revision: Int.nonnegative(),
  hosts: Int.nonnegative(),
  lostHosts: Int.nonnegative(),
  instances: Int.nonnegative(),
  services: Int.nonnegative(),
  selfPreservation: z.boolean(),
  natsConnected: z.boolean(),
  catalogLoaded: z.boolean(),
  drops: z.looseObject({ total: Int.nonnegative() }),
});

export const Upserted = z.looseObject({ id: z.string(), replaced: z.boolean() });
export const Removed = z.looseObject({ id: z.string(), removed: z.boolean() });
export const Maintenance = z.looseObject({ id: z.string(), maintenance: z.boolean() });

/** The error body both the registry and the agent send. */
export const ErrorBody = z.looseObject({
  code: z.string().regex(/^ROSTER_[A-Z0-9_]+$/),
  message: z.string(),
  issues: z.array(z.string()).optional(),
});

/** GET/PUT /v1/services/:name/policy (registry/src/adapters/http-policy.ts). */
export const PolicyAnswer = z.looseObject({
  service: z.string(),
  revision: Int.nonnegative(),
  updatedAt: Int.optional(),
  policy: z.record(z.string(), z.unknown()),
  split: z.array(z.looseObject({ subset: z.string(), weight: z.number(), configured: z.number(), share: z.number(), usable: z.boolean(), instances: Int.optional(), usableInstances: Int.optional() })).default([]),
});
export const PolicyRemoved = z.looseObject({ service: z.string(), revision: Int.nonnegative() });
