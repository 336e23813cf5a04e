/**
 * Event counts over a sliding time window, kept in `buckets` slots (the window slides
 * one slot at a time). Memory is O(buckets); every call is O(buckets) at worst and O(1)
 * when time has not moved to another slot. Pure: `now` is passed in (ms).
 */
export class SlidingCounter {
  private readonly counts: Float64Array;
  private readonly slotMs: number;
  /** Absolute slot number of the newest slot. */
  private head = -Infinity;
  /** index(head), kept so that add() in the newest slot needs no modulo. */
  private headIndex = 0;
  private sum = 0;

  constructor(
    readonly windowMs: number,
    readonly buckets = 10,
  ) {
    if (!(windowMs > 0) || !(buckets >= 1)) throw new RangeError("windowMs must be > 0 and buckets ≥ 1");
    this.counts = new Float64Array(buckets);
    this.slotMs = windowMs / buckets;
  }

  add(now: number, n = 1): void {
    const slot = Math.floor(now / this.slotMs);
    if (slot > this.head) this.advance(now);
    const i = slot === this.head ? this.headIndex : this.index(slot);
    this.counts[i] = this.counts[i]! + n;
    this.sum += n;
  }

  /** Events in the window ending at `now`. */
  total(now: number): number {
    this.advance(now);
    return this.sum;
  }

  private index(slot: number): number {
    return ((slot % this.buckets) + this.buckets) % this.buckets;
  }

  private advance(now: number): void {
    const slot = Math.floor(now / this.slotMs);
    if (slot <= this.head) return; // same slot, or a clock that went backwards: keep counting
    if (slot - this.head >= this.buckets) {
      this.counts.fill(0);
      this.sum = 0;
    } else {
      for (let s = this.head + 1; s <= slot; s++) {
        const i = this.index(s);
        this.sum -= this.counts[i]!;
        this.counts[i] = 0;
      }
    }
    this.head = slot;
    this.headIndex = this.index(slot);
  }
}
