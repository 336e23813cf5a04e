// Local mirror of the catalog, per service, fed over core NATS (list-then-watch, as in
// Kubernetes informers and xDS):
//   1. subscribe to roster.v1.catalog.<service> FIRST and buffer what arrives,
//   2. request a snapshot, page by page: a failed page is retried (full-jitter backoff, adaptive
//      per-page timeout), not the whole snapshot; only a revision that moved while paging starts
//      over from page 0. At most `maxSnapshotRequestsInFlight` page requests per mirror at once,
//      and bulk syncs (attach, reconnect, new registry epoch) start after a random delay, so a
//      herd of clients does not melt the registry (docs/architecture.md, "Snapshot herds"),
//   3. apply the buffered deltas newer than the snapshot, in revision order,
//   4. then apply deltas as they come; a delta whose prevRevision is not the last applied
//      revision means something was missed: resync (snapshot again). Concurrent resyncs of
//      one service coalesce into one.
// Stale-but-serving: when NATS is disconnected or the registry's presence falls silent for
// 3 intervals the mirror says so (`stale` event, `isStale`), keeps the last known
// instances, and resyncs every service when things come back.
// Bad messages are dropped and counted, never thrown.
// Where the parts live: the per-service delta chaining is a pure state machine
// (core/service-mirror.ts), snapshot paging is adapters/snapshot-pager.ts, the registry's
// presence adapters/presence.ts (judged in core/presence.ts), the last-known-good file
// adapters/lkg-file.ts; this follower owns the catalog subscriptions and the NATS status, says
// when it is stale, and decides when to sync.
import { EventEmitter } from "node:events";
import { readIfExists, writeFileSecurely } from "./lkg-file.js";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import {
  CatalogDelta,
  CatalogInstance,
  NAME_PATTERN,
  type Snapshot,
  catalogSubject,
  formatIssues,
} from "roster-schemas";
import { GatewayClosedError, SnapshotTimeoutError } from "../errors.js";
import { SnapshotPager } from "./snapshot-pager.js";
import { PresenceWatcher } from "./presence.js";
import { staleReasonOf, type RegistryDegraded, type StaleReason } from "../core/presence.js";
import { ServiceMirror, type InstanceChange, type ServiceView } from "../core/service-mirror.js";
import { SharedDecoder } from "./shared-decode.js";
import { childLogger, type Logger } from "./logger.js";
import { PolicyLkgEntry, PolicyMirror } from "./policy-mirror.js";

export interface MirrorOptions {
  /** Services to subscribe to at once (others are subscribed on first use). */
  services?: readonly string[];
  /** How long the first use of a service waits for its snapshot (default 2000 ms). */
  snapshotTimeoutMs?: number;
  /**
   * Initial timeout of one snapshot page request (default 1000 ms). It adapts: doubled on each
   * timeout up to `snapshotRequestMaxTimeoutMs`, then srtt + 4 rttvar of the answers (never below this).
   */
  snapshotRequestTimeoutMs?: number;
  /** Cap of the adaptive page timeout (default 8 × snapshotRequestTimeoutMs). */
  snapshotRequestMaxTimeoutMs?: number;
  /** Snapshot page requests in flight at once per mirror, all services together (default 4). */
  maxSnapshotRequestsInFlight?: number;
  /** Syncs started in bulk (attach, reconnect, new registry epoch) each wait uniform [0, this) ms first (default 100). */
  syncJitterMs?: number;
  /** Full-jitter backoff between snapshot retries (default base 50 ms, cap 2000 ms). */
  resyncBackoffBaseMs?: number;
  resyncBackoffMaxMs?: number;
  /** Stale after this many presence intervals without presence (default 3). */
  presenceMissFactor?: number;
  /** Presence interval assumed until the first presence message (default 1000 ms). */
  presenceIntervalMs?: number;
  /** Keep a copy of the mirror in this file, to route when NATS is unreachable at start. */
  lastKnownGoodFile?: string;
  /** Write the file at most this often (default 1000 ms). */
  lastKnownGoodDebounceMs?: number;
  /** Deltas buffered per service while a snapshot is in flight before giving up and resyncing (default 10000). */
  maxBufferedDeltas?: number;
  logger?: Logger;
  /** Injected for tests; defaults to Math.random. */
  random?: () => number;
  /** Wall clock for snapshot request deadlines; injected for tests (defaults to Date.now). */
  now?: () => number;
}

