import {
  instanceDigest,
  instanceStatus,
  LIMITS,
  PROTOCOL_VERSION,
  type DeregisterMessage,
  type HealthMessage,
  type HeartbeatMessage,
  type InstanceRegistration,
  type InstanceStatus,
  type RegisterMessage,
} from "roster-schemas";
import type { CheckSpec, InstanceSpec } from "../config.js";
import { AgentError } from "../errors.js";
import { applyResult, checkState, initialCheck, type CheckResult, type CheckRuntime } from "./check.js";

/** A message the agent must publish; the NATS adapter carries it out. */
export type Outbound = RegisterMessage | HeartbeatMessage | HealthMessage | DeregisterMessage;

export interface InstanceRuntime {
  spec: InstanceSpec;
  checks: CheckRuntime[];
  maintenance: boolean;
  maintenanceReason?: string;
  registeredAt: number;
}

/** What the local API shows for one instance: what is published, plus the agent's own bookkeeping. */
export interface InstanceView extends Omit<InstanceRegistration, "checks"> {
  maintenance: boolean;
  maintenanceReason?: string;
  registeredAt: number;
  checks: Array<ReturnType<typeof checkState> & { successBeforePassing: number; failuresBeforeCritical: number; lastResultAt: number }>;
}

export interface HostStateOptions {
  hostId: string;
  zone?: string;
  /** Agent boot time (epoch ms): changes on every start, never on reconnect. */
  epoch: number;
  heartbeatIntervalMs: number;
}

/**
 * The truth about one host: its instances, their checks, maintenance flags, the epoch and the
 * per-epoch sequence shared by every message. Pure: time comes in as `now`, and every mutation
 * returns the messages to publish instead of publishing them.
 */
export class HostState {
  readonly hostId: string;
  readonly zone: string | undefined;
  readonly epoch: number;
  readonly heartbeatIntervalMs: number;
  private seq = 0;
  private shuttingDown = false;
  private readonly instances = new Map<string, InstanceRuntime>();

  constructor(opts: HostStateOptions) {
    this.hostId = opts.hostId;
    this.zone = opts.zone;
    this.epoch = opts.epoch;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs;
  }

  get draining(): boolean {
    return this.shuttingDown;
  }

  get size(): number {
    return this.instances.size;
  }

  /** The last sequence number used (0 before the first message). */
  get lastSeq(): number {
    return this.seq;
  }

  get(id: string): InstanceRuntime | undefined {
    return this.instances.get(id);
  }

  ids(): string[] {
    return [...this.instances.keys()];
  }

  statusOf(inst: InstanceRuntime): InstanceStatus {
    return instanceStatus(inst.maintenance || this.shuttingDown, inst.checks);
  }

  /**
   * Adds an instance or replaces the one with the same id (same service). Check state is kept
   * for checks whose id and type are unchanged, so re-registering does not reset health.
   */
  upsert(spec: InstanceSpec, now: number): { messages: Outbound[]; replaced: boolean } {
    if (this.shuttingDown) throw new AgentError("ROSTER_SHUTTING_DOWN", "the agent is shutting down");
    const existing = this.instances.get(spec.id);
    if (existing && existing.spec.service !== spec.service) {
      throw new AgentError("ROSTER_CONFLICT", `instance id "${spec.id}" is already used by service "${existing.spec.service}" on this host`);
    }
    if (!existing && this.instances.size >= LIMITS.maxInstancesPerHost) {
      throw new AgentError("ROSTER_LIMIT", `at most ${LIMITS.maxInstancesPerHost} instances per host`);
    }
    const checks = spec.checks.map((c) => {
      const old = existing?.checks.find((o) => o.id === c.id && o.type === c.type);
      if (old && old.successBeforePassing === c.successBeforePassing && old.failuresBeforeCritical === c.failuresBeforeCritical) return old;
      return initialCheck(c, now);
    });
    const inst: InstanceRuntime = { spec, checks, maintenance: existing?.maintenance ?? false, registeredAt: existing?.registeredAt ?? now };
    if (existing?.maintenanceReason !== undefined) inst.maintenanceReason = existing.maintenanceReason;
    this.instances.set(spec.id, inst);
    return { messages: [this.register(now)], replaced: existing !== undefined };
  }

  /** Removes an instance: a deregister for it, then the new full set. */
  remove(id: string, now: number, reason: "api" | "config" = "api"): Outbound[] {
    const inst = this.require(id);
    this.instances.delete(id);
    return [this.deregister([inst], reason, now), this.register(now)];
  }

