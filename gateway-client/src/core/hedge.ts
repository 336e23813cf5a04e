import { SlidingCounter } from "./sliding-counter.js";

export interface HedgeOptions {
  /** The latency quantile after which a hedge is sent (0.95 → p95). */
  readonly quantile: number;
  /** Hedges ≤ this share of requests in the window (Google "The Tail at Scale": a few percent). */
  readonly maxExtraLoad: number;
  /** Window of the load cap; also the latency tracker keeps the last one to two windows. */
  readonly windowMs: number;
  /** No hedge before this many latency samples: the quantile would be noise. */
  readonly minSamples: number;
  /** Bounds on the hedge delay. */
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_HEDGE: HedgeOptions = Object.freeze({
  quantile: 0.95,
  maxExtraLoad: 0.1,
  windowMs: 10_000,
  minSamples: 20,
  minDelayMs: 1,
  maxDelayMs: 10_000,
});

/**
 * Latency quantiles from a bounded log-linear histogram: buckets grow by 5 % from
 * 0.05 ms to ~5 min, so any quantile is within 5 % of the truth with 320 counters.
 * Two histograms rotate every `windowMs`: a quantile covers the last one to two windows,
 * so it follows a change of regime within two windows. Pure: `now` is passed in.
 */
export class LatencyTracker {
  private static readonly MIN_MS = 0.05;
  private static readonly GROWTH = 1.05;
  private static readonly BUCKETS = 320;
  private current = new Float64Array(LatencyTracker.BUCKETS);
  private previous = new Float64Array(LatencyTracker.BUCKETS);
  private currentCount = 0;
  private previousCount = 0;
  private epoch = -Infinity;
  private cache: { q: number; value: number | undefined } | undefined;

  constructor(private readonly windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError("windowMs must be > 0");
  }

  record(latencyMs: number, now: number): void {
    if (!Number.isFinite(latencyMs) || latencyMs < 0) return;
    this.rotate(now);
    this.current[LatencyTracker.bucketOf(latencyMs)]!++;
    this.currentCount++;
    this.cache = undefined;
  }

  count(now: number): number {
    this.rotate(now);
    return this.currentCount + this.previousCount;
  }

  /** The q-quantile (upper edge of its bucket), or undefined without samples. */
  quantile(q: number, now: number): number | undefined {
    this.rotate(now);
    if (this.cache && this.cache.q === q) return this.cache.value;
    const total = this.currentCount + this.previousCount;
    let value: number | undefined;
    if (total > 0) {
      const rank = Math.max(1, Math.ceil(q * total));
      let seen = 0;
      for (let i = 0; i < LatencyTracker.BUCKETS; i++) {
        seen += this.current[i]! + this.previous[i]!;
        if (seen >= rank) {
          value = LatencyTracker.MIN_MS * LatencyTracker.GROWTH ** (i + 1);
          break;
        }
      }
    }
    this.cache = { q, value };
    return value;
  }

  private static bucketOf(ms: number): number {
    if (ms <= LatencyTracker.MIN_MS) return 0;
    const i = Math.floor(Math.log(ms / LatencyTracker.MIN_MS) / Math.log(LatencyTracker.GROWTH));
    return Math.min(LatencyTracker.BUCKETS - 1, Math.max(0, i));
  }

  private rotate(now: number): void {
    const epoch = Math.floor(now / this.windowMs);
    if (epoch <= this.epoch) return;
    if (epoch === this.epoch + 1) {
      [this.previous, this.current] = [this.current, this.previous];
      this.previousCount = this.currentCount;
    } else {
      this.previous.fill(0);
      this.previousCount = 0;
    }
    this.current.fill(0);
    this.currentCount = 0;
    this.epoch = epoch;
    this.cache = undefined;
  }
}

/**
 * Hedging policy ("The Tail at Scale", Dean & Barroso; Envoy/gRPC hedging): when a try
 * has not answered after the observed p95, send one more to another endpoint and take
 * whichever answers first, but never let hedges exceed `maxExtraLoad` of the requests
 * in the window, so a general slowdown cannot turn into a load spike.
 *
 * Per request: `recordRequest(now)` once; when the hedge delay has elapsed, call
 * `shouldHedge(now)`: true means go, and counts the hedge. Feed latencies of successful
 * tries to `recordLatency`.
 */
export class HedgePolicy {
  readonly options: HedgeOptions;
  readonly latency: LatencyTracker;
  private readonly requests: SlidingCounter;
  private readonly hedges: SlidingCounter;

  constructor(options: Partial<HedgeOptions> = {}) {
    this.options = { ...DEFAULT_HEDGE, ...options };
    const o = this.options;
    if (!(o.quantile > 0 && o.quantile < 1) || !(o.maxExtraLoad >= 0) || !(o.windowMs > 0) || !(o.minDelayMs >= 0) || !(o.maxDelayMs >= o.minDelayMs)) {
      throw new RangeError("hedge: 0 < quantile < 1, maxExtraLoad ≥ 0, windowMs > 0, 0 ≤ minDelayMs ≤ maxDelayMs");
    }
    this.latency = new LatencyTracker(o.windowMs);
    this.requests = new SlidingCounter(o.windowMs, 10);
    this.hedges = new SlidingCounter(o.windowMs, 10);
  }

  recordRequest(now: number): void {
    this.requests.add(now);
  }

  recordLatency(latencyMs: number, now: number): void {
    this.latency.record(latencyMs, now);
  }

  /**
   * The delay after which to hedge, clamped to [minDelayMs, maxDelayMs], or undefined while
   * fewer than `minSamples` latencies are known (no hedging then).
   */
  hedgeDelayMs(now: number): number | undefined {
    if (this.latency.count(now) < this.options.minSamples) return undefined;
    const q = this.latency.quantile(this.options.quantile, now);
    if (q === undefined) return undefined;
    return Math.min(this.options.maxDelayMs, Math.max(this.options.minDelayMs, q));
  }

  /** Whether a hedge may be sent now; true counts it against the extra-load cap. */
  shouldHedge(now: number): boolean {
    if (this.options.maxExtraLoad <= 0) return false;
    if (this.latency.count(now) < this.options.minSamples) return false;
    const allowed = this.options.maxExtraLoad * this.requests.total(now);
    if (this.hedges.total(now) + 1 > allowed) return false;
    this.hedges.add(now);
    return true;
  }
}
