import { SlidingCounter } from "../sliding-counter.js";
import type { Random } from "../balancers/balancer.js";

export interface AdaptiveThrottleOptions {
  /** The SRE book's K: requests may reach k × accepts before any is rejected locally (default 2). */
  readonly k: number;
  /** Sliding window of the counts (default 30 s). */
  readonly windowMs: number;
}

export const DEFAULT_ADAPTIVE_THROTTLE: AdaptiveThrottleOptions = Object.freeze({ k: 2, windowMs: 30_000 });

/**
 * Client-side adaptive throttling (Google SRE book, "Handling Overload"): over a sliding window,
 * reject a request locally with probability max(0, (requests − k·accepts) / (requests + 1)).
 * `requests` counts every request the application made, locally rejected ones included (so the
 * rejection rate rises while the upstream keeps refusing); `accepts` those the upstream took.
 * While the upstream accepts everything, nothing is rejected; when it refuses, the client sheds
 * load itself instead of spending the upstream's capacity on refusals. Pure: `now` is passed in.
 */
export class AdaptiveThrottle {
  readonly options: AdaptiveThrottleOptions;
  private readonly requests: SlidingCounter;
  private readonly accepts: SlidingCounter;

  constructor(options: Partial<AdaptiveThrottleOptions> = {}) {
    this.options = { ...DEFAULT_ADAPTIVE_THROTTLE, ...options };
    if (!(this.options.k >= 1) || !(this.options.windowMs > 0)) throw new RangeError("adaptive throttle: k ≥ 1 and windowMs > 0");
    this.requests = new SlidingCounter(this.options.windowMs, 20);
    this.accepts = new SlidingCounter(this.options.windowMs, 20);
  }

  /** The probability that the next request is rejected locally. */
  rejectProbability(now: number): number {
    const requests = this.requests.total(now);
    const accepts = this.accepts.total(now);
    return Math.max(0, (requests - this.options.k * accepts) / (requests + 1));
  }

  /**
   * Says whether to reject a request locally; a rejected one is counted now, a sent one only when
   * it completes (`completed`). Counting sent requests at start would make a burst in flight (no
   * answer yet) look refused: at cold start 32 requests in flight gave p ≈ 0.97, and the rejections
   * (counted as requests) kept it there.
   */
  rejectOrSend(now: number, random: Random): boolean {
    const p = this.rejectProbability(now);
    if (p > 0 && random() < p) {
      this.requests.add(now);
      return true;
    }
    return false;
  }

  /** A sent request completed: counted, and as accepted unless the upstream refused it. */
  completed(now: number, accepted: boolean): void {
    this.requests.add(now);
    if (accepted) this.accepts.add(now);
  }

  /** Counts a request and says whether to reject it locally (true: do not send it). */
  shouldReject(now: number, random: Random): boolean {
    const p = this.rejectProbability(now);
    this.requests.add(now);
    return p > 0 && random() < p;
  }

  /** The upstream accepted a request that was sent (any answer but a refusal: see `isAccepted`). */
  accepted(now: number): void {
    this.accepts.add(now);
  }

  /** Counts over the window (for gw.policy() and metrics). */
  counts(now: number): { requests: number; accepts: number } {
    return { requests: this.requests.total(now), accepts: this.accepts.total(now) };
  }
}

/**
 * Whether an upstream "accepted" a try, for adaptive throttling: it answered with anything but an
 * overload refusal (429, 503). Connection failures and timeouts are not accepts.
 */
export function isAccepted(outcome: { kind: "success" | "failure" | "cancelled"; statusCode?: number }): boolean {
  if (outcome.kind === "cancelled") return true;
  if (outcome.statusCode !== undefined) return outcome.statusCode !== 429 && outcome.statusCode !== 503;
  return outcome.kind === "success";
}
