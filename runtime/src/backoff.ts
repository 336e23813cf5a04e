import { setTimeout as sleep } from "node:timers/promises";

/** Exponential delays: `initialMs`, ×`factor` per call, capped at `maxMs`; `reset()` starts over. */
export class Backoff {
  private delay: number;
  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly factor = 2,
  ) {
    this.delay = initialMs;
  }

  /** The delay to wait now; the next one grows. */
  next(): number {
    const d = this.delay;
    this.delay = Math.min(this.delay * this.factor, this.maxMs);
    return d;
  }

  reset(): void {
    this.delay = this.initialMs;
  }
}

export interface RetryOptions {
  initialMs?: number;
  maxMs?: number;
  signal?: AbortSignal;
  /** Called after each failure with the delay before the next attempt. */
  onError?: (err: unknown, attempt: number, delayMs: number) => void;
  /** True: stop retrying and throw this error. */
  giveUp?: (err: unknown) => boolean;
}

/**
 * Runs `fn` until it resolves, waiting a growing delay after each failure. Throws the last error
 * when `signal` aborts or `giveUp(err)` says so: the one backoff loop of every component.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const backoff = new Backoff(opts.initialMs ?? 100, opts.maxMs ?? 2000);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted || opts.giveUp?.(err)) throw err;
      const delayMs = backoff.next();
      opts.onError?.(err, attempt, delayMs);
      await sleep(delayMs, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
      if (opts.signal?.aborted) throw err;
    }
  }
}
