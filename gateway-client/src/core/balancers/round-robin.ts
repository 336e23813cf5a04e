import type { Balancer, BalancerPickContext, Candidate, Random } from "./balancer.js";
import { weightedAmong } from "./balancer.js";

/**
 * Smooth weighted round robin. nginx's algorithm (`ngx_http_upstream_get_peer`) gives a
 * smooth interleaving (weights 5,1,1 → a a b a c a a) but is O(n) per pick; this uses
 * Envoy's earliest-deadline-first scheduler (source/common/upstream/edf_scheduler.h),
 * which produces the same proportions with the same smoothness (5,1,1: the light ones
 * never back to back) in O(log n): each
 * endpoint is due every 1/weight, and the earliest due is served next. Equal weights
 * reduce to plain round robin. Deadlines start at a random phase so that many clients
 * updated by the same catalog change do not all hit the same endpoint first.
 */
export class RoundRobinBalancer implements Balancer {
  private candidates: readonly Candidate[] = [];
  /** Binary min-heap of candidate indexes, ordered by (deadline, seq). */
  private heap: number[] = [];
  private deadline = new Float64Array(0);
  private seq = new Float64Array(0);
  private counter = 0;

  constructor(private readonly random: Random) {}

  update(candidates: readonly Candidate[]): void {
    this.candidates = candidates;
    const n = candidates.length;
    this.deadline = new Float64Array(n);
    this.seq = new Float64Array(n);
    this.heap = [];
    this.counter = 0;
    for (let i = 0; i < n; i++) {
      this.deadline[i] = this.random() / candidates[i]!.weight;
      this.seq[i] = this.counter++;
      this.push(i);
    }
  }

  pick(_ctx: BalancerPickContext, allowed?: (c: Candidate) => boolean): Candidate | undefined {
    const n = this.candidates.length;
    if (n === 0) return undefined;
    // Skipping a disallowed endpoint consumes its turn, which is harmless; bounded by n.
    const attempts = allowed ? Math.min(n, 8) : 1;
    for (let a = 0; a < attempts; a++) {
      const c = this.next();
      if (!allowed || allowed(c)) return c;
    }
    return weightedAmong(this.candidates, allowed!, this.random);
  }

  private next(): Candidate {
    const i = this.heap[0]!;
    this.deadline[i] = this.deadline[i]! + 1 / this.candidates[i]!.weight;
    this.seq[i] = this.counter++;
    this.siftDown(0);
    return this.candidates[i]!;
  }

  private less(a: number, b: number): boolean {
    const da = this.deadline[a]!;
    const db = this.deadline[b]!;
    return da < db || (da === db && this.seq[a]! < this.seq[b]!);
  }

  private push(i: number): void {
    const h = this.heap;
    h.push(i);
    let k = h.length - 1;
    while (k > 0) {
      const p = (k - 1) >> 1;
      if (!this.less(h[k]!, h[p]!)) break;
      [h[k], h[p]] = [h[p]!, h[k]!];
      k = p;
    }
  }

  private siftDown(k: number): void {
    const h = this.heap;
    const n = h.length;
    for (;;) {
      const l = 2 * k + 1;
      const r = l + 1;
      let m = k;
      if (l < n && this.less(h[l]!, h[m]!)) m = l;
      if (r < n && this.less(h[r]!, h[m]!)) m = r;
      if (m === k) return;
      [h[k], h[m]] = [h[m]!, h[k]!];
      k = m;
    }
  }
}
