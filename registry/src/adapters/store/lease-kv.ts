import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { openBucket, type Replicas } from "roster-runtime";
import { decode, encode } from "roster-schemas";
import type { Logger } from "pino";
import { z } from "zod";
import { LeaseState, type LeaseAction, type LeaseEvent, type LeaseRole, type LeaseValue } from "../../core/lease.js";

/** The lease lives in its own small bucket (history 1), one key. */
export const LEASE_BUCKET = "roster_leader";
export const LEASE_KEY = "registry";

/** What the lease key holds (read by other registries, possibly of another version: parsed, never trusted). */
export const LeaseRecord = z.object({
  registryId: z.string().min(1).max(128),
  epoch: z.number().int().positive(),
  /** Wall clock of the writer, for people only: no replica compares clocks. */
  renewedAt: z.number().int().nonnegative(),
  ttlMs: z.number().int().positive().max(3_600_000),
});
export type LeaseRecord = z.infer<typeof LeaseRecord>;

const isConflict = (err: unknown) =>
  err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

export interface KvLeaseOptions {
  registryId: string;
  replicas: Replicas;
  ttlMs: number;
  marginMs: number;
  logger: Logger;
  onEvent: (e: LeaseEvent) => void;
}

export interface LeaseStatus {
  role: LeaseRole;
  holder: string | null;
  epoch: number;
  ttlMs: number;
  marginMs: number;
  counters: LeaseState["counters"];
}

/**
 * The writer lease on JetStream KV compare-and-set: carries out what core/lease.ts decides, on a
 * monotonic clock (performance.now). Reads the key every ttl/12 (a get, not a watch: a stalled
 * watch would only cost a harmless CAS conflict, but a poll has no consumer to lose), ticks every
 * ttl/30, and bounds every request by renewEvery, so an answer that never comes is a failure in
 * time for the next attempt. A standby's probes (CAS that can only be refused) tell it whether the
 * bucket is writable, i.e. whether the holder's silence means anything (core/lease.ts).
 */
export class KvLease {
  readonly state: LeaseState;
  private readonly kv: KV;
  private readonly opts: KvLeaseOptions;
  private readonly log: Logger;
  private timers: NodeJS.Timeout[] = [];
  private reading = false;
  private casInFlight: Promise<void> | null = null;
  private closed = false;

  private constructor(kv: KV, opts: KvLeaseOptions) {
    this.kv = kv;
    this.opts = opts;
    this.log = opts.logger;
    const renewEveryMs = Math.floor((opts.ttlMs - opts.marginMs) / 2);
    this.state = new LeaseState({
      registryId: opts.registryId,
      ttlMs: opts.ttlMs,
      marginMs: opts.marginMs,
      renewEveryMs,
      retryEveryMs: Math.max(20, Math.floor(opts.ttlMs / 30)),
    });
  }

  /** Creates or binds the lease bucket, retrying while JetStream is unavailable. */
  static async open(nc: NatsConnection, opts: KvLeaseOptions, signal?: AbortSignal): Promise<KvLease> {
    const timeoutMs = Math.max(200, Math.floor((opts.ttlMs - opts.marginMs) / 2));
    const kv = await openBucket(nc, LEASE_BUCKET, { replicas: opts.replicas, timeoutMs, logger: opts.logger, ...(signal ? { signal } : {}) });
    return new KvLease(kv, opts);
  }

  start(): void {
    const now = () => performance.now();
    const pollMs = Math.max(25, Math.floor(this.opts.ttlMs / 12));
    const tickMs = Math.max(10, Math.floor(this.opts.ttlMs / 30));
    void this.read();
    this.timers.push(
      setInterval(() => void this.read(), pollMs),
      setInterval(() => {
        if (this.closed) return;
        if (this.state.needsRead) void this.read();
        const { events, action } = this.state.tick(now());
        this.emit(events);
        if (action) void this.cas(action.type, action.expectRevision, action.value);
      }, tickMs),
    );
  }

