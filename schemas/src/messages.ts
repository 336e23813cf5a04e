import { z } from "zod";
import { LIMITS, NAME_PATTERN, PROTOCOL_VERSION } from "./limits.js";

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

export const Name = z
  .string()
  .regex(NAME_PATTERN, {
    error: "expected 1-63 letters, digits, '_' or '-', starting with a letter or digit (no '.', '*', '>' or spaces)",
  });

export const Address = z
  .string()
  .min(1)
  .max(LIMITS.maxAddressLength)
  .regex(/^[^\s]+$/, { error: "expected a host name or IP address without whitespace" });

export const Port = z.number().int().min(1).max(65535);

export const Weight = z.number().int().min(LIMITS.minWeight).max(LIMITS.maxWeight);

export const Tags = z
  .array(z.string().min(1).max(LIMITS.maxTagLength))
  .max(LIMITS.maxTags);

export const Meta = z
  .record(z.string().min(1).max(LIMITS.maxMetaKeyLength), z.string().max(LIMITS.maxMetaValueLength))
  .refine((m) => Object.keys(m).length <= LIMITS.maxMetaEntries, {
    error: `at most ${LIMITS.maxMetaEntries} meta entries`,
  });

/** Epoch milliseconds. */
export const Timestamp = z.number().int().nonnegative();

/** A check's own verdict. */
export const CheckStatus = z.enum(["passing", "warning", "critical"]);
export type CheckStatus = z.infer<typeof CheckStatus>;

/**
 * An instance's status. `draining` is set by an operator or on agent shutdown: the
 * instance finishes in-flight work and receives nothing new.
 */
export const InstanceStatus = z.enum(["passing", "warning", "critical", "draining"]);
export type InstanceStatus = z.infer<typeof InstanceStatus>;

export const CheckType = z.enum(["http", "tcp", "exec", "ttl", "grpc"]);
export type CheckType = z.infer<typeof CheckType>;

export const CheckState = z.object({
  /** Stable within the instance, e.g. `http-0`. */
  id: Name,
  type: CheckType,
  status: CheckStatus,
  output: z.string().max(LIMITS.maxCheckOutputLength).optional(),
  /** When the check entered this status. */
  since: Timestamp,
});
export type CheckState = z.infer<typeof CheckState>;

const Version = z.literal(PROTOCOL_VERSION, { error: `expected protocol version ${PROTOCOL_VERSION}` });

/** Boot epoch of an agent: changes on every agent start, never on reconnect. */
export const Epoch = z.number().int().nonnegative();
/** Per-epoch message sequence of an agent (shared by all its subjects). */
export const Seq = z.number().int().nonnegative();

const AgentEnvelope = {
  v: Version,
  hostId: Name,
  epoch: Epoch,
  seq: Seq,
  sentAt: Timestamp,
};

// ---------------------------------------------------------------------------
// Agent → registry
// ---------------------------------------------------------------------------

export const InstanceRegistration = z.object({
  id: Name,
  service: Name,
  address: Address,
  port: Port,
  zone: Name.optional(),
  tags: Tags.default([]),
  meta: Meta.default({}),
  weight: Weight.default(100),
  status: InstanceStatus,
  checks: z.array(CheckState).max(LIMITS.maxChecksPerInstance).default([]),
});
export type InstanceRegistration = z.infer<typeof InstanceRegistration>;

/** The host's full set of instances: on start, on any change, on every (re)connect, on resync. */
export const RegisterMessage = z
  .object({
    ...AgentEnvelope,
    kind: z.literal("register"),
    zone: Name.optional(),
    /** Heartbeat interval the agent promises; the registry derives the silence timeout from it. */
    heartbeatIntervalMs: z.number().int().min(50).max(3_600_000),
    instances: z.array(InstanceRegistration).max(LIMITS.maxInstancesPerHost),
  })
  .superRefine((msg, ctx) => {
    const seen = new Set<string>();
    msg.instances.forEach((inst, i) => {
      const key = `${inst.service}.${inst.id}`;
      if (seen.has(key)) {
        ctx.addIssue({ code: "custom", path: ["instances", i, "id"], message: `duplicate instance ${key}` });
      }
      seen.add(key);
    });
  });