export type { RegistryDegraded, StaleReason } from "../core/presence.js";

export interface MirrorStats {
  snapshots: number;
  /** Page requests that failed (timed out, no responders, bad answer); each is retried on its own. */
  snapshotFailures: number;
  /** Page requests sent (answered or not). */
  snapshotRequests: number;
  /** Snapshots started over from page 0 because the revision moved while paging. */
  snapshotRestarts: number;
  /** Pages fetched for snapshots that did not fit one message. */
  snapshotPages: number;
  /** Page requests the registry answered "retry later" (shedding bulk work; set once it happened). */
  snapshotRetryLater?: number;
  resyncs: number;
  gaps: number;
  deltasApplied: number;
  /** Deltas at or below the applied revision (repeats, or already covered by a snapshot). */
  duplicates: number;
  /** Dropped messages by `<kind>:<reason>` (e.g. `delta:invalid`, `snapshot:not-json`, `delta:unchainable`). */
  dropped: Record<string, number>;
}

export type { InstanceChange, ServiceView } from "../core/service-mirror.js";

/** Catalog deltas, decoded once per process for all its gateways (shared-decode.ts). */
export const catalogDeltas = new SharedDecoder(CatalogDelta);

/** A followed service: the pure state machine, plus what the adapter needs to drive it. */
interface ServiceState {
  readonly name: string;
  readonly m: ServiceMirror;
  syncing: Promise<void> | null;
  /** Cuts short a backoff sleep (reconnect, close). */
  wake: (() => void) | null;
  sub: Subscription | null;
  waiters: Set<() => void>;
}

const LkgFile = z.object({
  v: z.literal(1),
  savedAt: z.number(),
  services: z.array(
    z.object({ service: z.string().regex(NAME_PATTERN), revision: z.number().int().nonnegative(), known: z.boolean(), instances: z.array(CatalogInstance) }),
  ),
  /** Traffic policies (policy-mirror.ts); absent in files written before them. */
  policies: z.array(PolicyLkgEntry).optional(),
});

/**
 * Events:
 * - `change` (service: string, revision: number, change?: InstanceChange): the instances of a service
 *   changed; `change` says what when one delta changed one instance (absent after a snapshot or a
 *   last-known-good copy: anything may have changed).
 * - `stale` (stale: boolean, reason?: StaleReason): the mirror became stale / fresh again.
 * - `degraded` (degraded: boolean, info?: RegistryDegraded): the registry's presence says it entered /
 *   left its degraded mode (many hosts silent at once: agent-lost statuses may be the registry's own
 *   network, not the hosts).
 */
export class CatalogFollower extends EventEmitter {
  readonly stats: MirrorStats = { snapshots: 0, snapshotFailures: 0, snapshotRequests: 0, snapshotRestarts: 0, snapshotPages: 0, resyncs: 0, gaps: 0, deltasApplied: 0, duplicates: 0, dropped: {} };
  private nc: NatsConnection | null = null;
  private readonly states = new Map<string, ServiceState>();
  private readonly opts: Required<Omit<MirrorOptions, "lastKnownGoodFile" | "logger" | "services">> & { lastKnownGoodFile: string | undefined };
  private readonly log: Logger;
  private closed = false;
  private natsConnected = false;
  private stale = true;
  private staleReasonValue: StaleReason | undefined = "nats-unreachable";
  private recovering: Promise<void> | null = null;
  private stopStatus: (() => void) | null = null;
  private lkgTimer: ReturnType<typeof setTimeout> | null = null;
  private lkgWriting: Promise<void> = Promise.resolve();
  /** Snapshot requests: pages, adaptive timeout, in-flight cap, deadlines. */
  private readonly pager: SnapshotPager;
  /** The registry's presence: missing (stale), another registry (resync), degraded. */
  private readonly presence: PresenceWatcher;
  /** Traffic policies of the followed services: a separate adapter driven by the hooks marked "policy hook". */
  readonly policies: PolicyMirror;

