/**
 * The catalog state machine: pure, no I/O, no clock (`now` comes in), returns effects.
 *
 * Inputs are already-validated agent messages (register / heartbeat / health / deregister),
 * `tick(now)`, `loaded(records, now)` (catalog read from KV at start) and `grace(now)` (after
 * the registry's own NATS reconnect). Outputs are effects the adapters carry out:
 *   - put(record)           write an instance record (only when something other than updatedAt changed)
 *   - delete(service, id)   remove an instance record
 *   - resync(hostId, why)   ask an agent to republish its full registration
 *
 * Semantics (also in registry/README.md):
 *   - A register is the host's FULL instance set: instances of that host absent from it are deleted.
 *     A newer epoch (agent restarted) replaces the host's set; an older epoch is stale and ignored.
 *   - Per (host, epoch), a message whose seq is not greater than the last one seen of its stream
 *     (heartbeats apart from transitions) is a duplicate or a reorder and is ignored. The epoch/seq
 *     gate applies to every kind.
 *   - health: sets the check and the instance status from `instanceStatus`; an unknown instance
 *     makes the registry ask the host for a resync.
 *   - heartbeat: refreshes lastSeen; an unknown host, or a digest different from the registry's
 *     view of the host, makes the registry ask for a resync (at most once per host per 2 × interval).
 *   - silence: a host with no message for multiplier × heartbeatIntervalMs is lost: each of its
 *     instances becomes critical with reason "agent-lost" (judged at the time up to which the
 *     registry has read every message, not at `now`: see tick). Any later message clears the lost state.
 *     A heartbeat whose digest equals the host's digest from just before the silence puts the
 *     records back as they were (nothing changed at the host: no register needed — a partition or
 *     a stall of many hosts heals without a storm of full registrations); any other message, or
 *     another digest, asks for a resync (the register that follows restores the real statuses).
 *   - expiry: an instance agent-lost (its host still silent) for longer than deregisterAfter is
 *     deleted. Only agent-lost instances expire: an instance that its live agent reports critical
 *     stays, because the agent is the truth for its host (as in Consul anti-entropy).
 *   - self-preservation (Eureka): when at least minHosts hosts AND more than threshold of the known
 *     hosts fell silent within one window (windowMs), the registry suspects its own network: the
 *     catalog is "degraded" and nothing expires (instances are still marked agent-lost). It ends when
 *     the hosts that fell silent since then come back (at most threshold of them still silent).
 *     Entry and exit are effects ("degraded"), so the adapter logs them and tells clients.
 *   - rejections: every message the gate refuses is an effect ("reject", with a reason), so the
 *     adapter counts it by reason: stale-epoch, duplicate, out-of-order, unknown-host (a health or
 *     deregister from a host the registry does not know), unknown-instance.
 *   - a forgotten host (expired, or shut down) leaves a tombstone of its epoch/seq for an hour, so a
 *     replayed old message cannot bring it back.
 *   - grace: after the catalog is loaded and after the registry's own reconnect, every host gets
 *     lastSeen = now, so the registry's outage never expires the world. After loading, every
 *     known host is also asked for a resync ("registry-start").
 *   - ownership (docs/protocol.md "Ownership"): the key is `<service>.<id>`; it belongs to the host
 *     that registered it for as long as that host is known (alive, or lost but not yet expired). A
 *     register from another host that lists the key is refused for that instance ("conflict",
 *     counted; the owner's record stands; the rest of the register applies) and the loser is told
 *     once ("conflict" effect). The registry remembers the loser's claim and counts it in the
 *     loser's digest, so the loser's heartbeats still match and it is not asked to resync again and
 *     again (no ping-pong). Ownership moves only when the owner deregisters the key (or registers
 *     without it) or expires; then every claimant is asked to resync ("ownership-free").
 *   - sanity bounds: a message whose epoch (the agent's boot time, ms) is more than maxEpochSkewMs
 *     ahead of `now` is refused ("future-epoch"), so a forged epoch cannot lock the real agent out
 *     for longer than the skew; a register or heartbeat announcing a heartbeat interval above
 *     maxHeartbeatIntervalMs is refused ("bad-interval"), so a forged interval cannot keep a host
 *     alive for hours. `reset(hostId)` (an operator, through HTTP) clears a host's epoch/seq gate.
 */
import {
  instanceDigest,
  type CatalogInstance,
  type DeregisterMessage,
  type HealthMessage,
  type HeartbeatMessage,
  type RegisterMessage,
  type ResyncReason,
} from "roster-schemas";
import { Interner } from "./intern.js";

export type { ResyncReason };

