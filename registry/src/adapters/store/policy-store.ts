// Traffic policies in JetStream KV bucket `roster_policy` (key = service name), kept in memory,
// published as deltas on roster.v1.policy.<service> and served as snapshots on
// roster.v1.registry.policy.<service> (queue group: any replica answers).
//
// Every replica watches the bucket into memory (a standby serves reads and snapshots like the
// writer). Any replica may write: a policy is an operator's document with no state machine
// behind it, so a compare-and-set on the key's revision is all the coordination it needs (two
// writers conflict, never overwrite blindly), and policies stay writable during a failover.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { type KV, type KvEntry } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  NAME_PATTERN,
  POLICY_BUCKET,
  POLICY_LIMITS,
  POLICY_SNAPSHOT_WILDCARD,
  PROTOCOL_VERSION,
  PolicyDelta,
  PolicyRecord,
  PolicySnapshot,
  REGISTRY_QUEUE,
  decode,
  encode,
  policySubject,
  type PolicyDocument,
} from "roster-schemas";
import { openBucket, type Replicas } from "roster-runtime";
import type { Logger } from "pino";
import { NotReadyError, PolicyNotFoundError, PreconditionFailedError } from "../../errors.js";
import { watchKv, type KvWatchLoop } from "./kv-watch-loop.js";

/** One service's policy as the registry knows it. `policy` is null after a delete (the revision stays). */
export interface PolicyEntry {
  service: string;
  revision: number;
  policy: Record<string, unknown> | null;
  updatedAt: number;
}

export interface PolicyStoreOptions {
  replicas: Replicas;
  logger: Logger;
  /** Called after each change seen (own write or watch), for counters and tests. */
  onChange?: (entry: PolicyEntry) => void;
}

export interface PolicyStats {
  writes: number;
  conflicts: number;
  deltasPublished: number;
  snapshotsServed: number;
  corruptRecords: number;
  /** Changes learnt from the bucket watch (other replicas' writes, and our own echoed). */
  watched: number;
}

const isConflict = (err: unknown) => err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

/** The policies of every service, in memory, backed by KV. Usable (reads) once `attach` resolved. */
export class PolicyStore {
  private readonly entries = new Map<string, PolicyEntry>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly log: Logger;
  private kv: KV | null = null;
  private nc: NatsConnection | null = null;
  private sub: Subscription | null = null;
  private watchLoop: KvWatchLoop | null = null;
  private caughtUp = false;
  private stopped = false;
  readonly stats: PolicyStats = { writes: 0, conflicts: 0, deltasPublished: 0, snapshotsServed: 0, corruptRecords: 0, watched: 0 };

  constructor(private readonly opts: PolicyStoreOptions) {
    this.log = opts.logger;
  }

  /** True once the bucket's current values are in memory. */
  get ready(): boolean {
    return this.caughtUp && !this.stopped;
  }

  /**
   * Opens (or creates) the bucket, loads it, keeps watching it, and answers snapshot requests.
   * Resolves once loaded (or stopped). Retries while JetStream is unavailable.
   */
  async attach(nc: NatsConnection, signal: AbortSignal): Promise<void> {
    this.nc = nc;
    // The shared bucket opener: "auto" replicas, retried with backoff while JetStream is unavailable.
    this.kv = await openBucket(nc, POLICY_BUCKET, { replicas: this.opts.replicas, history: 1, signal, logger: this.log }).catch(() => null);
    if (!this.kv || signal.aborted || this.stopped) return;
    await this.watch(this.kv);
    this.sub = nc.subscribe(POLICY_SNAPSHOT_WILDCARD, { queue: REGISTRY_QUEUE, callback: (err, m) => {
      if (err || !m.reply) return;
      const service = m.subject.slice(m.subject.lastIndexOf(".") + 1);
      if (!NAME_PATTERN.test(service)) return;
      try {
        m.respond(this.snapshot(service));
        this.stats.snapshotsServed++;
      } catch (e) {
        this.log.error({ err: String(e), service }, "policy snapshot failed");
      }
    } });
  }

  /** Watches the whole bucket from the start (then from the last revision applied): resolves once caught up. */
  private watch(kv: KV): Promise<void> {
    this.watchLoop = watchKv(kv, { what: "policy watch", log: this.log, apply: (e) => this.applyEntry(e), onCaughtUp: () => (this.caughtUp = true) });
    return this.watchLoop.caughtUp;
  }

  private applyEntry(e: KvEntry): void {
    if (!NAME_PATTERN.test(e.key)) {
      this.stats.corruptRecords++;
      return;
    }
    const have = this.entries.get(e.key);
    if (have && have.revision >= e.revision) return; // our own write, already applied
    let policy: Record<string, unknown> | null = null;
    let updatedAt = e.created.getTime();
    if (e.operation === "PUT") {
      const r = decode(PolicyRecord, e.value, POLICY_LIMITS.maxBytes + 1024);
      if (!r.ok || r.value.service !== e.key) {
        this.stats.corruptRecords++;
        this.log.warn({ key: e.key, error: r.ok ? "key/record mismatch" : r.error }, "ignoring a corrupt policy record");
        return;
      }
      policy = r.value.policy;
      updatedAt = r.value.updatedAt;
    }
    this.stats.watched++;
    this.set({ service: e.key, revision: e.revision, policy, updatedAt });
  }

  private set(entry: PolicyEntry): void {
    this.entries.set(entry.service, entry);
    this.opts.onChange?.(entry);
  }

  get(service: string): PolicyEntry | undefined {
    return this.entries.get(service);
  }

