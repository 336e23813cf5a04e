/**
 * The caught-up clock: up to what time the registry has read everything its NATS server had for
 * it. Pure (no I/O, no clock: times come in). The adapter (adapters/nats/caught-up-probe.ts)
 * publishes a probe to itself on each connection agents' messages arrive on ("paths"); a
 * connection delivers in the order the server routed, so when a probe comes back, every agent
 * message the server had routed to that connection before the probe has been read.
 *
 * Silence is then judged at `caughtUpTo()` (the send time of the newest probe back on every
 * path), not at the processing clock: a registry whose own event loop was late (CPU
 * starvation, a long GC, a paused process) has heartbeats sitting unread in its socket, and
 * judging them against `now` would declare live hosts lost because of the registry's own lag.
 *
 * Tokens are random (the adapter's), kept only here: a message with an unknown token changes
 * nothing, so a forged probe can at most make the clock as eager as the processing clock.
 */
export interface CaughtUpOptions {
  /** The connections agents' messages arrive on (e.g. "main", "bulk"). */
  paths: readonly string[];
  /** Probes kept per path while unanswered; older ones are forgotten (a newer one answers for them). */
  maxOutstanding?: number;
}

export class CaughtUpClock {
  private readonly outstanding = new Map<string, Map<string, number>>();
  private readonly reached = new Map<string, number>();
  private readonly maxOutstanding: number;

  constructor(opts: CaughtUpOptions) {
    if (opts.paths.length === 0) throw new RangeError("at least one path");
    this.maxOutstanding = opts.maxOutstanding ?? 64;
    for (const p of opts.paths) this.outstanding.set(p, new Map());
  }

  /** A probe with `token` was published on `path` at `at`. */
  sent(path: string, token: string, at: number): void {
    const o = this.outstanding.get(path);
    if (!o) return;
    o.set(token, at);
    // Insertion order is send order: drop the oldest (a newer probe coming back covers it).
    while (o.size > this.maxOutstanding) o.delete(o.keys().next().value!);
  }

  /** A probe came back on `path`. False (and nothing changes) for a token this clock never sent there. */
  returned(path: string, token: string): boolean {
    const o = this.outstanding.get(path);
    const at = o?.get(token);
    if (o === undefined || at === undefined) return false;
    // This one and every older probe are answered (the connection delivers in order).
    for (const [t, sentAt] of o) {
      if (sentAt > at) break;
      o.delete(t);
    }
    if (at > (this.reached.get(path) ?? -Infinity)) this.reached.set(path, at);
    return true;
  }

  /** Time up to which every path has been read; null until a probe came back on each. */
  caughtUpTo(): number | null {
    let min = Infinity;
    for (const p of this.outstanding.keys()) {
      const r = this.reached.get(p);
      if (r === undefined) return null;
      min = Math.min(min, r);
    }
    return min;
  }

  /**
   * The time silence may be judged at: the caught-up time, never later than `now`. Before any probe
   * came back it is null: the caller waits (at start every host has just been given a grace period).
   */
  judgeAt(now: number): number | null {
    const c = this.caughtUpTo();
    return c === null ? null : Math.min(now, c);
  }
}