  /** Maintenance on → the instance is `draining` whatever its checks say. */
  setMaintenance(id: string, enable: boolean, reason: string | undefined, now: number): Outbound[] {
    const inst = this.require(id);
    const changed = inst.maintenance !== enable;
    inst.maintenance = enable;
    if (enable && reason !== undefined) inst.maintenanceReason = reason;
    if (!enable) delete inst.maintenanceReason;
    return changed ? [this.register(now)] : [];
  }

  /** Shutdown begins: every instance is draining from now on. */
  beginShutdown(now: number): Outbound[] {
    if (this.shuttingDown) return [];
    this.shuttingDown = true;
    return [this.register(now)];
  }

  /** End of shutdown: deregister everything (nothing when there is nothing). */
  shutdownDeregister(now: number): Outbound[] {
    const all = [...this.instances.values()];
    return all.length ? [this.deregister(all, "shutdown", now)] : [];
  }

  /** A check's run ended. Returns a health message when its status flipped. Unknown ids are ignored (a late result after removal). */
  checkResult(instanceId: string, checkId: string, result: CheckResult, now: number): Outbound[] {
    const inst = this.instances.get(instanceId);
    const check = inst?.checks.find((c) => c.id === checkId);
    if (!inst || !check) return [];
    if (!applyResult(check, result, now)) return [];
    const msg: HealthMessage = {
      ...this.envelope(now),
      kind: "health",
      service: inst.spec.service,
      instanceId,
      check: checkState(check),
      instanceStatus: this.statusOf(inst),
    };
    return [msg];
  }

  /** The spec of a TTL check, or a NOT_FOUND / NOT_TTL error. */
  ttlCheck(instanceId: string, checkId: string): CheckSpec & { type: "ttl" } {
    const inst = this.require(instanceId);
    const spec = inst.spec.checks.find((c) => c.id === checkId);
    if (!spec) throw new AgentError("ROSTER_NOT_FOUND", `instance "${instanceId}" has no check "${checkId}"`);
    if (spec.type !== "ttl") throw new AgentError("ROSTER_NOT_TTL", `check "${checkId}" is a ${spec.type} check, not ttl: only ttl checks take reports`);
    return spec;
  }

  register(now: number): RegisterMessage {
    const msg: RegisterMessage = {
      ...this.envelope(now),
      kind: "register",
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      instances: [...this.instances.values()].map((i) => this.registration(i)),
    };
    if (this.zone) msg.zone = this.zone;
    return msg;
  }

  heartbeat(now: number): HeartbeatMessage {
    return {
      ...this.envelope(now),
      kind: "heartbeat",
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      instanceCount: this.instances.size,
      digest: this.digest(),
    };
  }

  digest(): string {
    return instanceDigest(
      [...this.instances.values()].map((i) => ({ service: i.spec.service, id: i.spec.id, status: this.statusOf(i), address: i.spec.address, port: i.spec.port })),
    );
  }

  view(inst: InstanceRuntime): InstanceView {
    const v: InstanceView = {
      ...this.registration(inst),
      maintenance: inst.maintenance,
      registeredAt: inst.registeredAt,
      checks: inst.checks.map((c) => ({
        ...checkState(c),
        successBeforePassing: c.successBeforePassing,
        failuresBeforeCritical: c.failuresBeforeCritical,
        lastResultAt: c.lastResultAt,
      })),
    };
    if (inst.maintenanceReason !== undefined) v.maintenanceReason = inst.maintenanceReason;
    return v;
  }

  list(): InstanceView[] {
    return [...this.instances.values()].map((i) => this.view(i));
  }

  private registration(inst: InstanceRuntime): InstanceRegistration {
    const r: InstanceRegistration = {
      id: inst.spec.id,
      service: inst.spec.service,
      address: inst.spec.address,
      port: inst.spec.port,
      tags: inst.spec.tags,
      meta: inst.spec.meta,
      weight: inst.spec.weight,
      status: this.statusOf(inst),
      checks: inst.checks.map(checkState),
    };
    if (inst.spec.zone) r.zone = inst.spec.zone;
    return r;
  }

  private deregister(list: InstanceRuntime[], reason: "api" | "config" | "shutdown", now: number): DeregisterMessage {
    return { ...this.envelope(now), kind: "deregister", reason, instances: list.map((i) => ({ service: i.spec.service, instanceId: i.spec.id })) };
  }

  private require(id: string): InstanceRuntime {
    const inst = this.instances.get(id);
    if (!inst) throw new AgentError("ROSTER_NOT_FOUND", `no instance "${id}" on this host`);
    return inst;
  }

  private envelope(now: number) {
    this.seq += 1;
    return { v: PROTOCOL_VERSION, hostId: this.hostId, epoch: this.epoch, seq: this.seq, sentAt: now };
  }
}
