import type { NatsConnection } from "@nats-io/transport-node";
import type { CatalogInstance } from "roster-schemas";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import type { LeaseEvent, LeaseRole } from "../core/lease.js";
import { CatalogMirror } from "./catalog-mirror.js";
import type { KvCatalog, WriteGate } from "./kv-catalog.js";
import { KvLease, type LeaseStatus } from "./lease-kv.js";

export interface ReplicaOptions {
  registryId: string;
  replicas: number;
  ttlMs: number;
  marginMs: number;
  logger: Logger;
  signal: AbortSignal;
  /** The lease is ours and the catalog reloaded from KV: rebuild the state machine and act. */
  becomeWriter(records: CatalogInstance[], epoch: number): void;
  /** The lease is lost: stop acting (queued writes are dropped by the gate). */
  becomeStandby(): void;
}

export interface ReplicaStatus {
  role: "leader" | "standby";
  leaseHolder: string | null;
  leaseEpoch: number;
  lease: LeaseStatus | null;
  mirror: { current: boolean; applied: number; restarts: number } | null;
}

/**
 * One registry among replicas (config `lease.enabled`): starts as a standby that mirrors the
 * catalog bucket into memory, follows the writer lease, and on winning it reloads the catalog
 * from KV and hands over to the app (`becomeWriter`); on losing it, mirrors again.
 */
export class Replica {
  private readonly opts: ReplicaOptions;
  private readonly store: KvCatalog;
  private readonly log: Logger;
  private lease: KvLease | null = null;
  private mirror: CatalogMirror | null = null;
  private writer = false;
  private transition: Promise<void> = Promise.resolve();
  takeovers = 0;

  constructor(store: KvCatalog, opts: ReplicaOptions) {
    this.store = store;
    this.opts = opts;
    this.log = opts.logger;
  }

  /** Mirrors until caught up, then joins the lease; resolves false if stopped first. */
  async start(conn: NatsConnection): Promise<boolean> {
    await this.startMirror();
    if (this.opts.signal.aborted) return false;
    const { registryId, replicas, ttlMs, marginMs } = this.opts;
    this.lease = await KvLease.open(conn, { registryId, replicas, ttlMs, marginMs, logger: this.log.child({ component: "lease" }), onEvent: (e) => this.onLease(e) }, this.opts.signal);
    this.lease.start();
    return !this.opts.signal.aborted;
  }

  /** Lease role (a suspended writer is still the holder, but holds its writes). */
  get role(): LeaseRole {
    return this.lease?.state.role ?? "standby";
  }

  /** The KV write gate: write only as the ready holder within its deadline and connected. */
  gate(connected: boolean): WriteGate {
    if (this.writer && connected && this.lease?.canWrite()) return "write";
    return this.role === "standby" ? "drop" : "hold";
  }

  status(acting: boolean): ReplicaStatus {
    return {
      role: acting ? "leader" : "standby",
      leaseHolder: this.lease?.state.holder?.registryId ?? null,
      leaseEpoch: this.lease?.state.epoch ?? 0,
      lease: this.lease?.status() ?? null,
      mirror: this.mirror ? { current: this.mirror.current, applied: this.mirror.applied, restarts: this.mirror.restarts } : null,
    };
  }

  private startMirror(): Promise<void> {
    this.mirror = new CatalogMirror(this.store, this.log);
    return this.mirror.start();
  }

  private onLease(e: LeaseEvent): void {
    const step = e.type === "elected" ? () => this.takeOver(e.epoch) : e.type === "lost" ? () => this.stepDown() : null;
    if (step) this.transition = this.transition.then(step).catch((err) => this.log.error({ err: String(err), event: e.type }, "replica transition failed"));
  }

  /** A new writer: stop mirroring, reload from KV, then the app rebuilds and acts. */
  private async takeOver(epoch: number): Promise<void> {
    const startedAt = performance.now();
    await this.mirror?.stop();
    this.mirror = null;
    let records: CatalogInstance[] | null = null;
    for (let delayMs = 100; !this.opts.signal.aborted && this.role !== "standby"; delayMs = Math.min(delayMs * 2, 1000)) {
      try {
        records = await this.store.load();
        break;
      } catch (err) {
        this.log.warn({ err: String(err) }, "catalog load at takeover failed, retrying");
        await sleep(delayMs);
      }
    }
    if (!records || this.opts.signal.aborted) return;
    if (this.role === "standby") {
      await this.startMirror();
      return;
    }
    this.writer = true;
    this.takeovers++;
    this.opts.becomeWriter(records, epoch);
    this.log.info({ epoch, instances: records.length, tookMs: Math.round(performance.now() - startedAt) }, "took over as the catalog writer");
  }

  private async stepDown(): Promise<void> {
    this.writer = false;
    this.opts.becomeStandby();
    if (!this.mirror && !this.opts.signal.aborted) await this.startMirror();
  }

  /** After the last write: releases the lease (a standby takes over at once), stops mirroring. */
  async close(): Promise<void> {
    await this.lease?.close(true);
    await this.mirror?.stop();
  }
}