/** Why the reducer refused an agent message (counted by the adapter in drops.byReason). */
export type RejectReason =
  | "stale-epoch"
  | "duplicate"
  | "out-of-order"
  | "unknown-host"
  | "unknown-instance"
  | "conflict"
  | "future-epoch"
  | "bad-interval";

/** An instance a register asked for and did not get: another live host owns the key. */
export interface OwnershipConflict {
  service: string;
  id: string;
  owner: string;
}

/** The registry's degraded (self-preservation) mode: why, since when, and the counts that tripped it. */
export interface DegradedInfo {
  reason: "mass-silence";
  since: number;
  /** Hosts that fell silent within the window when the mode was entered. */
  silent: number;
  hosts: number;
  threshold: number;
  windowMs: number;
}

export type Effect =
  | { type: "put"; record: CatalogInstance }
  | { type: "delete"; service: string; id: string }
  | { type: "resync"; hostId: string; reason: ResyncReason }
  | { type: "reject"; reason: RejectReason; hostId: string; kind: AgentInput["kind"] }
  /** Tell `hostId` which of its instances another host owns (once per register, never a resync). */
  | { type: "conflict"; hostId: string; instances: OwnershipConflict[] }
  /** Entered (`on`) or left the degraded mode; `silent`/`hosts` are the counts at that moment. */
  | { type: "degraded"; on: boolean; info: DegradedInfo; silent: number; hosts: number; at: number };

/** Default self-preservation window: see registry/README.md (why 15 s). */
export const DEFAULT_SELF_PRESERVATION_WINDOW_MS = 15_000;
const TOMBSTONE_MS = 3_600_000;
const MAX_TOMBSTONES = 10_000;
/** Defaults of the sanity bounds (registry config: epochSkew, maxHeartbeatInterval). */
export const DEFAULT_MAX_EPOCH_SKEW_MS = 300_000;
export const DEFAULT_MAX_HEARTBEAT_INTERVAL_MS = 60_000;

export interface CatalogOptions {
  heartbeatTimeoutMultiplier: number;
  deregisterAfterMs: number;
  /** windowMs defaults to DEFAULT_SELF_PRESERVATION_WINDOW_MS. */
  selfPreservation: { threshold: number; minHosts: number; windowMs?: number };
  /** Heartbeat interval assumed for hosts rebuilt from KV until their agent speaks. */
  assumedHeartbeatIntervalMs: number;
  /** An epoch further ahead of `now` than this is refused (default DEFAULT_MAX_EPOCH_SKEW_MS). */
  maxEpochSkewMs?: number;
  /** A longer announced heartbeat interval is refused (default DEFAULT_MAX_HEARTBEAT_INTERVAL_MS). */
  maxHeartbeatIntervalMs?: number;
  /** Shared with the store that loads records from KV (core/intern.ts); default: one of its own. */
  interner?: Interner;
}

export type AgentInput = RegisterMessage | HeartbeatMessage | HealthMessage | DeregisterMessage;

interface HostState {
  hostId: string;
  epoch: number;
  /** Last seq of a transition (register, health, deregister) in `epoch`; -1 when unknown (host rebuilt from KV). */
  lastSeq: number;
  /**
   * Last heartbeat seq in `epoch`. Heartbeats are judged apart: the registry may read them on
   * another connection than transitions, so a register can arrive after a heartbeat sent later.
   */
  lastBeatSeq: number;
  lastSeen: number;
  heartbeatIntervalMs: number;
  /** Set when the host went silent; null while it is alive. */
  lostAt: number | null;
  /**
   * While lost: the host's digest and its records from just before they were marked agent-lost, so
   * a heartbeat saying nothing changed restores them without a register. Null while alive.
   */
  beforeLost: { digest: string; records: Map<string, CatalogInstance> } | null;
  /** Keys (`service.id`) of the instances this host owns. */
  keys: Set<string>;
  /** Keys this host registered but another host owns (its refused claims). */
  claimed: Set<string>;
}

export interface CatalogCounters {
  stale: number;
  duplicate: number;
  unknownInstance: number;
  takeover: number;
  /** Instances refused because another live host owns them. */
  conflict: number;
  /** Messages refused by the sanity bounds (future-epoch, bad-interval). */
  futureEpoch: number;
  badInterval: number;
  /** Operator resets of a host's epoch/seq gate. */
  reset: number;
  resyncRequested: number;
  resyncSuppressed: number;
  expired: number;
  lost: number;
  /** Hosts back from silence whose records were restored from before it (their digest unchanged): no register asked. */
  revived: number;
  /** Replayed messages of a forgotten host (tombstone), also counted in stale/duplicate. */
  replayed: number;
}