  /** Every service that has (or had) a policy, sorted by name. */
  list(): PolicyEntry[] {
    return [...this.entries.values()].sort((a, b) => a.service.localeCompare(b.service));
  }

  /** The encoded snapshot of one service's policy (revision 0 and null when never set). */
  snapshot(service: string): Uint8Array {
    const e = this.entries.get(service);
    return encode(PolicySnapshot, { v: PROTOCOL_VERSION, kind: "policy-snapshot", service, revision: e?.revision ?? 0, policy: e?.policy ?? null }, "policy snapshot");
  }

  /**
   * Stores `policy` (already validated with PolicySpec) for `service`. With `ifMatch`, only if the
   * current revision is that one (0: only if none is set). Returns the new revision.
   */
  put(service: string, policy: PolicyDocument, ifMatch?: number): Promise<PolicyEntry> {
    return this.serial(service, async () => {
      const kv = this.requireKv();
      const record = encode(PolicyRecord, { v: PROTOCOL_VERSION, service, policy: policy as Record<string, unknown>, updatedAt: Date.now() }, "policy record");
      // The compare-and-set expects the revision in memory (our writes and the bucket watch keep
      // it), as the catalog's writes do (kv-catalog.ts): no read before the write, so a change is
      // one KV round trip from its delta. Memory that lags another replica's write fails the CAS
      // (or an If-Match); only then is the key read from KV and the write tried again.
      let fresh = false;
      for (let attempt = 0; ; attempt++) {
        const current = fresh ? await this.read(kv, service) : this.known(service);
        const prev = current.revision;
        if (ifMatch !== undefined && ifMatch !== (current.live ? prev : 0)) {
          if (!fresh) {
            fresh = true;
            continue;
          }
          throw new PreconditionFailedError(service, ifMatch, current.live ? prev : 0);
        }
        try {
          const revision = prev > 0 ? await kv.update(service, record, prev) : await kv.create(service, record);
          const entry: PolicyEntry = { service, revision, policy: policy as Record<string, unknown>, updatedAt: Date.now() };
          this.stats.writes++;
          this.apply(entry);
          this.publish({ v: PROTOCOL_VERSION, kind: "policy-delta", op: "put", service, revision, prevRevision: prev, policy: entry.policy! });
          return entry;
        } catch (err) {
          // Another replica wrote in between (or memory lagged it): read KV and try again (an
          // If-Match then fails on the new revision).
          if (!isConflict(err) || attempt >= 5) throw err;
          this.stats.conflicts++;
          fresh = true;
        }
      }
    });
  }

  /** The key's revision (delete markers included) and whether a policy is set, as memory knows it. */
  private known(service: string): { revision: number; live: boolean } {
    const e = this.entries.get(service);
    return { revision: e?.revision ?? 0, live: e !== undefined && e.policy !== null };
  }

  /** The same, read from KV. */
  private async read(kv: KV, service: string): Promise<{ revision: number; live: boolean }> {
    const e = await kv.get(service);
    return { revision: e?.revision ?? 0, live: e !== null && e.operation === "PUT" };
  }

  /** Removes `service`'s policy (a KV delete marker keeps its revision). Throws PolicyNotFoundError when none is set. */
  remove(service: string, ifMatch?: number): Promise<PolicyEntry> {
    return this.serial(service, async () => {
      const kv = this.requireKv();
      for (let attempt = 0; ; attempt++) {
        const current = await kv.get(service);
        if (!current || current.operation !== "PUT") throw new PolicyNotFoundError(service);
        const prev = current.revision;
        if (ifMatch !== undefined && ifMatch !== prev) throw new PreconditionFailedError(service, ifMatch, prev);
        try {
          await kv.delete(service, { previousSeq: prev });
        } catch (err) {
          if (!isConflict(err) || attempt >= 5) throw err;
          this.stats.conflicts++;
          continue;
        }
        // KV's delete returns no revision: read the marker back. Someone may have written since;
        // then theirs is the delta to publish, not ours.
        const marker = await kv.get(service);
        const entry: PolicyEntry = { service, revision: marker?.revision ?? 0, policy: null, updatedAt: Date.now() };
        this.stats.writes++;
        if (marker && marker.operation !== "PUT") {
          this.apply(entry);
          this.publish({ v: PROTOCOL_VERSION, kind: "policy-delta", op: "delete", service, revision: marker.revision, prevRevision: prev });
        }
        return entry;
      }
    });
  }

  private apply(entry: PolicyEntry): void {
    const have = this.entries.get(entry.service);
    if (!have || have.revision < entry.revision) this.set(entry);
  }

  private publish(delta: PolicyDelta): void {
    try {
      this.nc?.publish(policySubject(delta.service), encode(PolicyDelta, delta, "policy delta"));
      this.stats.deltasPublished++;
    } catch (err) {
      // Clients heal on their next resync (reconnect, new registry epoch).
      this.log.warn({ err: String(err), service: delta.service, revision: delta.revision }, "policy delta publish failed");
    }
  }

  private requireKv(): KV {
    if (!this.kv || !this.caughtUp || this.stopped) throw new NotReadyError("policies not loaded from KV yet");
    return this.kv;
  }

  /** Writes to one service's policy run one at a time in this process (CAS covers other processes). */
  private serial<T>(service: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(service) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(service, tail);
    void tail.then(() => {
      if (this.chains.get(service) === tail) this.chains.delete(service);
    });
    return next;
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.sub?.unsubscribe();
    const watchStopped = this.watchLoop?.stop();
    await Promise.allSettled([...this.chains.values()]);
    await watchStopped;
  }
}
