// Cheap per-try abort and timeout machinery for the request path.
//
// - AbortHandle: a one-shot abort source that undici's `request({ signal })` accepts in
//   place of an AbortSignal (undici takes any EventEmitter: it calls `once("abort", fn)`,
//   `removeListener("abort", fn)` and reads `aborted` / `reason`, see undici
//   lib/core/util.js `addAbortListener` and lib/api/api-request.js). Creating an
//   AbortController (an EventTarget) costs microseconds on Node 20; this costs an object.
// - TimeoutQueue: one FIFO per distinct timeout value. Entries of one list expire in the
//   order they were added (same duration, monotonic clock), so adding is O(1) at the tail,
//   removing is O(1) (intrusive doubly-linked list: nothing stays referenced once removed),
//   and one unref'd timer per list is armed for its head. The timer is not re-armed when
//   the head is removed: it fires, finds nothing due, and re-arms for the new head, so a
//   steady stream of tries that answer in time costs one wake-up per timeout period
//   instead of a setTimeout/clearTimeout pair per try.

type Listener = () => void;

/** setTimeout's largest delay; beyond it the timer simply fires early and re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One-shot abort source accepted by undici as `signal` (EventEmitter-like). */
export class AbortHandle {
  aborted = false;
  reason: unknown = undefined;
  private listener: Listener | undefined = undefined;
  private extra: Listener[] | undefined = undefined;

  on(event: string, fn: Listener): this {
    if (event !== "abort" || this.aborted) return this;
    if (this.listener === undefined) this.listener = fn;
    else (this.extra ??= []).push(fn);
    return this;
  }

  /** Abort fires at most once, so `once` is `on`. */
  once(event: string, fn: Listener): this {
    return this.on(event, fn);
  }

  addListener(event: string, fn: Listener): this {
    return this.on(event, fn);
  }

  removeListener(event: string, fn: Listener): this {
    if (event !== "abort") return this;
    if (this.listener === fn) this.listener = undefined;
    else if (this.extra) {
      const i = this.extra.indexOf(fn);
      if (i >= 0) this.extra.splice(i, 1);
    }
    return this;
  }

  off(event: string, fn: Listener): this {
    return this.removeListener(event, fn);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const first = this.listener;
    const extra = this.extra;
    this.listener = undefined;
    this.extra = undefined;
    first?.();
    if (extra) for (const fn of extra) fn();
  }
}

/** A node of a TimeoutQueue list (intrusive: the queue allocates nothing per entry). */
export abstract class TimedEntry extends AbortHandle {
  /** @internal */ tqAt = 0;
  /** @internal */ tqPrev: TimedEntry | undefined = undefined;
  /** @internal */ tqNext: TimedEntry | undefined = undefined;
  /** @internal */ tqList: TimeoutList | undefined = undefined;
  /** Called once when the entry expires (it has been removed from the queue already). */
  abstract onTimeout(): void;
}

/** @internal */
class TimeoutList {
  head: TimedEntry | undefined = undefined;
  tail: TimedEntry | undefined = undefined;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  constructor(readonly ms: number) {}
}

/**
 * Timeouts keyed by duration. `now` is a monotonic clock in ms (performance.now()), passed
 * in so the caller can reuse the reading it already took.
 */
export class TimeoutQueue {
  private readonly lists = new Map<number, TimeoutList>();
  private lastMs = NaN;
  private lastList: TimeoutList | undefined = undefined;

  /** Entries waiting (for tests and stats). */
  get size(): number {
    let n = 0;
    for (const l of this.lists.values()) for (let e = l.head; e; e = e.tqNext) n++;
    return n;
  }

  /** Schedules `entry.onTimeout()` in `ms` (at least 1; the entry must not be queued already). */
  add(entry: TimedEntry, ms: number, now: number): void {
    if (!(ms >= 1)) ms = 1; // NaN, 0 or negative: as setTimeout does
    let list = ms === this.lastMs ? this.lastList : undefined;
    if (list === undefined) {
      list = this.lists.get(ms);
      if (list === undefined) {
        list = new TimeoutList(ms);
        this.lists.set(ms, list);
      }
      this.lastMs = ms;
      this.lastList = list;
    }
    entry.tqAt = now + ms;
    entry.tqList = list;
    entry.tqNext = undefined;
    entry.tqPrev = list.tail;
    if (list.tail) list.tail.tqNext = entry;
    else list.head = entry;
    list.tail = entry;
    if (list.timer === undefined) this.arm(list, ms);
  }

  /** Cancels the entry's timeout; a no-op when it is not queued (expired or removed). */
  remove(entry: TimedEntry): void {
    const list = entry.tqList;
    if (list === undefined) return;
    const { tqPrev: prev, tqNext: next } = entry;
    if (prev) prev.tqNext = next;
    else list.head = next;
    if (next) next.tqPrev = prev;
    else list.tail = prev;
    entry.tqList = undefined;
    entry.tqPrev = undefined;
    entry.tqNext = undefined;
  }

  /** Stops every timer and forgets every entry (their timeouts never fire). */
  clear(): void {
    for (const list of this.lists.values()) {
      if (list.timer) clearTimeout(list.timer);
      for (let e = list.head; e; ) {
        const next = e.tqNext;
        e.tqList = e.tqPrev = e.tqNext = undefined;
        e = next;
      }
    }
    this.lists.clear();
    this.lastMs = NaN;
    this.lastList = undefined;
  }

  private arm(list: TimeoutList, ms: number): void {
    list.timer = setTimeout(() => this.fire(list), Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms))));
    list.timer.unref();
  }

  private fire(list: TimeoutList): void {
    list.timer = undefined;
    const now = performance.now();
    for (let e = list.head; e !== undefined && e.tqAt <= now; e = list.head) {
      this.remove(e);
      e.onTimeout();
    }
    if (list.timer !== undefined) return; // re-armed by an add() from a callback
    if (list.head) this.arm(list, list.head.tqAt - now);
    else if (this.lists.get(list.ms) === list) {
      // Drained: forget the list, so durations used once (deadline-bound tries) do not pile up.
      this.lists.delete(list.ms);
      if (this.lastList === list) {
        this.lastMs = NaN;
        this.lastList = undefined;
      }
    }
  }
}