export interface CatalogSummary {
  hosts: number;
  lostHosts: number;
  instances: number;
  selfPreservation: boolean;
  /** Non-null while degraded (self-preservation). */
  degraded: DegradedInfo | null;
}

const keyOf = (service: string, id: string) => `${service}.${id}`;

/** Deep equality of two records, ignoring `updatedAt`. */
export function sameRecord(a: CatalogInstance, b: CatalogInstance): boolean {
  const { updatedAt: _ua, ...ra } = a;
  const { updatedAt: _ub, ...rb } = b;
  return stableJson(ra) === stableJson(rb);
}

function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const o = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(o).sort()) if (o[k] !== undefined) out[k] = o[k];
      return out;
    }
    return value;
  });
}

/** At least this long before a host with a resync outstanding (no register since) is asked again. */
export const OUTSTANDING_RESYNC_MIN_MS = 10_000;

export class CatalogState {
  private readonly opts: CatalogOptions;
  private readonly hosts = new Map<string, HostState>();
  private readonly instances = new Map<string, CatalogInstance>();
  /**
   * Each host's digest, computed on its first heartbeat after a change: every heartbeat is
   * compared with it, and hashing a host's sorted instance lines on each beat cost ~190 µs for
   * 100 instances (bench/registry-load.mjs, storm), most of the registry's steady-state CPU.
   */
  private readonly digests = new Map<string, string>();
  /** Last resync request per host id (also for unknown hosts), for rate limiting. */
  private readonly resyncAt = new Map<string, number>();
  /** Hosts asked for a resync whose register has not been applied since (one request outstanding at a time). */
  private readonly resyncOutstanding = new Set<string>();
  private degradedInfo: DegradedInfo | null = null;
  private readonly intern: Interner;
  /** Epoch/seq of forgotten hosts, so a replay of their old messages is refused. */
  private readonly tombstones = new Map<string, { epoch: number; lastSeq: number; at: number }>();
  /** Refused claims: key → claimant host → the record it asked for (only for its digest). */
  private readonly claims = new Map<string, Map<string, CatalogInstance>>();
  readonly counters: CatalogCounters = {
    stale: 0,
    duplicate: 0,
    unknownInstance: 0,
    takeover: 0,
    conflict: 0,
    futureEpoch: 0,
    badInterval: 0,
    reset: 0,
    resyncRequested: 0,
    resyncSuppressed: 0,
    expired: 0,
    lost: 0,
    revived: 0,
    replayed: 0,
  };

  constructor(opts: CatalogOptions) {
    this.opts = opts;
    this.intern = opts.interner ?? new Interner();
  }

  // ---------------------------------------------------------------- reads

  get selfPreservation(): boolean {
    return this.degradedInfo !== null;
  }

  get degraded(): DegradedInfo | null {
    return this.degradedInfo;
  }

  summary(): CatalogSummary {
    let lost = 0;
    for (const h of this.hosts.values()) if (h.lostAt !== null) lost++;
    return { hosts: this.hosts.size, lostHosts: lost, instances: this.instances.size, selfPreservation: this.degradedInfo !== null, degraded: this.degradedInfo };
  }

  /** Every record the state machine believes in (used to reconcile the store after a failed write). */
  records(): CatalogInstance[] {
    return [...this.instances.values()];
  }

  record(service: string, id: string): CatalogInstance | undefined {
    return this.instances.get(keyOf(service, id));
  }

  hostIds(): string[] {
    return [...this.hosts.keys()];
  }

  host(hostId: string): Readonly<Omit<HostState, "keys" | "claimed" | "beforeLost">> & { instances: number; claims: number } | undefined {
    const h = this.hosts.get(hostId);
    if (!h) return undefined;
    const { keys, claimed, beforeLost: _beforeLost, ...rest } = h;
    return { ...rest, instances: keys.size, claims: claimed.size };
  }

  /** The registry's digest of a host, comparable with the agent's heartbeat digest. */
  digestOf(hostId: string): string {
    const cached = this.digests.get(hostId);
    if (cached !== undefined) return cached;
    const h = this.hosts.get(hostId);
    const list: CatalogInstance[] = [];
    if (h) {
      for (const k of h.keys) {
        const r = this.instances.get(k);
        if (r) list.push(r);
      }
      // The agent still holds its refused claims: counting them keeps its digest equal to ours,
      // so a conflict does not turn into a resync every 2 × interval.
      for (const k of h.claimed) {
        const r = this.claims.get(k)?.get(hostId);
        if (r) list.push(r);
      }
    }
    const digest = instanceDigest(list);
    if (h) this.digests.set(hostId, digest);
    return digest;
  }

