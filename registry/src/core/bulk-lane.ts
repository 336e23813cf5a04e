/**
 * The bulk lane: snapshot requests (and, through `shedding`, HTTP bodies) wait here and are
 * served a few per turn of the event loop, so a health transition read meanwhile is applied
 * between two turns instead of behind every queued request. Under overload bulk work is shed,
 * answered "retry later", never a transition (docs/architecture.md, "Transitions first").
 * Pure: the caller passes the time (ms, any monotonic clock) and measures what it serves.
 */
export interface BulkLaneOptions {
  /** Requests held at most; one more is answered "retry later" at once. */
  maxQueued: number;
  /** A request that waited longer than this is answered "retry later" (its asker gives up soon). */
  maxWaitMs: number;
  /** Event-loop lag above which bulk work is shed (the transitions' path is late). */
  maxLagMs: number;
  /** How long the lane keeps shedding HTTP bodies after it last shed or saw lag over `maxLagMs`. */
  holdMs: number;
  /** Bounds of the "retry after" it tells askers. */
  minRetryAfterMs: number;
  maxRetryAfterMs: number;
}

export const BULK_LANE_DEFAULTS: BulkLaneOptions = {
  maxQueued: 2000,
  maxWaitMs: 1000,
  maxLagMs: 250,
  holdMs: 1000,
  minRetryAfterMs: 200,
  maxRetryAfterMs: 5000,
};

export type ShedReason = "queue-full" | "waited" | "http";

export interface LaneCounters {
  served: number;
  shed: Record<ShedReason, number>;
}

export class BulkLane<T> {
  private queue: Array<{ item: T; at: number }> = [];
  private head = 0;
  /** Smoothed cost of serving one request (ms), for the retry-after estimate. */
  private serveMs = 1;
  private lastOverloadAt = Number.NEGATIVE_INFINITY;
  readonly counters: LaneCounters = { served: 0, shed: { "queue-full": 0, waited: 0, http: 0 } };

  constructor(private readonly opts: BulkLaneOptions = BULK_LANE_DEFAULTS) {}

  /** Queues a request; false when it must be answered "retry later" at once (counted). */
  offer(item: T, now: number): boolean {
    if (this.queued >= this.opts.maxQueued) {
      this.shed("queue-full", now);
      return false;
    }
    this.queue.push({ item, at: now });
    return true;
  }

  /**
   * The next request, oldest first: `shed` when it waited past `maxWaitMs` or the event loop is
   * lagging (answer it "retry later"), else serve it and report the time taken with `served`.
   */
  next(now: number): { item: T; shed: boolean } | undefined {
    if (this.head >= this.queue.length) return undefined;
    const e = this.queue[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (now - e.at > this.opts.maxWaitMs) {
      this.shed("waited", now);
      return { item: e.item, shed: true };
    }
    return { item: e.item, shed: false };
  }

  /** One request served in `ms`. */
  served(ms: number): void {
    this.counters.served++;
    this.serveMs += (Math.max(0.01, ms) - this.serveMs) / 8;
  }

  /** A measure of how late the event loop ran a timer: over `maxLagMs`, bulk work is shed for `holdMs`. */
  noteLag(lagMs: number, now: number): void {
    if (lagMs > this.opts.maxLagMs) this.lastOverloadAt = now;
  }

  /** True while bulk work should be refused: recently shed, recently lagging, or half full. */
  shedding(now: number): boolean {
    return now - this.lastOverloadAt < this.opts.holdMs || this.queued * 2 >= this.opts.maxQueued;
  }

  /** Counts an HTTP body (or other bulk work outside the queue) refused while `shedding` (a refusal does not prolong it). */
  refuse(): void {
    this.counters.shed.http++;
  }

  /** What to tell an asker: about twice the time the backlog takes to serve, within bounds. */
  retryAfterMs(): number {
    const drain = this.queued * this.serveMs * 2;
    return Math.round(Math.min(this.opts.maxRetryAfterMs, Math.max(this.opts.minRetryAfterMs, drain)));
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  private shed(reason: ShedReason, now: number): void {
    this.counters.shed[reason]++;
    this.lastOverloadAt = now;
  }
}