  constructor(options: MirrorOptions = {}) {
    super();
    this.opts = {
      snapshotTimeoutMs: options.snapshotTimeoutMs ?? 2000,
      snapshotRequestTimeoutMs: options.snapshotRequestTimeoutMs ?? 1000,
      snapshotRequestMaxTimeoutMs: options.snapshotRequestMaxTimeoutMs ?? 8 * (options.snapshotRequestTimeoutMs ?? 1000),
      maxSnapshotRequestsInFlight: Math.max(1, Math.floor(options.maxSnapshotRequestsInFlight ?? 4)),
      syncJitterMs: Math.max(0, options.syncJitterMs ?? 100),
      resyncBackoffBaseMs: options.resyncBackoffBaseMs ?? 50,
      resyncBackoffMaxMs: options.resyncBackoffMaxMs ?? 2000,
      presenceMissFactor: options.presenceMissFactor ?? 3,
      presenceIntervalMs: options.presenceIntervalMs ?? 1000,
      lastKnownGoodFile: options.lastKnownGoodFile,
      lastKnownGoodDebounceMs: options.lastKnownGoodDebounceMs ?? 1000,
      maxBufferedDeltas: options.maxBufferedDeltas ?? 10_000,
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
    };
    this.log = childLogger(options.logger, "mirror");
    this.pager = new SnapshotPager(
      {
        requestTimeoutMs: this.opts.snapshotRequestTimeoutMs,
        maxTimeoutMs: this.opts.snapshotRequestMaxTimeoutMs,
        maxInFlight: this.opts.maxSnapshotRequestsInFlight,
        now: this.opts.now,
      },
      this.stats,
      this.log,
      { connection: () => (this.closed ? null : this.nc), drop: (kind, reason, detail) => this.drop(kind, reason, detail) },
    );
    this.presence = new PresenceWatcher({ missFactor: this.opts.presenceMissFactor, intervalMs: this.opts.presenceIntervalMs }, this.log, {
      missingChanged: () => this.updateStale(),
      newRegistry: (registry) => {
        // Not necessarily a problem (replicas, restarts), but cheap insurance against a lost last delta.
        this.log.info({ registry }, "registry epoch changed: resync");
        this.pager.resetTimeout(); // another process: its round trips say nothing of this one
        void this.resyncAll();
      },
      degradedChanged: (info) => this.emit("degraded", info !== null, info ?? undefined),
      drop: (kind, reason, detail) => this.drop(kind, reason, detail),
    });
    this.policies = new PolicyMirror({ requestTimeoutMs: this.opts.snapshotRequestTimeoutMs, syncJitterMs: this.opts.syncJitterMs, maxInFlight: this.opts.maxSnapshotRequestsInFlight, logger: options.logger, random: this.opts.random }); // policy hook
    this.policies.on("change", () => this.scheduleLastKnownGood()); // policy hook
    for (const s of options.services ?? []) this.ensure(s);
  }

  get isStale(): boolean {
    return this.stale;
  }

  get staleReason(): StaleReason | undefined {
    return this.stale ? this.staleReasonValue : undefined;
  }

  /** The registry's degraded mode as its last presence said (null when not degraded). */
  get degraded(): RegistryDegraded | null {
    return this.presence.degraded;
  }

  /** The current (adaptive) timeout of one snapshot page request (ms). */
  get snapshotRequestTimeoutMs(): number {
    return this.pager.timeoutMs;
  }

  get connected(): boolean {
    return this.nc !== null;
  }

  /** Services the mirror follows. */
  get services(): string[] {
    return [...this.states.keys()];
  }