  /** Forgets a host's cached digest: called wherever its instances or their records change. */
  private dirty(hostId: string): void {
    this.digests.delete(hostId);
  }

  // ---------------------------------------------------------------- inputs

  /**
   * The catalog read from KV at start: rebuilds hosts and instances, every host in grace, and asks
   * every known host for its registration ("registry-start"): what changed while the registry was
   * down is not all visible in a digest (tags, meta, weight, checks).
   */
  loaded(records: Iterable<CatalogInstance>, now: number): Effect[] {
    for (const r of records) {
      const key = keyOf(r.service, r.id);
      this.instances.set(key, r);
      let h = this.hosts.get(r.host);
      if (!h) {
        h = {
          hostId: r.host,
          epoch: r.epoch,
          lastSeq: -1,
          lastBeatSeq: -1,
          lastSeen: now,
          heartbeatIntervalMs: this.opts.assumedHeartbeatIntervalMs,
          lostAt: null,
          beforeLost: null,
          keys: new Set(),
          claimed: new Set(),
        };
        this.hosts.set(r.host, h);
      }
      if (r.epoch > h.epoch) h.epoch = r.epoch;
      h.keys.add(key);
      this.dirty(r.host);
    }
    const effects: Effect[] = [];
    for (const h of this.hosts.values()) this.resync(h.hostId, "registry-start", now, h.heartbeatIntervalMs, effects, true);
    return effects;
  }

  /**
   * After the registry's own outage: every host gets a fresh silence window, and is asked for its
   * full registration, since what agents published while the registry was cut off reached no one
   * (core NATS is at-most-once). Without the ask, a known host heals only at its next heartbeat
   * whose digest differs, and a change that leaves the digest equal (tags, meta) not at all.
   */
  grace(now: number): Effect[] {
    const effects: Effect[] = [];
    for (const h of this.hosts.values()) {
      h.lastSeen = now;
      h.lostAt = null;
      h.beforeLost = null;
      this.resync(h.hostId, "registry-reconnect", now, h.heartbeatIntervalMs, effects, true);
    }
    this.leaveDegraded(now, 0, effects);
    return effects;
  }

  /**
   * The store came back empty and its buckets were recreated: every record is written again (KV
   * must hold the catalog), and every host gets a fresh silence window and is asked for its full
   * registration ("store-lost"): what changed while nothing could be written is known to the agents.
   */
  storeRecreated(now: number): Effect[] {
    const effects: Effect[] = [];
    for (const r of this.instances.values()) effects.push({ type: "put", record: r });
    for (const h of this.hosts.values()) {
      h.lastSeen = now;
      h.lostAt = null;
      h.beforeLost = null;
      this.resync(h.hostId, "store-lost", now, h.heartbeatIntervalMs, effects, true);
    }
    this.leaveDegraded(now, 0, effects);
    return effects;
  }

  handle(msg: AgentInput, now: number): Effect[] {
    const refused = this.insane(msg, now);
    if (refused) return refused;
    switch (msg.kind) {
      case "register":
        return this.register(msg, now);
      case "heartbeat":
        return this.heartbeat(msg, now);
      case "health":
        return this.health(msg, now);
      case "deregister":
        return this.deregister(msg, now);
    }
  }

  /**
   * Sanity bounds, before any state is touched: an epoch from the future (beyond the skew), or a
   * heartbeat interval that would keep a silent host alive for too long. Null when the message is sane.
   */
  private insane(msg: AgentInput, now: number): Effect[] | null {
    if (msg.epoch > now + (this.opts.maxEpochSkewMs ?? DEFAULT_MAX_EPOCH_SKEW_MS)) {
      this.counters.futureEpoch++;
      return [{ type: "reject", reason: "future-epoch", hostId: msg.hostId, kind: msg.kind }];
    }
    if ((msg.kind === "register" || msg.kind === "heartbeat") && msg.heartbeatIntervalMs > (this.opts.maxHeartbeatIntervalMs ?? DEFAULT_MAX_HEARTBEAT_INTERVAL_MS)) {
      this.counters.badInterval++;
      return [{ type: "reject", reason: "bad-interval", hostId: msg.hostId, kind: msg.kind }];
    }
    return null;
  }

