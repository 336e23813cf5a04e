// When a try's timer fires late, the caller's own event loop was blocked (or the process was
// not scheduled): the try did not get the time its timeout promised, and its request may even
// have gone out late. Such a timeout says nothing about the endpoint, so the try gets the time
// the loop stole, once, before its timeout counts (against the endpoint and the retry budget).

/** Below this lateness a timer is on time (timer granularity, ordinary jitter). */
export const LAG_FLOOR_MS = 10;
/** A timer late by at least this share of its timeout means the loop stole a real part of the try. */
export const LAG_SHARE = 0.25;

/**
 * Extra time (ms) to grant a try whose `timeoutMs` timer fired `lateMs` after it was due; 0
 * when the timeout stands (on time, or already extended once). The extra time is the lateness,
 * at most one more `timeoutMs`, so a try waits at most about twice its timeout of running loop.
 */
export function lagExtensionMs(timeoutMs: number, lateMs: number, alreadyExtended: boolean): number {
  if (alreadyExtended || !(timeoutMs > 0)) return 0;
  if (!(lateMs >= Math.max(LAG_FLOOR_MS, timeoutMs * LAG_SHARE))) return 0;
  return Math.ceil(Math.min(lateMs, timeoutMs));
}
