/**
 * A token bucket per source address, pure (time comes in as `now`). Bounded: at most `maxSources`
 * buckets are kept; past that the oldest untouched one is forgotten (a forgotten source starts
 * full again, which only errs towards answering).
 */
export interface RatePerSourceOptions {
  /** Tokens added per second (the steady rate allowed per source). */
  perSecond: number;
  /** Bucket size (the burst allowed per source). */
  burst: number;
  maxSources?: number;
}

export class RatePerSource {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly maxSources: number;

  constructor(private readonly opts: RatePerSourceOptions) {
    this.maxSources = opts.maxSources ?? 100_000;
  }

  /** Takes one token for `source`; false when it has none left. */
  take(source: string, now: number): boolean {
    let b = this.buckets.get(source);
    if (b) {
      this.buckets.delete(source); // re-inserted below: Map order is then least-recently-used first
      b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.perSecond);
      b.at = now;
    } else {
      b = { tokens: this.opts.burst, at: now };
      if (this.buckets.size >= this.maxSources) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(source, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get sources(): number {
    return this.buckets.size;
  }
}