  /** Revision of the last change applied for `service` (0 when none or not followed). */
  revision(service: string): number {
    return this.states.get(service)?.m.revision ?? 0;
  }

  /** The current view of a service, or undefined when no snapshot (or last-known-good copy) is there yet. */
  view(service: string): ServiceView | undefined {
    return this.states.get(service)?.m.view();
  }

  /**
   * Starts using a NATS connection: subscribes to presence and to every followed service,
   * and watches the connection status. The caller owns the connection.
   */
  attach(nc: NatsConnection): void {
    if (this.closed) return;
    if (this.nc) throw new Error("mirror already attached to a connection");
    this.nc = nc;
    this.natsConnected = !nc.isClosed();
    this.presence.attach(nc, this.natsConnected);
    void this.watchStatus(nc);
    this.policies.attach(nc); // policy hook
    const bulk = this.states.size > 1;
    for (const st of this.states.values()) {
      this.subscribe(st);
      void this.sync(st, bulk);
    }
    this.updateStale();
  }

  /** Follows `service` (subscribes and fetches its snapshot) if not already; never throws for a valid name. */
  ensure(service: string): void {
    if (this.closed || this.states.has(service)) return;
    if (!NAME_PATTERN.test(service)) throw new TypeError(`invalid service name "${service}"`);
    const st: ServiceState = {
      name: service,
      m: new ServiceMirror(service, this.opts.maxBufferedDeltas, this.stats),
      syncing: null,
      wake: null,
      sub: null,
      waiters: new Set(),
    };
    this.states.set(service, st);
    this.policies.follow(service); // policy hook
    if (this.nc) {
      this.subscribe(st);
      void this.sync(st);
    }
  }

