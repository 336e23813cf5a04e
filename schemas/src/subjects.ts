import { NAME_PATTERN } from "./limits.js";

/** Every subject Roster uses starts with this prefix; the `v1` token is the protocol version. */
export const SUBJECT_PREFIX = "roster.v1";

/** The kinds of message an agent publishes, one subject each under its host token. */
export const AGENT_MESSAGE_KINDS = ["register", "heartbeat", "health", "deregister"] as const;
export type AgentMessageKind = (typeof AGENT_MESSAGE_KINDS)[number];

/** What the registry subscribes to: every kind from every host. */
export const AGENT_WILDCARD = `${SUBJECT_PREFIX}.agent.*.*`;

/** JetStream KV bucket holding the catalog; the KV revision is the catalog version. */
export const CATALOG_BUCKET = "roster_catalog";

/** Registry heartbeat: presence, epoch and catalog revision, so clients can tell staleness. */
export const PRESENCE_SUBJECT = `${SUBJECT_PREFIX}.registry.presence`;

/** Queue group shared by registry replicas for request-reply (any replica can answer). */
export const REGISTRY_QUEUE = "roster-registry";

function assertName(kind: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new TypeError(`invalid ${kind} "${name}": expected ${NAME_PATTERN}`);
  }
}

export function agentSubject(hostId: string, kind: AgentMessageKind): string {
  assertName("host id", hostId);
  return `${SUBJECT_PREFIX}.agent.${hostId}.${kind}`;
}

/** Parses `roster.v1.agent.<host>.<kind>`; null for anything else (a hostile subject included). */
export function parseAgentSubject(subject: string): { hostId: string; kind: AgentMessageKind } | null {
  const parts = subject.split(".");
  if (parts.length !== 5 || parts[0] !== "roster" || parts[1] !== "v1" || parts[2] !== "agent") return null;
  const hostId = parts[3]!;
  const kind = parts[4]! as AgentMessageKind;
  if (!NAME_PATTERN.test(hostId) || !AGENT_MESSAGE_KINDS.includes(kind)) return null;
  return { hostId, kind };
}

/** Per-service catalog deltas (core NATS, fan-out to gateway clients). */
export function catalogSubject(service: string): string {
  assertName("service", service);
  return `${SUBJECT_PREFIX}.catalog.${service}`;
}

/** Wildcard over every service's deltas (dashboards, tests). */
export const CATALOG_WILDCARD = `${SUBJECT_PREFIX}.catalog.*`;

/** Request-reply: a snapshot of one service consistent with a revision. */
export function snapshotSubject(service: string): string {
  assertName("service", service);
  return `${SUBJECT_PREFIX}.registry.snapshot.${service}`;
}

export const SNAPSHOT_WILDCARD = `${SUBJECT_PREFIX}.registry.snapshot.*`;

/** Registry → one agent: "publish your full registration again" (digest mismatch, unknown host). */
export function resyncSubject(hostId: string): string {
  assertName("host id", hostId);
  return `${SUBJECT_PREFIX}.registry.resync.${hostId}`;
}

/** KV key of an instance record: `<service>.<instanceId>`. */
export function catalogKey(service: string, instanceId: string): string {
  const prefix = catalogKeyPrefix(service); // the service is checked first, as before
  assertName("instance id", instanceId);
  return prefix + instanceId;
}

/**
 * What every key of `service` starts with: `catalogKey(service, id)` is this + `id`. For a writer
 * that builds many keys of one service from ids it has already validated (the registry's catalog
 * writes: no name check per write).
 */
export function catalogKeyPrefix(service: string): string {
  assertName("service", service);
  return `${service}.`;
}

export function parseCatalogKey(key: string): { service: string; instanceId: string } | null {
  const parts = key.split(".");
  if (parts.length !== 2) return null;
  const [service, instanceId] = parts as [string, string];
  if (!NAME_PATTERN.test(service) || !NAME_PATTERN.test(instanceId)) return null;
  return { service, instanceId };
}
