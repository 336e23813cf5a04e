/** Longest back-off an upstream may ask for through Retry-After (a hostile or buggy value is capped). */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Parses a Retry-After value (RFC 9110: delay-seconds, or an HTTP-date) into milliseconds from
 * `now`, capped at `maxMs`. Undefined when absent or malformed.
 */
export function parseRetryAfter(value: string | undefined, now: number, maxMs = MAX_RETRY_AFTER_MS): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return Math.min(maxMs, Number(v) * 1000);
  // An HTTP-date has letters, a comma or spaces; refuse anything else before Date.parse guesses.
  if (!/^[A-Za-z]{3,9},? [0-9A-Za-z :-]{10,40}$/.test(v)) return undefined;
  const at = Date.parse(v);
  if (!Number.isFinite(at)) return undefined;
  return Math.min(maxMs, Math.max(0, at - now));
}

/**
 * Per-instance load signals: an instance that answered 429 or 503 with Retry-After is left out of
 * picks until then (when others can serve). Memory is bounded: one entry per instance that asked,
 * expired ones pruned as new ones come.
 */
export class LoadSignals {
  private readonly until = new Map<string, number>();

  constructor(private readonly maxMs = MAX_RETRY_AFTER_MS) {}

  /** Feeds one answer; returns the back-off it set (ms) or undefined when it is no load signal. */
  note(endpointId: string, statusCode: number, retryAfter: string | undefined, now: number): number | undefined {
    if (statusCode !== 429 && statusCode !== 503) return undefined;
    const ms = parseRetryAfter(retryAfter, now, this.maxMs);
    if (ms === undefined || ms <= 0) return undefined;
    if (this.until.size >= 1024) for (const [id, t] of this.until) if (t <= now) this.until.delete(id);
    this.until.set(endpointId, Math.max(this.until.get(endpointId) ?? 0, now + ms));
    return ms;
  }

  /** True while the instance asked not to be sent requests. */
  backingOff(endpointId: string, now: number): boolean {
    const t = this.until.get(endpointId);
    if (t === undefined) return false;
    if (t <= now) {
      this.until.delete(endpointId);
      return false;
    }
    return true;
  }

  /** Milliseconds until the instance may be used again (0 if it may). */
  remainingMs(endpointId: string, now: number): number {
    const t = this.until.get(endpointId);
    return t === undefined || t <= now ? 0 : t - now;
  }

  forget(endpointId: string): void {
    this.until.delete(endpointId);
  }
}
