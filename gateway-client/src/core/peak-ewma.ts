/**
 * Peak-sensitive exponentially weighted moving average of latency, after Finagle's
 * `PeakEwma` (com.twitter.finagle.loadbalancer.PeakEwma) and linkerd2-proxy / tower's
 * `PeakEwma`:
 *
 * - a sample above the current estimate replaces it at once (the "peak": a slow
 *   endpoint is noticed on its first slow response);
 * - a sample below it is blended in with weight `1 - exp(-Δt / decayMs)`, so the
 *   estimate forgets at the same pace whatever the request rate;
 * - between samples the estimate decays towards zero with the same time constant
 *   (Finagle reads the cost through `observe(0)`), so an endpoint that was avoided for
 *   being slow is tried again after a while instead of being starved for ever.
 *
 * Pure: `now` is passed in (ms).
 */
export class PeakEwma {
  private value = 0;
  private stamp = 0;
  private seeded = false;

  constructor(private readonly decayMs: number) {}

  /** True once a first latency has been observed. */
  get isSeeded(): boolean {
    return this.seeded;
  }

  /** The estimate decayed to `now`, or undefined before the first sample. */
  get(now: number): number | undefined {
    if (!this.seeded) return undefined;
    return this.value * this.decay(now);
  }

  observe(latencyMs: number, now: number): void {
    const rtt = Math.max(0, Number.isFinite(latencyMs) ? latencyMs : 0);
    if (!this.seeded) {
      this.value = rtt;
      this.seeded = true;
    } else {
      const w = this.decay(now);
      const current = this.value * w;
      this.value = rtt > current ? rtt : this.value * w + rtt * (1 - w);
    }
    this.stamp = Math.max(this.stamp, now);
  }

  /**
   * A lower bound on a latency (a request that was cancelled after `latencyMs`): it can
   * raise the estimate (peak) but never lower it.
   */
  observeAtLeast(latencyMs: number, now: number): void {
    const current = this.get(now);
    if (current === undefined || latencyMs > current) this.observe(latencyMs, now);
  }

  private decay(now: number): number {
    if (this.decayMs <= 0) return 1;
    const dt = Math.max(0, now - this.stamp);
    return Math.exp(-dt / this.decayMs);
  }
}