export type RegisterMessage = z.infer<typeof RegisterMessage>;

export const HeartbeatMessage = z.object({
  ...AgentEnvelope,
  kind: z.literal("heartbeat"),
  heartbeatIntervalMs: z.number().int().min(50).max(3_600_000),
  /** Number of instances the agent holds. */
  instanceCount: z.number().int().nonnegative().max(LIMITS.maxInstancesPerHost),
  /** `instanceDigest()` of the agent's instances; a mismatch makes the registry ask for a resync. */
  digest: z.string().regex(/^[0-9a-f]{16}$/, { error: "expected 16 lowercase hex digits" }),
});
export type HeartbeatMessage = z.infer<typeof HeartbeatMessage>;

/** One check flipped. Sent the moment it happens, not at the next heartbeat. */
export const HealthMessage = z.object({
  ...AgentEnvelope,
  kind: z.literal("health"),
  service: Name,
  instanceId: Name,
  check: CheckState,
  /** The instance's status after this transition (worst of its checks, or draining). */
  instanceStatus: InstanceStatus,
});
export type HealthMessage = z.infer<typeof HealthMessage>;

export const DeregisterReason = z.enum(["shutdown", "api", "config"]);

export const DeregisterMessage = z.object({
  ...AgentEnvelope,
  kind: z.literal("deregister"),
  reason: DeregisterReason,
  instances: z
    .array(z.object({ service: Name, instanceId: Name }))
    .min(1)
    .max(LIMITS.maxInstancesPerHost),
});
export type DeregisterMessage = z.infer<typeof DeregisterMessage>;

export const AgentMessage = z.discriminatedUnion("kind", [
  RegisterMessage,
  HeartbeatMessage,
  HealthMessage,
  DeregisterMessage,
]);
export type AgentMessage = z.infer<typeof AgentMessage>;

// ---------------------------------------------------------------------------
// Catalog (registry → everyone)
// ---------------------------------------------------------------------------

/** Why an instance holds its status when the agent did not say so itself. */
export const StatusReason = z.enum(["agent-lost"]);
export type StatusReason = z.infer<typeof StatusReason>;

/** The value stored in KV under `<service>.<instanceId>` and served over HTTP. */
export const CatalogInstance = z.object({
  id: Name,
  service: Name,
  host: Name,
  address: Address,
  port: Port,
  zone: Name.optional(),
  tags: Tags,
  meta: Meta,
  weight: Weight,
  status: InstanceStatus,
  reason: StatusReason.optional(),
  checks: z.array(CheckState).max(LIMITS.maxChecksPerInstance),
  /** Boot epoch of the agent that registered it. */
  epoch: Epoch,
  registeredAt: Timestamp,
  updatedAt: Timestamp,
});
export type CatalogInstance = z.infer<typeof CatalogInstance>;

/**
 * One change to one service. `revision` is the catalog (KV) revision of this change;
 * `prevRevision` the revision of the previous change to the same service (0 if none).
 * A subscriber whose last applied revision differs from `prevRevision` missed something
 * and must fetch a snapshot.
 */
export const CatalogDelta = z.discriminatedUnion("op", [
  z.object({
    v: Version,
    kind: z.literal("delta"),
    op: z.literal("put"),
    service: Name,
    instanceId: Name,
    revision: z.number().int().positive(),
    prevRevision: z.number().int().nonnegative(),
    instance: CatalogInstance,
  }),
  z.object({
    v: Version,
    kind: z.literal("delta"),
    op: z.literal("delete"),
    service: Name,
    instanceId: Name,
    revision: z.number().int().positive(),
    prevRevision: z.number().int().nonnegative(),
  }),
]);
export type CatalogDelta = z.infer<typeof CatalogDelta>;

/**
 * Body of a snapshot request. An empty body asks for page 0. A service too large for one message
 * is served in pages (see `Snapshot.pages`); the client asks for each page in turn.
 */