  /** The question asked before every catalog write. */
  canWrite(): boolean {
    return !this.closed && this.state.canWrite(performance.now());
  }

  status(): LeaseStatus {
    return {
      role: this.state.role,
      holder: this.state.holder?.registryId ?? null,
      epoch: this.state.epoch,
      ttlMs: this.opts.ttlMs,
      marginMs: this.opts.marginMs,
      counters: { ...this.state.counters },
    };
  }

  private emit(events: LeaseEvent[]): void {
    for (const e of events) {
      const fields = { ...e, registryId: this.opts.registryId };
      if (e.type === "elected" || e.type === "resumed") this.log.info(fields, `lease ${e.type}`);
      else this.log.warn(fields, `lease ${e.type}`);
      try {
        this.opts.onEvent(e);
      } catch (err) {
        this.log.error({ err: String(err) }, "lease event handler failed");
      }
    }
  }

  private async read(): Promise<void> {
    if (this.reading || this.closed) return;
    this.reading = true;
    try {
      const e = await this.kv.get(LEASE_KEY);
      if (this.closed) return;
      let value: LeaseValue | null = null;
      if (e && e.operation === "PUT") {
        const r = decode(LeaseRecord, e.value);
        if (r.ok) value = { registryId: r.value.registryId, epoch: r.value.epoch, ttlMs: r.value.ttlMs };
        else this.log.warn({ error: r.error }, "unreadable lease record: treated as free");
      }
      this.emit(this.state.observe(e?.revision ?? 0, value, performance.now()));
    } catch (err) {
      this.log.debug({ err: String(err) }, "lease read failed");
    } finally {
      this.reading = false;
    }
  }

  /** The lease bucket was recreated empty: a holder writes its lease again, a standby reads afresh. */
  async storeRecreated(): Promise<void> {
    await this.casSettled();
    const action = this.state.storeRecreated(performance.now());
    if (action) await this.cas(action.type, action.expectRevision, action.value);
  }

  /** Resolves once no compare-and-set is in flight (each is bounded by the bucket's request timeout). */
  private async casSettled(): Promise<void> {
    while (this.casInFlight) await this.casInFlight;
  }

  private cas(type: LeaseAction["type"], expect: number, value: LeaseValue): Promise<void> {
    const p = this.doCas(type, expect, value).finally(() => {
      if (this.casInFlight === p) this.casInFlight = null;
    });
    this.casInFlight = p;
    return p;
  }

  private async doCas(type: LeaseAction["type"], expect: number, value: LeaseValue): Promise<void> {
    const data = encode(LeaseRecord, { ...value, renewedAt: Date.now() }, "lease record");
    try {
      const revision = expect > 0 ? await this.kv.update(LEASE_KEY, data, expect) : await this.kv.create(LEASE_KEY, data);
      this.emit(this.state.succeeded(revision, performance.now()));
    } catch (err) {
      const now = performance.now();
      // create() on an existing key fails with its own error, not 10071: a conflict too.
      const conflict = isConflict(err) || (expect === 0 && /exists|wrong last sequence/i.test(String(err)));
      if (conflict) {
        this.emit(this.state.conflict(now));
      } else {
        if (type !== "probe") this.log.warn({ err: String(err), type }, "lease write got no answer");
        this.emit(this.state.failed(now));
      }
    }
  }

  /** Stops; a holder deletes the key (CAS) so a standby takes over at once instead of after a ttl. */
  async close(release: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // A renewal still in flight moves the key's revision: release against the revision it leaves,
    // or the delete is refused and a standby waits out the ttl.
    await this.casSettled();
    const r = release ? this.state.release() : null;
    if (!r) return;
    try {
      await this.kv.delete(LEASE_KEY, { previousSeq: r.expectRevision });
      this.log.info({ registryId: this.opts.registryId }, "lease released");
    } catch (err) {
      this.log.warn({ err: String(err) }, "lease release failed: a standby takes over after the ttl");
    }
  }
}