  /**
   * An operator's reset of a host (`roster host reset`): forgets its epoch/seq gate (and any
   * tombstone) so the real agent's next message is accepted whatever a forged one set, puts its
   * heartbeat interval back to the assumed one (a forged long interval no longer keeps it alive),
   * and asks the host for its registration, which then replaces whatever was registered in its name.
   * `known` is false when the registry has neither the host nor a tombstone of it.
   */
  reset(hostId: string, now: number): { known: boolean; effects: Effect[] } {
    const effects: Effect[] = [];
    const hadTombstone = this.tombstones.delete(hostId);
    const h = this.hosts.get(hostId);
    if (!h) return { known: hadTombstone, effects };
    this.counters.reset++;
    h.epoch = 0;
    h.lastSeq = -1;
    h.heartbeatIntervalMs = this.opts.assumedHeartbeatIntervalMs;
    this.resync(hostId, "operator-reset", now, h.heartbeatIntervalMs, effects, true);
    return { known: true, effects };
  }

  /**
   * The epoch/seq gate. Returns false (and emits a "reject" effect) for an older epoch, or a seq not
   * greater than the last one in the same epoch; true when the caller may apply the message (and
   * then advances the host's epoch/seq/lastSeen).
   */
  private gate(h: { epoch: number; lastSeq: number }, msg: AgentInput, effects: Effect[], lastSeq = h.lastSeq): boolean {
    if (msg.epoch < h.epoch) {
      this.counters.stale++;
      this.reject("stale-epoch", msg, effects);
      return false;
    }
    if (msg.epoch === h.epoch && msg.seq <= lastSeq) {
      this.counters.duplicate++;
      this.reject(msg.seq === lastSeq ? "duplicate" : "out-of-order", msg, effects);
      return false;
    }
    return true;
  }

  /** A message from a host the registry forgot: refused when it is not newer than the tombstone. */
  private replayed(msg: AgentInput, effects: Effect[]): boolean {
    const t = this.tombstones.get(msg.hostId);
    if (!t || this.gate(t, msg, effects)) return false;
    this.counters.replayed++;
    return true;
  }

  private reject(reason: RejectReason, msg: AgentInput, effects: Effect[]): void {
    effects.push({ type: "reject", reason, hostId: msg.hostId, kind: msg.kind });
  }

  /** Forgets a host, keeping its epoch/seq so a replay cannot resurrect it. */
  private forget(h: HostState, now: number): void {
    this.dropClaims(h);
    this.hosts.delete(h.hostId);
    this.dirty(h.hostId);
    this.tombstones.set(h.hostId, { epoch: h.epoch, lastSeq: h.lastSeq, at: now });
  }

  /**
   * Advances epoch/seq/lastSeen. A message from a lost host revives it: a current heartbeat of the
   * same epoch whose digest says nothing changed during the silence gets its records back as they
   * were; anything else but a register (which restores them itself) asks for a resync.
   */
  private touch(h: HostState, msg: AgentInput, now: number, effects: Effect[]): void {
    const sameEpoch = msg.epoch === h.epoch;
    // A beat sent before the last transition applied carries an older digest: it cannot vouch.
    const currentBeat = msg.kind === "heartbeat" && sameEpoch && msg.seq > h.lastSeq;
    if (!sameEpoch) {
      h.lastSeq = -1;
      h.lastBeatSeq = -1;
    }
    h.epoch = msg.epoch;
    if (msg.kind === "heartbeat") h.lastBeatSeq = msg.seq;
    else h.lastSeq = msg.seq;
    h.lastSeen = now;
    if (h.lostAt === null) return;
    const before = h.beforeLost;
    h.lostAt = null;
    h.beforeLost = null;
    if (msg.kind === "register") return;
    if (currentBeat && before && msg.digest === before.digest) {
      this.counters.revived++;
      for (const key of h.keys) {
        const cur = this.instances.get(key);
        const was = before.records.get(key);
        if (cur?.reason === "agent-lost" && was) this.putIfChanged(cur, { ...was, updatedAt: now }, effects);
      }
      return;
    }
    this.resync(h.hostId, "digest-mismatch", now, h.heartbeatIntervalMs, effects, true);
  }

