// Snapshot requests of the catalog follower: one snapshot in as many pages as the registry cut
// it into, each page with the adaptive (RFC 6298-like) timeout and a deadline the registry may
// skip past, a failed page retried alone, at most `maxInFlight` page requests at once (FIFO).
// See docs/architecture.md, "Snapshot herds". Split out of the follower (adapters/mirror.ts),
// which decides when to sync; this only fetches.
import { errors, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { PROTOCOL_VERSION, SnapshotReply, SnapshotRequest, decode, encode, snapshotSubject, type CatalogInstance, type Snapshot } from "roster-schemas";
import { AdaptiveTimeout } from "../core/adaptive-timeout.js";
import { GatewayClosedError } from "../errors.js";
import type { Logger } from "./logger.js";

/** Page timeouts in a row after which snapshot requests go without a deadline (clock skew)... */
const DEADLINE_FALLBACK_AFTER = 3;
/** ... for this long. */
const DEADLINE_FALLBACK_MS = 60_000;

export interface PagerOptions {
  requestTimeoutMs: number;
  maxTimeoutMs: number;
  maxInFlight: number;
  /** Epoch ms (the deadline sent to the registry is on this clock). */
  now: () => number;
}

/** What the pager needs from the follower. */
export interface PagerHost {
  /** The connection, or null once closed or detached (then every request fails). */
  connection(): NatsConnection | null;
  drop(kind: string, reason: string, detail?: string): void;
}

/** The counters the pager adds to (the follower's stats). */
export interface PagerStats {
  snapshotFailures: number;
  snapshotRequests: number;
  snapshotRestarts: number;
  snapshotPages: number;
  /** Pages the registry answered "retry later" (it was shedding bulk work); asked again after its retry-after. */
  snapshotRetryLater?: number;
}

/** The registry answered `snapshot-busy`: ask again after `retryAfterMs` (not a failure). */
class RetryLater extends Error {
  constructor(readonly retryAfterMs: number) {
    super(`registry busy: retry after ${retryAfterMs} ms`);
  }
}

export class SnapshotPager {
  private readonly pageTimeout: AdaptiveTimeout;
  /** Page requests in flight, and those waiting for a slot (FIFO). */
  private inFlight = 0;
  /** Page requests with a deadline timed out in a row (any service); reset by an answer to one. */
  private timeoutsInARow = 0;
  /** performance.now() until which page requests carry no deadline. */
  private deadlineOffUntil = 0;
  private readonly slotWaiters: Array<() => void> = [];
  /** Retry-later waits in progress (ended at once by close). */
  private readonly sleepers = new Set<() => void>();

  constructor(
    private readonly opts: PagerOptions,
    private readonly stats: PagerStats,
    private readonly log: Logger,
    private readonly host: PagerHost,
  ) {
    this.pageTimeout = new AdaptiveTimeout({ initialMs: opts.requestTimeoutMs, maxMs: Math.max(opts.requestTimeoutMs, opts.maxTimeoutMs) });
  }

  /** The current per-page timeout. */
  get timeoutMs(): number {
    return this.pageTimeout.ms;
  }

  /** Forget the round trips measured (another registry process answers now). */
  resetTimeout(): void {
    this.pageTimeout.reset();
  }

  /** Lets every request waiting for a slot go (they then fail: the host is closed). */
  close(): void {
    for (const w of this.slotWaiters.splice(0)) w();
    for (const s of [...this.sleepers]) s();
  }

  /** Waits the registry's retry-after plus up to as much again (jitter: the shed herd spreads out). */
  private retryLater(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms + Math.random() * ms);
      this.sleepers.add(done);
    });
  }

  /**
   * One snapshot, in as many pages as the registry cut it into (a service too large for one
   * message). A page that fails (timeout, no responders, bad answer) is asked again after a
   * full-jitter backoff, with the adaptive timeout: the pages already held stay, since the
   * registry serves the same bytes for a revision. Every page must carry the first page's
   * revision; if the revision moved while paging, start over from page 0. Throws only when the
   * mirror closes or loses its connection.
   */
  async snapshot(service: string, backoff: (attempt: number) => Promise<void>): Promise<Snapshot> {
    let first: Snapshot | null = null;
    let instances: CatalogInstance[] = [];
    let page = 0;
    let failures = 0;
    let restarts = 0;
    for (;;) {
      if (!this.host.connection()) throw new GatewayClosedError();
      let got: Snapshot;
      try {
        got = await this.page(service, page, first?.revision);
      } catch (err) {
        if (!this.host.connection()) throw err;
        if (err instanceof RetryLater) {
          this.stats.snapshotRetryLater = (this.stats.snapshotRetryLater ?? 0) + 1;
          this.log.debug({ service, page, retryAfterMs: err.retryAfterMs }, "registry busy: asking for that page again later");
          await this.retryLater(err.retryAfterMs);
          continue;
        }
        this.stats.snapshotFailures++;
        failures++;
        this.log.debug({ service, page, failures, timeoutMs: this.pageTimeout.ms, err: (err as Error).message }, "snapshot page failed: retrying that page");
        await backoff(failures);
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
        await backoff(restarts); // a service churning faster than it pages must not spin
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

  private async page(service: string, page: number, revision?: number): Promise<Snapshot> {
    await this.acquireSlot();
    try {
      const nc = this.host.connection();
      if (!nc) throw new GatewayClosedError();
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
      const r = decode(SnapshotReply, msg.data);
      if (!r.ok) {
        this.host.drop("snapshot", r.reason, r.error);
        throw new Error(`bad snapshot: ${r.reason}: ${r.error}`);
      }
      // A quick "busy" says nothing of how long a page takes: the adaptive timeout learns from pages only.
      if (r.value.kind === "snapshot-busy") throw new RetryLater(r.value.retryAfterMs);
      this.pageTimeout.onAnswer(performance.now() - t0);
      if (r.value.service !== service) {
        this.host.drop("snapshot", "mismatch", r.value.service);
        throw new Error(`snapshot for "${r.value.service}" when "${service}" was asked`);
      }
      return r.value;
    } finally {
      this.releaseSlot();
    }
  }

  /** Waits for one of the `maxInFlight` page-request slots (FIFO). */
  private acquireSlot(): Promise<void> {
    if (this.inFlight < this.opts.maxInFlight || !this.host.connection()) {
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
}

/** A request that got no answer in time (not "no responders", not a bad answer). */
function isTimeout(err: unknown): boolean {
  const e = err as { name?: string; cause?: { name?: string } } | null;
  return e?.name === "TimeoutError" || e?.cause?.name === "TimeoutError" || err instanceof errors.TimeoutError;
}
