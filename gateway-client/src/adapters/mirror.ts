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
import { EventEmitter } from "node:events";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { errors, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import {
  CatalogDelta,
  CatalogInstance,
  NAME_PATTERN,
  PRESENCE_SUBJECT,
  PresenceMessage,
  PROTOCOL_VERSION,
  Snapshot,
  SnapshotRequest,
  catalogSubject,
  decode,
  encode,
  formatIssues,
  snapshotSubject,
} from "roster-schemas";
import { GatewayClosedError, SnapshotTimeoutError } from "../errors.js";
import { AdaptiveTimeout } from "../core/adaptive-timeout.js";
import { childLogger, type Logger } from "./logger.js";

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

export type StaleReason = "nats-unreachable" | "nats-disconnected" | "presence-lost";

/** What the registry's presence says while it is degraded (self-preservation). */
export interface RegistryDegraded {
  reason: string;
  since: number;
}

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
  resyncs: number;
  gaps: number;
  deltasApplied: number;
  /** Deltas at or below the applied revision (repeats, or already covered by a snapshot). */
  duplicates: number;
  /** Dropped messages by `<kind>:<reason>` (e.g. `delta:invalid`, `snapshot:not-json`, `delta:unchainable`). */
  dropped: Record<string, number>;
}

export interface ServiceView {
  readonly service: string;
  readonly revision: number;
  readonly known: boolean;
  readonly instances: readonly CatalogInstance[];
  /** True while the copy comes from the last-known-good file and no snapshot arrived yet. */
  readonly fromLastKnownGood: boolean;
}

interface ServiceState {
  readonly name: string;
  instances: Map<string, CatalogInstance>;
  list: CatalogInstance[];
  revision: number;
  known: boolean;
  ready: boolean;
  fromLkg: boolean;
  /** Non-null while a snapshot is being fetched: deltas wait here. */
  buffer: CatalogDelta[] | null;
  syncing: Promise<void> | null;
  /** Cuts short a backoff sleep (reconnect, close). */
  wake: (() => void) | null;
  sub: Subscription | null;
  waiters: Set<() => void>;
}

/** Snapshots in a row at the same revision that still leave a buffered delta unchained before it is dropped. */
const MAX_SAME_SNAPSHOT_GAPS = 3;
/** Page timeouts in a row after which snapshot requests go without a deadline (clock skew)... */
const DEADLINE_FALLBACK_AFTER = 3;
/** ... for this long. */
const DEADLINE_FALLBACK_MS = 60_000;

const LkgFile = z.object({
  v: z.literal(1),
  savedAt: z.number(),
  services: z.array(
    z.object({ service: z.string().regex(NAME_PATTERN), revision: z.number().int().nonnegative(), known: z.boolean(), instances: z.array(CatalogInstance) }),
  ),
});

/**
 * Events:
 * - `change` (service: string, revision: number): the instances of a service changed.
 * - `stale` (stale: boolean, reason?: StaleReason): the mirror became stale / fresh again.
 * - `degraded` (degraded: boolean, info?: RegistryDegraded): the registry's presence says it entered /
 *   left its degraded mode (many hosts silent at once: agent-lost statuses may be the registry's own
 *   network, not the hosts).
 */