  private register(msg: RegisterMessage, now: number): Effect[] {
    const effects: Effect[] = [];
    let h = this.hosts.get(msg.hostId);
    if (h) {
      if (!this.gate(h, msg, effects)) return effects;
    } else {
      if (this.replayed(msg, effects)) return effects;
      // Only a register brings the host back, so the tombstone stays until then.
      this.tombstones.delete(msg.hostId);
      h = {
        hostId: msg.hostId,
        epoch: msg.epoch,
        lastSeq: msg.seq,
        lastBeatSeq: -1,
        lastSeen: now,
        heartbeatIntervalMs: msg.heartbeatIntervalMs,
        lostAt: null,
        beforeLost: null,
        keys: new Set(),
        claimed: new Set(),
      };
      this.hosts.set(msg.hostId, h);
    }
    const newEpoch = msg.epoch !== h.epoch;
    this.touch(h, msg, now, effects);
    h.heartbeatIntervalMs = msg.heartbeatIntervalMs;
    this.resyncOutstanding.delete(msg.hostId); // the full state is here: a later divergence may ask again

    const listed = new Set<string>();
    // The register is the host's full state: its claims are rebuilt from it.
    this.dropClaims(h);
    const conflicts: OwnershipConflict[] = [];
    for (const inst of msg.instances) {
      const key = keyOf(inst.service, inst.id);
      const prev = this.instances.get(key);
      const owner = prev && prev.host !== msg.hostId ? this.hosts.get(prev.host) : undefined;
      if (prev && owner) {
        // Another known host owns this key: its record stands; this host's claim is remembered
        // (for its digest, and to hand it the key once the owner lets go).
        this.counters.conflict++;
        conflicts.push({ service: inst.service, id: inst.id, owner: prev.host });
        this.reject("conflict", msg, effects);
        const zone = inst.zone ?? msg.zone;
        const claim: CatalogInstance = {
          ...inst, ...(zone !== undefined ? { zone } : {}), host: msg.hostId, epoch: msg.epoch, registeredAt: now, updatedAt: now,
        };
        let byHost = this.claims.get(key);
        if (!byHost) this.claims.set(key, (byHost = new Map()));
        byHost.set(msg.hostId, claim);
        h.claimed.add(key);
        this.dirty(msg.hostId);
        continue;
      }
      listed.add(key);
      if (prev && prev.host !== msg.hostId) {
        // An owner the registry no longer knows (cannot normally happen: a host is forgotten only
        // once it owns nothing): the key moves here.
        this.counters.takeover++;
        this.dirty(prev.host);
      }
      const keepRegisteredAt = prev !== undefined && prev.host === msg.hostId && prev.epoch === msg.epoch && !newEpoch;
      const record = this.recordOf(inst, inst.zone ?? msg.zone, msg, keepRegisteredAt ? prev.registeredAt : now, now);
      h.keys.add(key);
      this.putIfChanged(prev, record, effects, key);
    }
    this.dirty(msg.hostId); // once per register, not per instance: its key set may have changed without a record changing
    for (const key of [...h.keys]) {
      if (!listed.has(key)) this.remove(key, now, effects);
    }
    if (conflicts.length) effects.push({ type: "conflict", hostId: msg.hostId, instances: conflicts });
    return effects;
  }

  private heartbeat(msg: HeartbeatMessage, now: number): Effect[] {
    const effects: Effect[] = [];
    const h = this.hosts.get(msg.hostId);
    if (!h) {
      if (!this.replayed(msg, effects)) this.resync(msg.hostId, "unknown-host", now, msg.heartbeatIntervalMs, effects);
      return effects;
    }
    if (!this.gate(h, msg, effects, h.lastBeatSeq)) return effects;
    const wasLost = h.lostAt !== null;
    // A beat sent before the last transition applied carries an older digest: not a divergence.
    const current = msg.epoch !== h.epoch || msg.seq > h.lastSeq;
    this.touch(h, msg, now, effects);
    h.heartbeatIntervalMs = msg.heartbeatIntervalMs;
    if (!wasLost && current && this.digestOf(h.hostId) !== msg.digest) {
      this.resync(h.hostId, "digest-mismatch", now, h.heartbeatIntervalMs, effects);
    }
    return effects;
  }

  private health(msg: HealthMessage, now: number): Effect[] {
    const effects: Effect[] = [];
    const h = this.hosts.get(msg.hostId);
    if (!h) {
      if (this.replayed(msg, effects)) return effects;
      this.reject("unknown-host", msg, effects);
      this.resync(msg.hostId, "unknown-host", now, this.opts.assumedHeartbeatIntervalMs, effects);
      return effects;
    }
    if (!this.gate(h, msg, effects)) return effects;
    this.touch(h, msg, now, effects);
    const key = keyOf(msg.service, msg.instanceId);
    const claim = h.claimed.has(key) ? this.claims.get(key)?.get(h.hostId) : undefined;
    if (claim) {
      // A check of a refused claim: the owner's record stands; the claim follows the agent so its
      // digest keeps matching (no resync).
      this.counters.conflict++;
      this.reject("conflict", msg, effects);
      this.claims.get(key)!.set(h.hostId, { ...claim, status: msg.instanceStatus, updatedAt: now });
      this.dirty(h.hostId);
      return effects;
    }
    const prev = this.instances.get(key);
    if (!prev || prev.host !== msg.hostId) {
      this.counters.unknownInstance++;
      this.reject("unknown-instance", msg, effects);
      this.resync(h.hostId, "digest-mismatch", now, h.heartbeatIntervalMs, effects);
      return effects;
    }
    const checks = prev.checks.some((c) => c.id === msg.check.id)
      ? prev.checks.map((c) => (c.id === msg.check.id ? msg.check : c))
      : [...prev.checks, msg.check];
    const { reason: _reason, ...rest } = prev;
    const record: CatalogInstance = { ...rest, status: msg.instanceStatus, checks, updatedAt: now };
    this.putIfChanged(prev, record, effects);
    return effects;
  }