export const SnapshotRequest = z.object({
  v: Version,
  kind: z.literal("snapshot-request"),
  page: z.number().int().nonnegative().max(1_000_000),
  /**
   * Optional (newer clients): when the requester stops waiting, in ms since the epoch of its own
   * clock. A registry may skip a request whose deadline has passed (plus a grace for clock skew)
   * instead of answering nobody. Older registries ignore it.
   */
  deadline: z.number().int().nonnegative().optional(),
  /**
   * Optional (newer clients), for pages > 0: the revision of the page 0 the client holds. A registry
   * that still has that revision's pages serves them; otherwise the current revision's.
   */
  revision: z.number().int().nonnegative().optional(),
});
export type SnapshotRequest = z.infer<typeof SnapshotRequest>;

/**
 * Reply to a snapshot request: the instances of a service as of `revision`, sorted by id, in
 * `pages` pages of at most `LIMITS.maxMessageBytes` each. Every page of one snapshot carries the
 * same `revision`; a client that sees the revision change between pages starts over.
 */
export const Snapshot = z.object({
  v: Version,
  kind: z.literal("snapshot"),
  service: Name,
  /** Revision of the last change to this service included here (0 if never seen). */
  revision: z.number().int().nonnegative(),
  /** False when the registry has never seen this service. */
  known: z.boolean(),
  /** This page's number, from 0. */
  page: z.number().int().nonnegative().default(0),
  /** How many pages the snapshot has (1 for almost every service). */
  pages: z.number().int().positive().default(1),
  instances: z.array(CatalogInstance),
});
export type Snapshot = z.infer<typeof Snapshot>;

/**
 * Reply to a snapshot request when the registry is shedding bulk work (newer registries): ask
 * again after `retryAfterMs` (plus jitter). Health transitions are never shed; snapshots are, first.
 * An older client reads it as a bad snapshot and retries after its backoff.
 */
export const SnapshotBusy = z.object({
  v: Version,
  kind: z.literal("snapshot-busy"),
  service: Name,
  retryAfterMs: z.number().int().positive().max(60_000),
});
export type SnapshotBusy = z.infer<typeof SnapshotBusy>;

/** What a snapshot request is answered with: a page, or "retry later". */
export const SnapshotReply = z.discriminatedUnion("kind", [Snapshot, SnapshotBusy]);
export type SnapshotReply = z.infer<typeof SnapshotReply>;

/** Registry presence, published every second or so. */
export const PresenceMessage = z.object({
  v: Version,
  kind: z.literal("presence"),
  registryId: z.string().min(1).max(128),
  epoch: Epoch,
  sentAt: Timestamp,
  /** Highest catalog revision the registry has written or loaded. */
  revision: z.number().int().nonnegative(),
  intervalMs: z.number().int().positive(),
  /**
   * Present while the registry is degraded (self-preservation: many hosts fell silent at once, so it
   * suspects its own network and expires nothing). Optional: older receivers ignore it.
   */
  degraded: z.object({ reason: z.string().min(1).max(64), since: Timestamp }).optional(),
});
export type PresenceMessage = z.infer<typeof PresenceMessage>;

/** Why the registry asks for a resync (what it sends). */
export const ResyncReason = z.enum(["digest-mismatch", "unknown-host", "registry-start", "registry-reconnect", "store-lost", "operator-reset", "ownership-free"]);
export type ResyncReason = z.infer<typeof ResyncReason>;

/**
 * Registry → agent: republish your full registration. A receiver accepts any short reason, so a
 * newer registry can add one without older agents dropping the request.
 */
export const ResyncMessage = z.object({
  v: Version,
  kind: z.literal("resync"),
  hostId: Name,
  reason: z.union([ResyncReason, z.string().min(1).max(64)]),
});
export type ResyncMessage = z.infer<typeof ResyncMessage>;

/**
 * Registry → agent, on the agent's resync subject: instances of its last register that the registry
 * refused because another live host owns the same `<service>.<id>` (docs/protocol.md "Ownership").
 * Not a request to resync: the registry counts the refused instances in the host's digest, so the
 * agent's heartbeats keep matching. Older agents drop it (its kind is not `resync`).
 */
export const ConflictMessage = z.object({
  v: Version,
  kind: z.literal("conflict"),
  hostId: Name,
  instances: z.array(z.object({ service: Name, instanceId: Name, owner: Name })).max(LIMITS.maxInstancesPerHost),
});
export type ConflictMessage = z.infer<typeof ConflictMessage>;