export class CatalogMirror extends EventEmitter {
  readonly stats: MirrorStats = { snapshots: 0, snapshotFailures: 0, snapshotRequests: 0, snapshotRestarts: 0, snapshotPages: 0, resyncs: 0, gaps: 0, deltasApplied: 0, duplicates: 0, dropped: {} };
  private nc: NatsConnection | null = null;
  private readonly states = new Map<string, ServiceState>();
  private readonly opts: Required<Omit<MirrorOptions, "lastKnownGoodFile" | "logger" | "services">> & { lastKnownGoodFile: string | undefined };
  private readonly log: Logger;
  private closed = false;
  private presenceSub: Subscription | null = null;
  private presenceTimer: ReturnType<typeof setInterval> | null = null;
  private lastPresenceAt = 0;
  private presenceIntervalMs: number;
  private registry: string | null = null;
  private natsConnected = false;
  private presenceMissing = false;
  private degradedValue: RegistryDegraded | null = null;
  private stale = true;
  private staleReasonValue: StaleReason | undefined = "nats-unreachable";
  private recovering: Promise<void> | null = null;
  private stopStatus: (() => void) | null = null;
  private lkgTimer: ReturnType<typeof setTimeout> | null = null;
  private lkgWriting: Promise<void> = Promise.resolve();
  private readonly pageTimeout: AdaptiveTimeout;
  /** Page requests in flight, and those waiting for a slot (FIFO). */
  private inFlight = 0;
  /** Page requests with a deadline timed out in a row (any service); reset by an answer to one. */
  private timeoutsInARow = 0;
  /** performance.now() until which page requests carry no deadline. */
  private deadlineOffUntil = 0;
  private readonly slotWaiters: Array<() => void> = [];

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
    this.presenceIntervalMs = this.opts.presenceIntervalMs;
    this.pageTimeout = new AdaptiveTimeout({
      initialMs: this.opts.snapshotRequestTimeoutMs,
      maxMs: Math.max(this.opts.snapshotRequestTimeoutMs, this.opts.snapshotRequestMaxTimeoutMs),
    });
    this.log = childLogger(options.logger, "mirror");
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
    return this.degradedValue;
  }

  /** The current (adaptive) timeout of one snapshot page request (ms). */
  get snapshotRequestTimeoutMs(): number {
    return this.pageTimeout.ms;
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
    return this.states.get(service)?.revision ?? 0;
  }

  /** The current view of a service, or undefined when no snapshot (or last-known-good copy) is there yet. */
  view(service: string): ServiceView | undefined {
    const st = this.states.get(service);
    if (!st || !st.ready) return undefined;
    return { service, revision: st.revision, known: st.known, instances: st.list, fromLastKnownGood: st.fromLkg };
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
    this.lastPresenceAt = Date.now();
    this.presenceMissing = false;
    this.presenceSub = nc.subscribe(PRESENCE_SUBJECT, { callback: (err, msg) => { if (!err) this.onPresence(msg); } });
    const tick = Math.max(50, Math.min(500, Math.floor(this.presenceIntervalMs / 2)));
    this.presenceTimer = setInterval(() => this.checkPresence(), tick);
    this.presenceTimer.unref();
    void this.watchStatus(nc);
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
      instances: new Map(),
      list: [],
      revision: 0,
      known: false,
      ready: false,
      fromLkg: false,
      buffer: null,
      syncing: null,
      wake: null,
      sub: null,
      waiters: new Set(),
    };
    this.states.set(service, st);
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
    if (!st.ready) {
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
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn({ err, file }, "cannot read last-known-good file");
      return 0;
    }
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
      if (st.ready) continue; // a real snapshot beat the file
      st.instances = new Map(s.instances.filter((i) => i.service === s.service).map((i) => [i.id, i]));
      st.list = [...st.instances.values()];
      st.revision = s.revision;
      st.known = s.known;
      st.ready = true;
      st.fromLkg = true;
      loaded++;
      this.emit("change", st.name, st.revision);
      this.wakeWaiters(st);
    }
    this.log.info({ file, services: loaded, savedAt: parsed.data.savedAt }, "loaded last-known-good catalog");
    return loaded;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceSub?.unsubscribe();
    this.stopStatus?.(); // a caller-owned connection outlives us: stop listening to it
    for (const st of this.states.values()) {
      st.sub?.unsubscribe();
      st.wake?.();
      this.wakeWaiters(st);
    }
    for (const w of this.slotWaiters.splice(0)) w();
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
    const r = decode(CatalogDelta, msg.data);
    if (!r.ok) return this.drop("delta", r.reason, r.error);
    const d = r.value;
    if (d.service !== st.name || (d.op === "put" && (d.instance.id !== d.instanceId || d.instance.service !== d.service))) {
      return this.drop("delta", "mismatch", `${d.service}/${d.instanceId} on ${st.name}`);
    }
    if (st.buffer) {
      if (st.buffer.length >= this.opts.maxBufferedDeltas) {
        st.buffer = [];
        this.drop("delta", "buffer-full");
      }
      st.buffer.push(d);
      return;
    }
    if (d.revision <= st.revision) {
      this.stats.duplicates++;
      return;
    }
    if (d.prevRevision !== st.revision) {
      this.stats.gaps++;
      this.log.info({ service: st.name, have: st.revision, prevRevision: d.prevRevision, revision: d.revision }, "gap in catalog deltas: resync");
      st.buffer = [d];
      void this.sync(st);
      return;
    }
    this.applyDelta(st, d);
    this.changed(st);
  }

  private applyDelta(st: ServiceState, d: CatalogDelta): void {
    if (d.op === "put") st.instances.set(d.instanceId, d.instance);
    else st.instances.delete(d.instanceId);
    st.revision = d.revision;
    st.known = true;
    st.fromLkg = false;
    this.stats.deltasApplied++;
  }

  private changed(st: ServiceState): void {
    st.list = [...st.instances.values()];
    this.emit("change", st.name, st.revision);
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
    st.buffer ??= [];
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
    let gapRevision = -1;
    let sameGap = 0;
    while (!this.closed && this.nc) {
      let snap: Snapshot;
      try {
        snap = await this.requestSnapshot(st);
      } catch (err) {
        // Only when closing or detached: pages are retried inside requestSnapshot.
        this.log.debug({ service: st.name, err: (err as Error).message }, "snapshot abandoned");
        continue;
      }
      this.stats.snapshots++;
      const before = st.revision;
      const beforeList = st.list;
      st.instances = new Map(snap.instances.filter((i) => i.service === st.name).map((i) => [i.id, i]));
      st.revision = snap.revision;
      st.known = snap.known;
      st.fromLkg = false;
      const buffered = (st.buffer ?? []).sort((a, b) => a.revision - b.revision);
      let gapAt = -1;
      for (let i = 0; i < buffered.length; i++) {
        const d = buffered[i]!;
        if (d.revision <= st.revision) {
          // Covered by the snapshot (or a repeat): discarded here, so counted once.
          this.stats.duplicates++;
          continue;
        }
        if (d.prevRevision !== st.revision) {
          gapAt = i;
          break;
        }
        this.applyDelta(st, d);
      }
      const wasReady = st.ready;
      st.ready = true;
      if (gapAt >= 0) {
        // The snapshot is older than a delta we hold (or a delta was lost in between): again.
        this.stats.gaps++;
        sameGap = snap.revision === gapRevision ? sameGap + 1 : 0;
        gapRevision = snap.revision;
        if (sameGap < MAX_SAME_SNAPSHOT_GAPS) {
          st.buffer = buffered.slice(gapAt);
          attempt++;
          await this.backoff(st, attempt);
          continue;
        }
        // The registry keeps answering the same revision, so those deltas chain onto nothing it has
        // (forged, or from another history): drop them rather than resync forever behind them.
        for (const d of buffered.slice(gapAt)) this.drop("delta", "unchainable", `${d.service}/${d.instanceId}@${d.revision}`);
      }
      st.buffer = null;
      if (!wasReady || before !== st.revision || !sameInstances(beforeList, st.instances)) this.changed(st);
      else st.list = [...st.instances.values()];
      this.wakeWaiters(st);
      return;
    }
  }

  /**
   * One snapshot, in as many pages as the registry cut it into (a service too large for one
   * message). A page that fails (timeout, no responders, bad answer) is asked again after a
   * full-jitter backoff, with the adaptive timeout: the pages already held stay, since the
   * registry serves the same bytes for a revision. Every page must carry the first page's
   * revision; if the revision moved while paging, start over from page 0. Throws only when the
   * mirror closes or loses its connection.
   */
  private async requestSnapshot(st: ServiceState): Promise<Snapshot> {
    const service = st.name;
    let first: Snapshot | null = null;
    let instances: CatalogInstance[] = [];
    let page = 0;
    let failures = 0;
    let restarts = 0;
    for (;;) {
      if (this.closed || !this.nc) throw new GatewayClosedError();
      let got: Snapshot;
      try {
        got = await this.requestSnapshotPage(service, page, first?.revision);
      } catch (err) {
        if (this.closed || !this.nc) throw err;
        this.stats.snapshotFailures++;
        failures++;
        this.log.debug({ service, page, failures, timeoutMs: this.pageTimeout.ms, err: (err as Error).message }, "snapshot page failed: retrying that page");
        await this.backoff(st, failures);
        continue;
      }
      failures = 0;
      if (page === 0) {
        first = got;
        instances = [...got.instances];
      } else if (got.revision !== first!.revision || got.pages !== first!.pages || got.page !== page) {
        // The service changed while paging: the pages held are of an older revision.
        this.stats.snapshotRestarts++;
        restarts++;
        this.log.debug({ service, from: first!.revision, to: got.revision }, "snapshot changed while paging: starting over");
        first = null;
        page = 0;
        await this.backoff(st, restarts); // a service churning faster than it pages must not spin
        continue;
      } else {
        instances.push(...got.instances);
      }
      page++;
      if (page >= first!.pages) {
        if (first!.pages <= 1) return first!;
        this.stats.snapshotPages += first!.pages;
        return { ...first!, page: 0, pages: 1, instances };
      }
    }
  }

  private async requestSnapshotPage(service: string, page: number, revision?: number): Promise<Snapshot> {
    await this.acquireSlot();
    try {
      const nc = this.nc;
      if (!nc || this.closed) throw new GatewayClosedError();
      const timeoutMs = this.pageTimeout.ms;
      // The deadline lets the registry skip answering a request nobody waits for any more
      // (an older registry ignores the field: the schemas are tolerant readers).
      // `revision`: the registry keeps the previous revision's pages, so a service that moves while
      // we page does not force a restart (unless it moved twice).
      // The deadline is on our clock: a client whose clock is far behind the registry's would have
      // every request skipped as expired. After a few timeouts in a row, ask without one (the
      // registry then always answers) for a while, then try again with one.
      const withDeadline = performance.now() >= this.deadlineOffUntil;
      const deadline = withDeadline ? { deadline: this.opts.now() + timeoutMs } : {};
      const body = encode(SnapshotRequest, { v: PROTOCOL_VERSION, kind: "snapshot-request", page, ...deadline, ...(revision !== undefined ? { revision } : {}) });
      this.stats.snapshotRequests++;
      const t0 = performance.now();
      let msg: Msg;
      try {
        msg = await nc.request(snapshotSubject(service), body, { timeout: timeoutMs });
      } catch (err) {
        if (isTimeout(err)) {
          this.pageTimeout.onTimeout(timeoutMs);
          if (withDeadline && ++this.timeoutsInARow >= DEADLINE_FALLBACK_AFTER) {
            this.timeoutsInARow = 0;
            this.deadlineOffUntil = performance.now() + DEADLINE_FALLBACK_MS;
            this.log.warn({ service, timeoutMs }, "snapshot requests keep timing out: asking without a deadline for a while (is this host's clock behind?)");
          }
        }
        throw err;
      }
      if (withDeadline) this.timeoutsInARow = 0;
      this.pageTimeout.onAnswer(performance.now() - t0);
      const r = decode(Snapshot, msg.data);
      if (!r.ok) {
        this.drop("snapshot", r.reason, r.error);
        throw new Error(`bad snapshot: ${r.reason}: ${r.error}`);
      }
      if (r.value.service !== service) {
        this.drop("snapshot", "mismatch", r.value.service);
        throw new Error(`snapshot for "${r.value.service}" when "${service}" was asked`);
      }
      return r.value;
    } finally {
      this.releaseSlot();
    }
  }

  /** Waits for one of the `maxSnapshotRequestsInFlight` page-request slots (FIFO). */
  private acquireSlot(): Promise<void> {
    if (this.inFlight < this.opts.maxSnapshotRequestsInFlight || this.closed) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.slotWaiters.push(() => {
        this.inFlight++;
        resolve();
      }),
    );
  }

  private releaseSlot(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
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

  private onPresence(msg: Msg): void {
    if (this.closed) return;
    const r = decode(PresenceMessage, msg.data);
    if (!r.ok) return this.drop("presence", r.reason, r.error);
    const p = r.value;
    this.lastPresenceAt = Date.now();
    this.presenceIntervalMs = p.intervalMs;
    const who = `${p.registryId}#${p.epoch}`;
    const newRegistry = this.registry !== null && this.registry !== who;
    this.registry ??= who;
    if (newRegistry) {
      // Not necessarily a problem (replicas, restarts), but cheap insurance against a lost last delta.
      this.registry = who;
      this.log.info({ registry: who }, "registry epoch changed: resync");
      this.pageTimeout.reset(); // another process: its round trips say nothing of this one
      this.resyncAll();
    }
    const degraded = p.degraded ?? null;
    if ((degraded === null) !== (this.degradedValue === null)) {
      if (degraded) this.log.warn({ registry: who, ...degraded }, "registry is degraded: statuses may reflect its own network");
      else this.log.info({ registry: who }, "registry is no longer degraded");
      this.degradedValue = degraded;
      this.emit("degraded", degraded !== null, degraded ?? undefined);
    } else if (degraded) this.degradedValue = degraded;
    if (this.presenceMissing) {
      this.presenceMissing = false;
      this.updateStale();
    }
  }

  private checkPresence(): void {
    if (this.closed || !this.natsConnected) return;
    const missing = Date.now() - this.lastPresenceAt > this.opts.presenceMissFactor * this.presenceIntervalMs;
    if (missing !== this.presenceMissing) {
      this.presenceMissing = missing;
      this.updateStale();
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    const statuses = nc.status();
    this.stopStatus = () => (statuses as { stop?: () => void }).stop?.();
    try {
      for await (const s of statuses) {
        if (this.closed) break;
        if (s.type === "disconnect" || s.type === "close") {
          this.natsConnected = false;
          this.updateStale();
        } else if (s.type === "reconnect") {
          this.natsConnected = true;
          // Presence may have been missed while down: give it a fresh grace period.
          this.lastPresenceAt = Date.now();
          this.presenceMissing = false;
          this.updateStale(true);
        }
      }
    } catch (err) {
      this.log.warn({ err }, "NATS status stream ended");
    }
  }

  private resyncAll(): Promise<void> {
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
    const reason: StaleReason | undefined = !this.nc
      ? "nats-unreachable"
      : !this.natsConnected
        ? "nats-disconnected"
        : this.presenceMissing
          ? "presence-lost"
          : undefined;
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
      const still = !this.nc || !this.natsConnected || this.presenceMissing;
      if (!still && this.stale) {
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
      .filter((s) => s.ready)
      .map((s) => ({ service: s.name, revision: s.revision, known: s.known, instances: s.list }));
    const body = JSON.stringify({ v: 1, savedAt: Date.now(), services });
    const tmp = `${file}.${process.pid}.tmp`;
    this.lkgWriting = this.lkgWriting.then(async () => {
      try {
        await mkdir(dirname(file), { recursive: true });
        await writeFile(tmp, body);
        await rename(tmp, file);
      } catch (err) {
        this.log.warn({ err, file }, "cannot write last-known-good file");
      }
    });
    return this.lkgWriting;
  }
}

/** A request that got no answer in time (not "no responders", not a bad answer). */
function isTimeout(err: unknown): boolean {
  const e = err as { name?: string; cause?: { name?: string } } | null;
  return e?.name === "TimeoutError" || e?.cause?.name === "TimeoutError" || err instanceof errors.TimeoutError;
}

function sameInstances(list: readonly CatalogInstance[], now: Map<string, CatalogInstance>): boolean {
  if (list.length !== now.size) return false;
  for (const i of list) {
    const j = now.get(i.id);
    if (!j || j.updatedAt !== i.updatedAt || j.status !== i.status || j.address !== i.address || j.port !== i.port || j.weight !== i.weight) return false;
  }
  return true;
}