  private deregister(msg: DeregisterMessage, now: number): Effect[] {
    const effects: Effect[] = [];
    const h = this.hosts.get(msg.hostId);
    if (!h) {
      if (!this.replayed(msg, effects)) this.reject("unknown-host", msg, effects);
      return effects;
    }
    if (!this.gate(h, msg, effects)) return effects;
    this.touch(h, msg, now, effects);
    for (const { service, instanceId } of msg.instances) {
      const key = keyOf(service, instanceId);
      if (h.keys.has(key)) this.remove(key, now, effects);
      else if (h.claimed.has(key)) this.dropClaim(h, key);
    }
    // A host shutting down with nothing left is forgotten at once, so a rolling restart of many
    // hosts never looks like a mass silence.
    if (msg.reason === "shutdown" && h.keys.size === 0) this.forget(h, now);
    return effects;
  }

  /**
   * Judges silence and expiry. `heardUpTo`: the time up to which every message sent to the registry
   * has been read (core/caught-up.ts); silence is judged at it, not at `now`, so a registry whose
   * own event loop fell behind never takes the heartbeats still unread in its socket for silence.
   * Null: not known yet, no host is declared lost on this tick. Default: `now`.
   */
  tick(now: number, heardUpTo: number | null = now): Effect[] {
    const effects: Effect[] = [];
    const silenceAt = heardUpTo === null ? null : Math.min(now, heardUpTo);
    const windowMs = this.opts.selfPreservation.windowMs ?? DEFAULT_SELF_PRESERVATION_WINDOW_MS;
    let inWindow = 0;
    let sinceEpisode = 0;
    for (const h of this.hosts.values()) {
      if (h.lostAt === null && silenceAt !== null && silenceAt - h.lastSeen > this.opts.heartbeatTimeoutMultiplier * h.heartbeatIntervalMs) {
        h.lostAt = now;
        this.counters.lost++;
        const records = new Map<string, CatalogInstance>();
        h.beforeLost = { digest: this.digestOf(h.hostId), records };
        for (const key of h.keys) {
          const prev = this.instances.get(key);
          if (!prev) continue;
          records.set(key, prev);
          this.putIfChanged(prev, { ...prev, status: "critical", reason: "agent-lost", updatedAt: now }, effects);
        }
      }
      if (h.lostAt === null) continue;
      if (now - h.lostAt <= windowMs) inWindow++;
      // The episode counts every host that fell silent from one window before it began.
      if (this.degradedInfo && h.lostAt >= this.degradedInfo.since - windowMs) sinceEpisode++;
    }
    const { threshold, minHosts } = this.opts.selfPreservation;
    const tripped = (silent: number) => this.hosts.size > 0 && silent >= minHosts && silent / this.hosts.size > threshold;
    if (!this.degradedInfo && tripped(inWindow)) {
      // Many hosts at once is more likely our own network than theirs: stop expiring.
      this.degradedInfo = { reason: "mass-silence", since: now, silent: inWindow, hosts: this.hosts.size, threshold, windowMs };
      effects.push({ type: "degraded", on: true, info: this.degradedInfo, silent: inWindow, hosts: this.hosts.size, at: now });
    } else if (this.degradedInfo && !tripped(sinceEpisode)) {
      this.leaveDegraded(now, sinceEpisode, effects);
    }
    if (!this.degradedInfo) {
      for (const h of [...this.hosts.values()]) {
        if (h.lostAt === null || now - h.lostAt <= this.opts.deregisterAfterMs) continue;
        for (const key of [...h.keys]) {
          if (this.instances.get(key)?.reason === "agent-lost") {
            this.counters.expired++;
            this.remove(key, now, effects);
          }
        }
        if (h.keys.size === 0) this.forget(h, now);
      }
    }
    // Forget old rate-limit entries and tombstones so hostile host ids cannot grow the maps without bound.
    for (const [hostId, at] of this.resyncAt) {
      if (now - at > 3_600_000 || (this.resyncAt.size > 10_000 && !this.hosts.has(hostId))) {
        this.resyncAt.delete(hostId);
        this.resyncOutstanding.delete(hostId);
      }
    }
    for (const [hostId, t] of this.tombstones) {
      if (now - t.at > TOMBSTONE_MS || this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(hostId);
    }
    return effects;
  }

  private leaveDegraded(now: number, silent: number, effects: Effect[]): void {
    if (!this.degradedInfo) return;
    effects.push({ type: "degraded", on: false, info: this.degradedInfo, silent, hosts: this.hosts.size, at: now });
    this.degradedInfo = null;
  }

  // ---------------------------------------------------------------- helpers

  /**
   * A catalog record from a registration, its repeated values shared (core/intern.ts). One object
   * literal per shape (with or without zone) rather than a spread: every property in-object, no
   * separate property store per record.
   */
  private recordOf(inst: RegisterMessage["instances"][number], zone: string | undefined, msg: RegisterMessage, registeredAt: number, now: number): CatalogInstance {
    const i = this.intern;
    // Every CheckState field by name (a new required one fails to compile here; a new optional one must be added).
    const checks = inst.checks.map((c) => (c.output === undefined
      ? { id: i.string(c.id), type: i.string(c.type), status: i.string(c.status), since: c.since }
      : { id: i.string(c.id), type: i.string(c.type), status: i.string(c.status), output: c.output, since: c.since }));
    const service = i.string(inst.service);
    const host = i.string(msg.hostId);
    const tags = i.list(inst.tags);
    const meta = i.meta(inst.meta);
    const status = i.string(inst.status);
    if (zone === undefined) {
      return { id: inst.id, service, host, address: inst.address, port: inst.port, tags, meta, weight: inst.weight, status, checks, epoch: msg.epoch, registeredAt, updatedAt: now };
    }
    return { id: inst.id, service, host, address: inst.address, port: inst.port, zone: i.string(zone), tags, meta, weight: inst.weight, status, checks, epoch: msg.epoch, registeredAt, updatedAt: now };
  }

  /** `key`: the record's key when the caller has it (a register builds it anyway: one string and hash less per instance). */
  private putIfChanged(prev: CatalogInstance | undefined, record: CatalogInstance, effects: Effect[], key = keyOf(record.service, record.id)): void {
    if (prev && sameRecord(prev, record)) return;
    this.instances.set(key, record);
    this.dirty(record.host);
    if (prev && prev.host !== record.host) this.dirty(prev.host);
    effects.push({ type: "put", record });
  }

  private remove(key: string, now: number, effects: Effect[]): void {
    const prev = this.instances.get(key);
    if (!prev) return;
    this.instances.delete(key);
    this.hosts.get(prev.host)?.keys.delete(key);
    this.dirty(prev.host);
    effects.push({ type: "delete", service: prev.service, id: prev.id });
    // The owner let go: whoever claimed the key registers again and the first one gets it.
    const claimants = this.claims.get(key);
    if (claimants) {
      for (const hostId of claimants.keys()) {
        const c = this.hosts.get(hostId);
        if (c) this.resync(hostId, "ownership-free", now, c.heartbeatIntervalMs, effects, true);
      }
    }
  }

  private dropClaim(h: HostState, key: string): void {
    h.claimed.delete(key);
    const byHost = this.claims.get(key);
    byHost?.delete(h.hostId);
    if (byHost?.size === 0) this.claims.delete(key);
    this.dirty(h.hostId);
  }

  private dropClaims(h: HostState): void {
    for (const key of [...h.claimed]) this.dropClaim(h, key);
  }

  /** Asks a host for its registration, at most once per 2 × its heartbeat interval (unless forced). */
  private resync(hostId: string, reason: ResyncReason, now: number, intervalMs: number, effects: Effect[], force = false): void {
    const last = this.resyncAt.get(hostId);
    // While a request is outstanding (its register not applied yet) the host is not asked again for
    // longer: under a backlog of registrations every later heartbeat still disagrees, and each extra
    // request made the agent send its whole register again — more backlog (a feedback loop seen with
    // 2,000 hosts on starved cores). A request lost on the way is repeated after the longer wait.
    const wait = this.resyncOutstanding.has(hostId) ? Math.max(10 * intervalMs, OUTSTANDING_RESYNC_MIN_MS) : 2 * intervalMs;
    if (!force && last !== undefined && now - last < wait) {
      this.counters.resyncSuppressed++;
      return;
    }
    this.resyncAt.set(hostId, now);
    this.resyncOutstanding.add(hostId);
    this.counters.resyncRequested++;
    effects.push({ type: "resync", hostId, reason });
  }
}
