/**
 * The bulk lane: snapshot requests wait here (HTTP bodies ask `admitBody`) and are
 * served a few per turn of the event loop, so a health transition read meanwhile is applied
 * between two turns instead of behind every queued request. Under overload bulk work is shed,
 * answered "retry later", never a transition (docs/architecture.md, "Transitions first").
 * Pure: the caller passes the time (ms, any monotonic clock) and measures what it serves.
 */
export interface BulkLaneOptions {
  /** Requests held at most; one more is answered "retry later" at once. */
  maxQueued: number;
  /** Event-loop lag above which bulk work is shed (the transitions' path is late). */
  maxLagMs: number;
  /** How long the lane stays overloaded after it last shed or saw lag over `maxLagMs`. */
  holdMs: number;
  /**
   * HTTP bodies still admitted per second while overloaded: shedding must never starve a client
   * for good when the lag has another cause (heartbeats, a starved machine) than bulk work.
   */
  overloadedBodiesPerS: number;
  /** Bounds of the "retry after" it tells askers. */
  minRetryAfterMs: number;
  maxRetryAfterMs: number;
}

export const BULK_LANE_DEFAULTS: BulkLaneOptions = {
  maxQueued: 2000,
  maxLagMs: 250,
  holdMs: 1000,
  overloadedBodiesPerS: 20,
  minRetryAfterMs: 200,
  maxRetryAfterMs: 5000,
};

export type ShedReason = "queue-full" | "http";

export interface LaneCounters {
  served: number;
  shed: Record<ShedReason, number>;
}

export class BulkLane<T> {
  private queue: T[] = [];
  private head = 0;
  /** Smoothed cost of serving one request (ms), for the retry-after estimate. */
  private serveMs = 1;
  private lastOverloadAt = Number.NEGATIVE_INFINITY;
  /** Bodies admitted while overloaded: a token bucket of `overloadedBodiesPerS`. */
  private tokens = 0;
  private tokensAt = Number.NEGATIVE_INFINITY;
  readonly counters: LaneCounters = { served: 0, shed: { "queue-full": 0, http: 0 } };

  constructor(private readonly opts: BulkLaneOptions = BULK_LANE_DEFAULTS) {}

  /** Queues a request; false when it must be answered "retry later" at once (counted). */
  offer(item: T, now: number): boolean {
    if (this.queued >= this.opts.maxQueued) {
      this.counters.shed["queue-full"]++;
      this.lastOverloadAt = now;
      return false;
    }
    this.queue.push(item);
    return true;
  }

  /**
   * The next request, oldest first. None is shed for having waited: a request that waited past its
   * asker's deadline is dropped by the responder (the asker is gone), and shedding by age alone
   * would refuse everything, for ever, on a machine slow enough (a livelock, seen at load 20).
   */
  next(): T | undefined {
    if (this.head >= this.queue.length) return undefined;
    const item = this.queue[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return item;
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

  /** True while overloaded: recently shed, recently lagging, or half full. */
  overloaded(now: number): boolean {
    return now - this.lastOverloadAt < this.opts.holdMs || this.queued * 2 >= this.opts.maxQueued;
  }

  /**
   * Whether to serve an HTTP body now: always when not overloaded; while overloaded, at most
   * `overloadedBodiesPerS` (the rest refused and counted; a refusal does not prolong the overload).
   */
  admitBody(now: number): boolean {
    if (!this.overloaded(now)) return true;
    const rate = this.opts.overloadedBodiesPerS;
    this.tokens = Math.min(Math.max(1, rate), this.tokens + ((now - this.tokensAt) / 1000) * rate);
    this.tokensAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.counters.shed.http++;
    return false;
  }

  /** What to tell an asker: about twice the time the backlog takes to serve, within bounds. */
  retryAfterMs(): number {
    const drain = this.queued * this.serveMs * 2;
    return Math.round(Math.min(this.opts.maxRetryAfterMs, Math.max(this.opts.minRetryAfterMs, drain)));
  }

  get queued(): number {
    return this.queue.length - this.head;
  }
}
