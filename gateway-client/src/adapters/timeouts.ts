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
// - Expiry is judged after the I/O that is already in: Node runs expired timers before the
//   poll phase of each loop iteration, so when the caller's loop was blocked past a try's
//   timeout, its timer would fire while the response sits unread in the socket. Expired
//   entries therefore wait one turn in a grace list (one setImmediate per batch, the check
//   phase, after poll has read the sockets); an answer read meanwhile removes its entry, and
//   a timer that fired late grants its entry the stolen time once (core/loop-lag.ts) before
//   `onTimeout` is called.

import { nowMs } from "./clock.js";
import { lagExtensionMs } from "../core/loop-lag.js";

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
  // The duration it was queued for, how late its timer fired, whether it was extended.
  /** @internal */ tqMs = 0;
  /** @internal */ tqLate = 0;
  /** @internal */ tqExtended = false;
  /**
   * Extra time to grant when the entry's timer fired `lateMs` late (the caller's loop was
   * blocked); 0: it expires now. Overridden by entries bound to a hard deadline.
   */
  lagExtension(lateMs: number): number {
    return lagExtensionMs(this.tqMs, lateMs, this.tqExtended);
  }
  /** Called once when the entry expires (it has been removed from the queue already); `lateMs`: how late its timer fired. */
  abstract onTimeout(lateMs: number): void;
}

/**
 * A try's timer: its timeout, or the request's deadline when that comes first. A deadline is
 * the caller's hard bound and is never extended; an extension never runs past it either (the
 * entry becomes deadline-bound instead).
 */
export abstract class TryTimerEntry extends TimedEntry {
  deadlineBound = false;
  /** ms left before the request's deadline. */
  abstract deadlineLeft(): number;

  override lagExtension(lateMs: number): number {
    if (this.deadlineBound) return 0;
    const extra = super.lagExtension(lateMs);
    if (extra === 0) return 0;
    const left = this.deadlineLeft();
    if (left > extra) return extra;
    this.deadlineBound = true;
    return left >= 1 ? Math.ceil(left) : 0;
  }
}

/** @internal */
class TimeoutList {
  head: TimedEntry | undefined = undefined;
  tail: TimedEntry | undefined = undefined;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  constructor(readonly ms: number) {}
}

/**
 * Timeouts keyed by duration. `now` is the gateway's monotonic clock in ms (clock.ts), passed
 * in so the caller can reuse the reading it already took.
 */
export class TimeoutQueue {
  private readonly lists = new Map<number, TimeoutList>();
  private lastMs = NaN;
  private lastList: TimeoutList | undefined = undefined;
  /** Expired entries waiting for the check phase (after poll has read what already arrived). */
  private readonly grace = new TimeoutList(-1);
  private graceTimer: ReturnType<typeof setImmediate> | undefined = undefined;
  private readonly drainGrace = (): void => this.expireGrace();
  /** Entries removed while in the grace turn: answers read after their timer had fired (or tries cancelled meanwhile). */
  answeredInGrace = 0;
  /** Entries granted more time because their timer fired late (the caller's loop lagged). */
  lagExtended = 0;

  /** Entries waiting (for tests and stats). */
  get size(): number {
    let n = 0;
    for (const l of this.lists.values()) for (let e = l.head; e; e = e.tqNext) n++;
    for (let e = this.grace.head; e; e = e.tqNext) n++;
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
    entry.tqMs = ms;
    entry.tqExtended = false;
    append(list, entry);
    if (list.timer === undefined) this.arm(list, ms);
  }

  /** Cancels the entry's timeout; a no-op when it is not queued (expired or removed). */
  remove(entry: TimedEntry): void {
    const list = entry.tqList;
    if (list === undefined) return;
    if (list === this.grace) this.answeredInGrace++;
    unlink(list, entry);
  }

  /** Stops every timer and forgets every entry (their timeouts never fire). */
  clear(): void {
    for (const list of [...this.lists.values(), this.grace]) {
      if (list.timer) clearTimeout(list.timer);
      list.timer = undefined;
      for (let e = list.head; e; ) {
        const next = e.tqNext;
        e.tqList = e.tqPrev = e.tqNext = undefined;
        e = next;
      }
      list.head = list.tail = undefined;
    }
    if (this.graceTimer) clearImmediate(this.graceTimer);
    this.graceTimer = undefined;
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
    const now = nowMs();
    for (let e = list.head; e !== undefined && e.tqAt <= now; e = list.head) {
      unlink(list, e);
      e.tqLate = now - e.tqAt;
      append(this.grace, e);
    }
    if (this.grace.head !== undefined && this.graceTimer === undefined) {
      // Not unref'd: an unref'd immediate does not stop poll from blocking until the next wake-up.
      this.graceTimer = setImmediate(this.drainGrace);
    }
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

  /** The check phase after a firing: what is still in the grace list was not answered by the I/O read meanwhile. */
  private expireGrace(): void {
    this.graceTimer = undefined;
    const grace = this.grace;
    const last = grace.tail;
    const now = nowMs();
    for (let e = grace.head; e !== undefined; e = grace.head) {
      unlink(grace, e);
      const late = e.tqLate;
      const extra = e.lagExtension(late);
      if (extra > 0) {
        this.lagExtended++;
        this.add(e, extra, now);
        e.tqExtended = true;
      } else e.onTimeout(late);
      if (e === last) break; // entries expired by callbacks wait for their own turn
    }
  }
}

function append(list: TimeoutList, entry: TimedEntry): void {
  entry.tqList = list;
  entry.tqNext = undefined;
  entry.tqPrev = list.tail;
  if (list.tail) list.tail.tqNext = entry;
  else list.head = entry;
  list.tail = entry;
}

function unlink(list: TimeoutList, entry: TimedEntry): void {
  const { tqPrev: prev, tqNext: next } = entry;
  if (prev) prev.tqNext = next;
  else list.head = next;
  if (next) next.tqPrev = prev;
  else list.tail = prev;
  entry.tqList = undefined;
  entry.tqPrev = undefined;
  entry.tqNext = undefined;
}
