import { SlidingCounter } from "./sliding-counter.js";

export interface RetryBudgetOptions {
  /** Retries earned per request (Finagle `percentCanRetry`). */
  readonly ratio: number;
  /** The sliding window over which requests earn and retries spend (Finagle `ttl`). */
  readonly windowMs: number;
  /** A floor for low traffic: this many retries per second of window are always allowed. */
  readonly minRetriesPerSecond: number;
}

export const DEFAULT_RETRY_BUDGET: RetryBudgetOptions = Object.freeze({ ratio: 0.2, windowMs: 10_000, minRetriesPerSecond: 10 });

/**
 * Finagle's RetryBudget (com.twitter.finagle.service.RetryBudget): within any window of
 * `windowMs`, retries ≤ ratio × requests + minRetriesPerSecond × windowMs/1000. During a
 * full outage the extra load retries add is therefore capped at `ratio` (plus the small
 * reserve) instead of multiplying the traffic by the number of attempts.
 *
 * Call `recordRequest` for each first attempt (retries do not earn retries) and
 * `trySpend` before each retry; false means "do not retry, return the failure".
 */
export class RetryBudget {
  readonly options: RetryBudgetOptions;
  private readonly requests: SlidingCounter;
  private readonly retries: SlidingCounter;

  constructor(options: Partial<RetryBudgetOptions> = {}) {
    this.options = { ...DEFAULT_RETRY_BUDGET, ...options };
    const { ratio, windowMs, minRetriesPerSecond } = this.options;
    if (!(ratio >= 0) || !(windowMs > 0) || !(minRetriesPerSecond >= 0)) {
      throw new RangeError("retry budget: ratio ≥ 0, windowMs > 0, minRetriesPerSecond ≥ 0");
    }
    this.requests = new SlidingCounter(windowMs, 10);
    this.retries = new SlidingCounter(windowMs, 10);
  }

  recordRequest(now: number): void {
    this.requests.add(now);
  }

  /** Retries still allowed in the window ending at `now` (may be fractional). */
  balance(now: number): number {
    const { ratio, windowMs, minRetriesPerSecond } = this.options;
    const reserve = (minRetriesPerSecond * windowMs) / 1000;
    return reserve + ratio * this.requests.total(now) - this.retries.total(now);
  }

  /** Spend one retry if the budget allows it. */
  trySpend(now: number): boolean {
    if (this.balance(now) < 1) return false;
    this.retries.add(now);
    return true;
  }
}
