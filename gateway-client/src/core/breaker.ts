import type { BreakerState } from "./types.js";

export interface BreakerOptions {
  /** Consecutive failures that open the breaker; 0 disables it. */
  readonly failureThreshold: number;
  /** How long it stays open before letting probes through. */
  readonly openMs: number;
  /** Trial requests admitted while half-open; that many successes close it. */
  readonly halfOpenProbes: number;
}

/**
 * A per-endpoint consecutive-failure circuit breaker (cockatiel's ConsecutiveBreaker
 * with a half-open state that admits a few probes):
 *
 *   closed ──(failureThreshold consecutive failures)──▶ open
 *   open ──(openMs elapsed)──▶ half-open
 *   half-open: admits at most `halfOpenProbes` trial requests;
 *     `halfOpenProbes` successes ──▶ closed;  any failure ──▶ open (openMs again);
 *     a cancelled probe gives its slot back.
 *
 * Every mutator returns true when whether the endpoint can take a new request may have
 * changed (the balancer then recomputes its candidate set). Pure: `now` is passed in.
 */
export class CircuitBreaker {
  private mode: BreakerState = "closed";
  private failures = 0;
  private openUntil = 0;
  private admitted = 0;
  private successes = 0;

  constructor(private readonly options: BreakerOptions) {}

  get enabled(): boolean {
    return this.options.failureThreshold > 0;
  }

  state(now: number): BreakerState {
    if (this.mode === "open" && now >= this.openUntil) {
      this.mode = "half-open";
      this.admitted = 0;
      this.successes = 0;
    }
    return this.mode;
  }

  allows(now: number): boolean {
    const s = this.state(now);
    if (s === "closed") return true;
    if (s === "open") return false;
    return this.admitted < Math.max(1, this.options.halfOpenProbes);
  }

  /** When the state will change by itself (open → half-open), if it will. */
  nextChangeAt(): number | undefined {
    return this.mode === "open" ? this.openUntil : undefined;
  }

  consecutiveFailures(): number {
    return this.failures;
  }

  onStart(now: number): boolean {
    if (this.state(now) !== "half-open") return false;
    this.admitted++;
    return this.admitted >= Math.max(1, this.options.halfOpenProbes);
  }

  onSuccess(now: number): boolean {
    this.failures = 0;
    if (this.state(now) !== "half-open") return false;
    this.successes++;
    if (this.successes >= Math.max(1, this.options.halfOpenProbes)) {
      this.mode = "closed";
      return true;
    }
    return false;
  }

  onFailure(now: number): boolean {
    if (!this.enabled) return false;
    const s = this.state(now);
    if (s === "open") return false;
    this.failures++;
    if (s === "half-open" || this.failures >= this.options.failureThreshold) {
      this.mode = "open";
      this.openUntil = now + this.options.openMs;
      this.failures = 0;
      return true;
    }
    return false;
  }

  /** Back to closed (the catalog's health check saw the endpoint recover). True if it was not closed. */
  reset(): boolean {
    const wasClosed = this.mode === "closed";
    this.mode = "closed";
    this.failures = 0;
    this.admitted = 0;
    this.successes = 0;
    return !wasClosed;
  }

  onCancel(now: number): boolean {
    if (this.state(now) !== "half-open" || this.admitted === 0) return false;
    const wasFull = this.admitted >= Math.max(1, this.options.halfOpenProbes);
    this.admitted--;
    return wasFull;
  }
}
