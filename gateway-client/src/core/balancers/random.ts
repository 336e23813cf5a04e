import type { Balancer, BalancerPickContext, Candidate, Random } from "./balancer.js";
import { weightedAmong } from "./balancer.js";

/** Weighted random: prefix sums of the weights, binary search per pick. O(log n). */
export class RandomBalancer implements Balancer {
  private candidates: readonly Candidate[] = [];
  private prefix = new Float64Array(0);
  private total = 0;

  constructor(private readonly random: Random) {}

  update(candidates: readonly Candidate[]): void {
    this.candidates = candidates;
    this.prefix = new Float64Array(candidates.length);
    let sum = 0;
    candidates.forEach((c, i) => {
      sum += c.weight;
      this.prefix[i] = sum;
    });
    this.total = sum;
  }

  pick(_ctx: BalancerPickContext, allowed?: (c: Candidate) => boolean): Candidate | undefined {
    if (this.candidates.length === 0 || this.total <= 0) return undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const c = this.draw();
      if (!allowed || allowed(c)) return c;
    }
    return weightedAmong(this.candidates, allowed!, this.random);
  }

  private draw(): Candidate {
    const target = this.random() * this.total;
    let lo = 0;
    let hi = this.prefix.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.prefix[mid]! > target) hi = mid;
      else lo = mid + 1;
    }
    return this.candidates[lo]!;
  }
}
