// The gateway client's copy of each followed service's traffic policy, fed over core NATS like
// the instances (list-then-watch): subscribe to roster.v1.policy.<service>, ask
// roster.v1.registry.policy.<service> for a snapshot, apply deltas (core/policy/policy-chain.ts).
// Kept apart from the catalog mirror on purpose: the catalog mirror calls `attach`, `follow`,
// `resyncAll`, `toLastKnownGood`/`loadLastKnownGood` and `close`, and nothing else, so the two
// can be re-wired independently.
import { EventEmitter } from "node:events";
import { errors, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { NAME_PATTERN, Policy, PolicyDelta, PolicySnapshot, decode, policySnapshotSubject, policySubject } from "roster-schemas";
import { z } from "zod";
import { PolicyChain } from "../core/policy/policy-chain.js";
import { childLogger, type Logger } from "./logger.js";

export interface PolicyMirrorOptions {
  /** Timeout of one snapshot request (default 1000 ms). */
  requestTimeoutMs?: number;
  /** Full-jitter backoff between failed snapshot requests (default base 50 ms, cap 2000 ms). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Syncs started in bulk (attach, reconnect, new registry epoch) each wait uniform [0, this) ms first (default 100). */
  syncJitterMs?: number;
  /** Snapshot requests in flight at once (default 4), so a herd of clients does not hit the registry at once. */
  maxInFlight?: number;
  logger?: Logger;
  random?: () => number;
}

/** One service's policy as held by the mirror. */
export interface PolicyView {
  readonly service: string;
  /** KV revision of the policy (0: none ever set). */
  readonly revision: number;
  /** The policy in force (durations in ms), or null when the service has none. */
  readonly policy: Policy | null;
  readonly fromLastKnownGood: boolean;
}

export interface PolicyMirrorStats {
  snapshots: number;
  snapshotFailures: number;
  deltasApplied: number;
  /** Deltas that did not chain (a change was missed) and healed the gap themselves. */
  gaps: number;
  duplicates: number;
  /** Policies that failed validation (the previous one stays in force). */
  invalid: number;
  dropped: Record<string, number>;
}

/** What the last-known-good file holds per service (the document as stored, so it re-parses). */
export const PolicyLkgEntry = z.object({
  service: z.string().regex(NAME_PATTERN),
  revision: z.number().int().nonnegative(),
  policy: z.record(z.string(), z.unknown()).nullable(),
});
export type PolicyLkgEntry = z.infer<typeof PolicyLkgEntry>;

interface State {
  readonly name: string;
  readonly chain: PolicyChain;
  sub: Subscription | null;
  syncing: Promise<void> | null;
  again: boolean;
  wake: (() => void) | null;
}

/**
 * Events: `change` (service, view: PolicyView): the policy in force for a service changed (or its
 * removal): the engine re-resolves; the catalog mirror saves its last-known-good file.
 */
export class PolicyMirror extends EventEmitter {
  readonly stats: PolicyMirrorStats = { snapshots: 0, snapshotFailures: 0, deltasApplied: 0, gaps: 0, duplicates: 0, invalid: 0, dropped: {} };
  private readonly states = new Map<string, State>();
  private nc: NatsConnection | null = null;
  private closed = false;
  private readonly log: Logger;
  private readonly opts: Required<Omit<PolicyMirrorOptions, "logger">>;
  private inFlight = 0;
  private readonly slotWaiters: Array<() => void> = [];

  constructor(options: PolicyMirrorOptions = {}) {
    super();
    this.opts = {
      requestTimeoutMs: options.requestTimeoutMs ?? 1000,
      backoffBaseMs: options.backoffBaseMs ?? 50,
      backoffMaxMs: options.backoffMaxMs ?? 2000,
      syncJitterMs: Math.max(0, options.syncJitterMs ?? 100),
      maxInFlight: Math.max(1, Math.floor(options.maxInFlight ?? 4)),
      random: options.random ?? Math.random,
    };
    this.log = childLogger(options.logger, "policy-mirror");
  }

  /** Hook: the catalog mirror got its NATS connection (caller-owned). */
  attach(nc: NatsConnection): void {
    if (this.closed || this.nc) return;
    this.nc = nc;
    const bulk = this.states.size > 1;
    for (const st of this.states.values()) {
      this.subscribe(st);
      void this.sync(st, bulk);
    }
  }

  /** Hook: the catalog mirror follows a service; idempotent. */
  follow(service: string): void {
    if (this.closed || this.states.has(service) || !NAME_PATTERN.test(service)) return;
    const st: State = { name: service, chain: new PolicyChain(), sub: null, syncing: null, again: false, wake: null };
    this.states.set(service, st);
    if (this.nc) {
      this.subscribe(st);
      void this.sync(st);
    }
  }

  /** Hook: reconnect, new registry epoch, recovery from stale: fetch every policy again. */
  resyncAll(): Promise<void> {
    const bulk = this.states.size > 1;
    return Promise.allSettled([...this.states.values()].map((st) => this.sync(st, bulk))).then(() => undefined);
  }

  /** The policy of a followed service, or undefined until its snapshot (or last-known-good copy) arrived. */
  view(service: string): PolicyView | undefined {
    const st = this.states.get(service);
    if (!st || !st.chain.ready) return undefined;
    return { service, revision: st.chain.revision, policy: st.chain.policy, fromLastKnownGood: st.chain.fromLastKnownGood };
  }

  /** Resolves once the service's policy is known (or `timeoutMs` passed: then undefined). */
  async waitReady(service: string, timeoutMs: number): Promise<PolicyView | undefined> {
    this.follow(service);
    if (this.view(service)) return this.view(service);
    return new Promise((resolve) => {
      const onChange = (s: string) => {
        if (s !== service) return;
        clearTimeout(timer);
        this.off("change", onChange);
        resolve(this.view(service));
      };
      const timer = setTimeout(() => {
        this.off("change", onChange);
        resolve(undefined);
      }, timeoutMs);
      this.on("change", onChange);
    });
  }

  /** Hook: what the last-known-good file keeps. */
  toLastKnownGood(): PolicyLkgEntry[] {
    return [...this.states.values()].filter((s) => s.chain.ready).map((s) => ({ service: s.name, revision: s.chain.revision, policy: s.chain.document }));
  }

  /** Hook: the last-known-good file's policies, used until each service's first snapshot. */
  loadLastKnownGood(entries: readonly PolicyLkgEntry[]): number {
    let n = 0;
    for (const e of entries) {
      this.follow(e.service);
      const st = this.states.get(e.service);
      if (!st || !st.chain.loadLastKnownGood(e.revision, e.policy)) continue;
      n++;
      this.changed(st);
    }
    return n;
  }

  /** Hook: the catalog mirror closes. The connection is the caller's. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const st of this.states.values()) {
      st.sub?.unsubscribe();
      st.wake?.();
    }
    for (const w of this.slotWaiters.splice(0)) w();
  }

  // ---------------------------------------------------------------------------------------

  private drop(kind: string, reason: string, detail?: string): void {
    const key = `${kind}:${reason}`;
    this.stats.dropped[key] = (this.stats.dropped[key] ?? 0) + 1;
    this.log.debug({ kind, reason, detail }, "dropped a bad policy message");
  }

  private subscribe(st: State): void {
    st.sub = this.nc!.subscribe(policySubject(st.name), { callback: (err, msg) => { if (!err) this.onDelta(st, msg); } });
  }

  private onDelta(st: State, msg: Msg): void {
    if (this.closed) return;
    const r = decode(PolicyDelta, msg.data);
    if (!r.ok) return this.drop("policy-delta", r.reason, r.error);
    const d = r.value;
    if (d.service !== st.name) return this.drop("policy-delta", "wrong-service");
    const before = st.chain.revision;
    const verdict = st.chain.onDelta(d);
    switch (verdict) {
      case "applied":
        this.stats.deltasApplied++;
        break;
      case "gap-applied":
        this.stats.gaps++;
        this.log.info({ service: st.name, have: before, prevRevision: d.prevRevision, revision: d.revision }, "gap in policy deltas: healed by the delta (it carries the whole policy)");
        break;
      case "duplicate":
        this.stats.duplicates++;
        return;
      case "invalid":
        this.stats.invalid++;
        this.log.warn({ service: st.name, revision: d.revision }, "policy failed validation: the previous one stays in force");
        return;
      case "buffered":
        return;
    }
    this.changed(st);
  }

  private changed(st: State): void {
    this.emit("change", st.name, this.view(st.name));
  }

  /** One sync at a time per service; a sync asked for while one runs runs once more after it. */
  private sync(st: State, jitter = false): Promise<void> {
    if (this.closed || !this.nc) return Promise.resolve();
    if (st.syncing) {
      st.again = true;
      return st.syncing;
    }
    st.syncing = (async () => {
      if (jitter && this.opts.syncJitterMs > 0) await this.pause(st, this.opts.random() * this.opts.syncJitterMs);
      do {
        st.again = false;
        await this.fetch(st);
      } while (st.again && !this.closed);
    })().finally(() => {
      st.syncing = null;
    });
    return st.syncing;
  }

  private async fetch(st: State): Promise<void> {
    for (let attempt = 0; !this.closed && this.nc; attempt++) {
      st.chain.beginSync();
      await this.acquireSlot();
      try {
        if (this.closed || !this.nc) {
          this.releaseSlot();
          return;
        }
        const reply = await this.nc.request(policySnapshotSubject(st.name), new Uint8Array(0), { timeout: this.opts.requestTimeoutMs }).finally(() => this.releaseSlot());
        const r = decode(PolicySnapshot, reply.data);
        if (!r.ok || r.value.service !== st.name) throw new Error(r.ok ? "snapshot of another service" : `${r.reason}: ${r.error}`);
        const invalidBefore = st.chain.counters.invalid;
        const wasReady = st.chain.ready && !st.chain.fromLastKnownGood;
        const moved = st.chain.onSnapshot(r.value.revision, r.value.policy);
        this.stats.snapshots++;
        if (st.chain.counters.invalid > invalidBefore) {
          this.stats.invalid += st.chain.counters.invalid - invalidBefore;
          this.log.warn({ service: st.name, revision: r.value.revision }, "policy failed validation: the previous one stays in force");
        }
        // The first snapshot makes the view ready even when nothing is set (revision 0).
        if (moved || !wasReady) this.changed(st);
        return;
      } catch (err) {
        this.stats.snapshotFailures++;
        if (st.chain.abortSync()) this.changed(st);
        if (this.closed) return;
        if (noResponders(err)) {
          // No registry answers (it is down, or predates policies): retrying every few seconds from
          // every client would only load NATS. Until a registry appears (its presence triggers
          // resyncAll), a service without a last-known-good copy runs without a policy.
          if (!st.chain.ready) {
            st.chain.onSnapshot(0, null);
            this.changed(st);
          }
          return;
        }
        if (attempt === 0 || attempt % 20 === 0) this.log.debug({ service: st.name, err: String(err), attempt }, "policy snapshot failed, retrying");
        const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** Math.min(attempt, 20));
        await this.pause(st, this.opts.random() * cap);
      }
    }
  }

  /** A sleep that close() cuts short. */
  private pause(st: State, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        st.wake = null;
        resolve();
      }, ms);
      t.unref?.();
      st.wake = () => {
        clearTimeout(t);
        st.wake = null;
        resolve();
      };
    });
  }

  private acquireSlot(): Promise<void> {
    if (this.inFlight < this.opts.maxInFlight || this.closed) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slotWaiters.push(() => {
      this.inFlight++;
      resolve();
    }));
  }

  private releaseSlot(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
  }
}

function noResponders(err: unknown): boolean {
  if (err instanceof errors.NoRespondersError) return true;
  const e = err as { isNoResponders?: () => boolean; cause?: unknown } | null;
  return (typeof e?.isNoResponders === "function" && e.isNoResponders()) || e?.cause instanceof errors.NoRespondersError;
}