  /**
   * Follows `service` and waits (bounded by `timeoutMs`, default `snapshotTimeoutMs`) until
   * its snapshot (or a last-known-good copy) is there.
   */
  async waitReady(service: string, timeoutMs = this.opts.snapshotTimeoutMs): Promise<ServiceView> {
    if (this.closed) throw new GatewayClosedError();
    this.ensure(service);
    const st = this.states.get(service)!;
    if (!st.m.ready) {
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          st.waiters.delete(done);
          if (this.closed) reject(new GatewayClosedError());
          else resolve();
        };
        const timer = setTimeout(() => {
          st.waiters.delete(done);
          reject(new SnapshotTimeoutError(service, timeoutMs));
        }, timeoutMs);
        st.waiters.add(done);
      });
    }
    return this.view(service)!;
  }

  /** Fetches a new snapshot of `service` (coalesced with any fetch already in flight). */
  resync(service: string): Promise<void> {
    const st = this.states.get(service);
    if (!st) return Promise.resolve();
    return this.sync(st);
  }

  /** Reads the last-known-good file; returns how many services it loaded (0 when none or unreadable). */
  async loadLastKnownGood(): Promise<number> {
    const file = this.opts.lastKnownGoodFile;
    if (!file) return 0;
    let text: string | undefined;
    try {
      text = await readIfExists(file);
    } catch (err) {
      this.log.warn({ err, file }, "cannot read last-known-good file");
      return 0;
    }
    if (text === undefined) return 0;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      this.log.warn({ file, error: (err as Error).message }, "last-known-good file is not JSON: ignored");
      return 0;
    }
    const parsed = LkgFile.safeParse(json);
    if (!parsed.success) {
      this.log.warn({ file, issues: formatIssues(parsed.error) }, "last-known-good file is invalid: ignored");
      return 0;
    }
    let loaded = 0;
    for (const s of parsed.data.services) {
      this.ensure(s.service);
      const st = this.states.get(s.service)!;
      if (!st.m.loadCopy(s.instances, s.revision, s.known)) continue; // a real snapshot beat the file
      loaded++;
      this.emit("change", st.name, st.m.revision);
      this.wakeWaiters(st);
    }
    const policies = this.policies.loadLastKnownGood(parsed.data.policies ?? []); // policy hook
    this.log.info({ file, services: loaded, policies, savedAt: parsed.data.savedAt }, "loaded last-known-good catalog");
    return loaded;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.presence.close();
    this.stopStatus?.(); // a caller-owned connection outlives us: stop listening to it
    this.policies.close(); // policy hook
    for (const st of this.states.values()) {
      st.sub?.unsubscribe();
      st.wake?.();
      this.wakeWaiters(st);
    }
    this.pager.close();
    if (this.lkgTimer) {
      clearTimeout(this.lkgTimer);
      this.lkgTimer = null;
      await this.writeLastKnownGood();
    }
    await this.lkgWriting;
    await Promise.allSettled([...this.states.values()].map((s) => s.syncing));
  }

  // ---------------------------------------------------------------------------------------

  private drop(kind: string, reason: string, detail?: string): void {
    const key = `${kind}:${reason}`;
    this.stats.dropped[key] = (this.stats.dropped[key] ?? 0) + 1;
    this.log.debug({ kind, reason, detail }, "dropped a bad message");
  }

  private subscribe(st: ServiceState): void {
    if (!this.nc || st.sub) return;
    st.sub = this.nc.subscribe(catalogSubject(st.name), {
      callback: (err, msg) => {
        if (!err) this.onDelta(st, msg);
      },
    });
  }

  private onDelta(st: ServiceState, msg: Msg): void {
    if (this.closed) return;
    const r = catalogDeltas.decode(msg.data);
    if (!r.ok) return this.drop("delta", r.reason, r.error);
    const d = r.value;
    if (d.service !== st.name || (d.op === "put" && (d.instance.id !== d.instanceId || d.instance.service !== d.service))) {
      return this.drop("delta", "mismatch", `${d.service}/${d.instanceId} on ${st.name}`);
    }
    const have = st.m.revision;
    const res = st.m.onDelta(d);
    switch (res.kind) {
      case "buffered":
        if (res.overflowed) this.drop("delta", "buffer-full");
        return;
      case "duplicate":
        return;
      case "gap":
        this.log.info({ service: st.name, have, prevRevision: d.prevRevision, revision: d.revision }, "gap in catalog deltas: resync");
        void this.sync(st);
        return;
      case "applied":
        this.changed(st, res.change);
    }
  }

  private changed(st: ServiceState, change?: InstanceChange): void {
    this.emit("change", st.name, st.m.revision, change);
    this.scheduleLastKnownGood();
  }

  private wakeWaiters(st: ServiceState): void {
    for (const w of [...st.waiters]) w();
  }

  /**
   * Snapshot + buffered deltas, retried until it succeeds or the mirror closes; coalesced.
   * `jitter`: a sync started with many others at once (attach, reconnect) first waits a random
   * [0, syncJitterMs), so a thousand clients reconnecting together do not ask in the same millisecond.
   */
  private sync(st: ServiceState, jitter = false): Promise<void> {
    if (st.syncing) return st.syncing;
    if (!this.nc || this.closed) return Promise.resolve();
    st.m.beginSync();
    this.stats.resyncs++;
    const delayMs = jitter ? Math.floor(this.opts.random() * this.opts.syncJitterMs) : 0;
    st.syncing = (delayMs > 0 ? this.sleep(st, delayMs).then(() => this.syncLoop(st)) : this.syncLoop(st)).finally(() => {
      st.syncing = null;
      st.wake = null;
    });
    return st.syncing;
  }

  private async syncLoop(st: ServiceState): Promise<void> {
    let attempt = 0;
    while (!this.closed && this.nc) {
      let snap: Snapshot;
      try {
        snap = await this.pager.snapshot(st.name, (attempt) => this.backoff(st, attempt));
      } catch (err) {
        // Only when closing or detached: pages are retried inside requestSnapshot.
        this.log.debug({ service: st.name, err: (err as Error).message }, "snapshot abandoned");
        continue;
      }
      this.stats.snapshots++;
      const r = st.m.onSnapshot(snap);
      if (r.kind === "again") {
        attempt++;
        await this.backoff(st, attempt);
        continue;
      }
      for (const d of r.dropped) this.drop("delta", "unchainable", `${d.service}/${d.instanceId}@${d.revision}`);
      if (r.changed) this.changed(st);
      this.wakeWaiters(st);
      return;
    }
  }

  private backoff(st: ServiceState, attempt: number): Promise<void> {
    const cap = Math.min(this.opts.resyncBackoffMaxMs, this.opts.resyncBackoffBaseMs * 2 ** Math.min(attempt, 20));
    return this.sleep(st, Math.floor(this.opts.random() * cap));
  }

  /** A sleep that `st.wake` (reconnect, close) cuts short. */
  private sleep(st: ServiceState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        st.wake = null;
        resolve();
      }, ms);
      st.wake = () => {
        clearTimeout(timer);
        st.wake = null;
        resolve();
      };
    });
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    const statuses = nc.status();
    this.stopStatus = () => (statuses as { stop?: () => void }).stop?.();
    try {
      for await (const s of statuses) {
        if (this.closed) break;
        if (s.type === "disconnect" || s.type === "close") {
          this.natsConnected = false;
          this.presence.disconnected();
          this.updateStale();
        } else if (s.type === "reconnect") {
          this.natsConnected = true;
          this.presence.reconnected(); // presence may have been missed while down: a fresh grace period
          this.updateStale(true);
        }
      }
    } catch (err) {
      this.log.warn({ err }, "NATS status stream ended");
    }
  }

  private resyncAll(): Promise<void> {
    void this.policies.resyncAll(); // policy hook
    const bulk = this.states.size > 1;
    return Promise.allSettled([...this.states.values()].map((st) => {
      // A sync already in its backoff retries now; a new one starts after its jitter.
      if (st.syncing) {
        st.wake?.();
        return st.syncing;
      }
      return this.sync(st, bulk);
    })).then(() => undefined);
  }

  private updateStale(forceResync = false): void {
    if (this.closed) return;
    const reason = staleReasonOf(this.nc !== null, this.natsConnected, this.presence.missing);
    if (reason) {
      this.staleReasonValue = reason;
      if (!this.stale) {
        this.stale = true;
        this.log.warn({ reason }, "catalog mirror is stale: serving last known instances");
        this.emit("stale", true, reason);
      }
      return;
    }
    if (!this.stale && !forceResync) return;
    if (this.recovering) return;
    this.recovering = this.resyncAll().finally(() => {
      this.recovering = null;
      if (this.closed) return;
      if (staleReasonOf(this.nc !== null, this.natsConnected, this.presence.missing) === undefined && this.stale) {
        this.stale = false;
        this.staleReasonValue = undefined;
        this.log.info({}, "catalog mirror is fresh again");
        this.emit("stale", false);
      }
    });
  }

  private scheduleLastKnownGood(): void {
    if (!this.opts.lastKnownGoodFile || this.lkgTimer || this.closed) return;
    this.lkgTimer = setTimeout(() => {
      this.lkgTimer = null;
      void this.writeLastKnownGood();
    }, this.opts.lastKnownGoodDebounceMs);
    this.lkgTimer.unref();
  }

  private writeLastKnownGood(): Promise<void> {
    const file = this.opts.lastKnownGoodFile;
    if (!file) return Promise.resolve();
    const services = [...this.states.values()]
      .filter((s) => s.m.ready)
      .map((s) => ({ service: s.name, revision: s.m.revision, known: s.m.known, instances: s.m.list }));
    const body = JSON.stringify({ v: 1, savedAt: Date.now(), services, policies: this.policies.toLastKnownGood() }); // policy hook
    this.lkgWriting = this.lkgWriting.then(async () => {
      try {
        await writeFileSecurely(file, body);
      } catch (err) {
        this.log.warn({ err, file }, "cannot write last-known-good file");
      }
    });
    return this.lkgWriting;
  }
}
