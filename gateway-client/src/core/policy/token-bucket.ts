/**
 * A token bucket: `perSecond` tokens a second, at most `burst` stored (full at start). One per
 * caller process and service: it caps what this process sends, not the service's total. Pure:
 * `now` (ms) is passed in; refill is computed lazily, O(1).
 */
export class TokenBucket {
  private tokens: number;
  private last: number | undefined;

  constructor(
    readonly perSecond: number,
    readonly burst: number = Math.max(1, Math.ceil(perSecond)),
  ) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError("token bucket: perSecond > 0 and burst ≥ 1");
    this.tokens = burst;
  }

  private refill(now: number): void {
    if (this.last !== undefined && now > this.last) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    if (this.last === undefined || now > this.last) this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Milliseconds until a token is available (0 if one is). */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.perSecond);
  }

  available(now: number): number {
    this.refill(now);
    return this.tokens;
  }
}
