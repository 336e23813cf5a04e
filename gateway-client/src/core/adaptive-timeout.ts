export interface AdaptiveTimeoutOptions {
  /** The timeout before any sample, and the floor it never goes below. */
  readonly initialMs: number;
  /** The cap it never goes above. */
  readonly maxMs: number;
}

/**
 * A request timeout that adapts like TCP's retransmission timeout (RFC 6298): doubled on every
 * timeout up to a cap, and after each answer set from the smoothed round-trip time and its
 * variance (srtt + 4 × rttvar), never below the initial value. A slow-but-working server is
 * then waited for instead of being sent the same request again every `initialMs`. Every answer
 * is a valid sample (each request has its own reply inbox: no retransmission ambiguity).
 */
export class AdaptiveTimeout {
  private srtt: number | null = null;
  private rttvar = 0;
  private current: number;

  constructor(private readonly options: AdaptiveTimeoutOptions) {
    if (!(options.initialMs > 0) || !(options.maxMs >= options.initialMs)) {
      throw new RangeError(`adaptive timeout: need 0 < initialMs <= maxMs (got ${options.initialMs}, ${options.maxMs})`);
    }
    this.current = options.initialMs;
  }

  /** The timeout to use for the next request (ms). */
  get ms(): number {
    return this.current;
  }

  /** An answer came back after `rttMs`. */
  onAnswer(rttMs: number): void {
    const r = Math.max(0, rttMs);
    if (this.srtt === null) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.current = this.clamp(this.srtt + 4 * this.rttvar);
  }

  /**
   * A request sent with a timeout of `usedMs` (default: the current one) timed out: wait twice
   * that next time, up to the cap. Several requests that timed out together double it once.
   */
  onTimeout(usedMs: number = this.current): void {
    this.current = Math.max(this.current, this.clamp(usedMs * 2));
  }

  /** Forget the samples (another server, after a reconnect). */
  reset(): void {
    this.srtt = null;
    this.rttvar = 0;
    this.current = this.options.initialMs;
  }

  private clamp(ms: number): number {
    return Math.min(this.options.maxMs, Math.max(this.options.initialMs, Math.ceil(ms)));
  }
}
