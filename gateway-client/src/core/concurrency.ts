export interface ConcurrencyOptions {
  /** Requests in flight at once for the service; Infinity disables the cap. */
  readonly maxConcurrent: number;
  /** Requests waiting for a slot, first in first out; beyond it acquire fails at once. */
  readonly maxQueue: number;
}

/** Held while a request runs; `release()` is idempotent. */
export interface Permit {
  release(): void;
}

export type AcquireResult =
  | { readonly ok: true; readonly permit: Permit }
  | { readonly ok: false; readonly reason: "queue-full" | "aborted" };

interface Waiter {
  resolve(r: AcquireResult): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
}

/**
 * A per-service concurrency cap with a bounded FIFO queue (bulkhead). In-process
 * bookkeeping only: no timers: the adapter bounds the wait by aborting `signal` (its
 * queue timeout), which removes the waiter and resolves it with `aborted`.
 *
 * A released slot goes straight to the oldest waiter, so `inFlight` never exceeds the
 * cap and a burst cannot overtake requests already queued.
 */
export class ConcurrencyLimiter {
  readonly options: ConcurrencyOptions;
  private active = 0;
  private readonly queue: Waiter[] = [];
  private head = 0;
  private rejectedCount = 0;

  constructor(options: ConcurrencyOptions) {
    if (!(options.maxConcurrent >= 1) || !(options.maxQueue >= 0)) {
      throw new RangeError("concurrency: maxConcurrent ≥ 1 and maxQueue ≥ 0");
    }
    this.options = options;
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Requests refused because the queue was full, since creation. */
  get rejected(): number {
    return this.rejectedCount;
  }

  /** A slot now, or undefined (does not queue). */
  tryAcquire(): Permit | undefined {
    if (this.active >= this.options.maxConcurrent || this.queued > 0) return undefined;
    this.active++;
    return this.permit();
  }

  /**
   * A slot now (true) or not (false), without a Permit object: the request path's fast
   * path. The caller must call `give()` exactly once for each true.
   */
  tryTake(): boolean {
    if (this.active >= this.options.maxConcurrent || this.queued > 0) return false;
    this.active++;
    return true;
  }

  /** Gives back a slot taken with `tryTake()` (to the oldest waiter, if any). */
  give(): void {
    this.handOver();
  }

  /** A slot now, or when one frees up (FIFO); `queue-full` at once, `aborted` when `signal` fires first. */
  acquire(signal?: AbortSignal): Promise<AcquireResult> {
    const now = this.tryAcquire();
    if (now) return Promise.resolve({ ok: true, permit: now });
    if (signal?.aborted) return Promise.resolve({ ok: false, reason: "aborted" });
    if (this.queued >= this.options.maxQueue) {
      this.rejectedCount++;
      return Promise.resolve({ ok: false, reason: "queue-full" });
    }
    return new Promise<AcquireResult>((resolve) => {
      const waiter: Waiter = { resolve, signal, onAbort: undefined, settled: false };
      if (signal) {
        waiter.onAbort = () => {
          if (waiter.settled) return;
          waiter.settled = true;
          this.remove(waiter);
          resolve({ ok: false, reason: "aborted" });
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
    });
  }

  private permit(): Permit {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.handOver();
      },
    };
  }

  /** A slot was freed: give it to the oldest live waiter, or free it. */
  private handOver(): void {
    while (this.head < this.queue.length) {
      const w = this.queue[this.head]!;
      this.queue[this.head] = undefined as unknown as Waiter;
      this.head++;
      this.compact();
      if (w.settled) continue;
      w.settled = true;
      if (w.signal && w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
      w.resolve({ ok: true, permit: this.permit() }); // the slot passes on: active unchanged
      return;
    }
    this.active--;
  }

  private remove(w: Waiter): void {
    const i = this.queue.indexOf(w, this.head);
    if (i >= 0) this.queue.splice(i, 1);
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}
