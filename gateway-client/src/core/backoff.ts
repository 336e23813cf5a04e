export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ baseMs: 25, capMs: 1000 });

/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"): the delay before retry number `attempt` (1 = first retry) is uniform in
 * [0, min(cap, base × 2^(attempt-1))). Full jitter spreads the retries of many clients
 * that failed together, which is what matters during an outage.
 */
export function backoffDelay(attempt: number, random: () => number = Math.random, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const exp = Math.max(0, Math.floor(attempt) - 1);
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(exp, 52));
  return Math.floor(random() * ceiling);
}
