import type { Balancer, BalancerPickContext, Candidate, Random } from "./balancer.js";
import { WeightedSampler, weightedAmong } from "./balancer.js";

/** Weighted random: prefix sums of the weights, binary search per pick. O(log n). */
export class RandomBalancer implements Balancer {
  private candidates: readonly Candidate[] = [];
  private readonly sampler: WeightedSampler;

  constructor(private readonly random: Random) {
    this.sampler = new WeightedSampler(random);
  }

  update(candidates: readonly Candidate[]): void {
    this.candidates = candidates;
    this.sampler.update(candidates);
  }

  pick(_ctx: BalancerPickContext, allowed?: (c: Candidate) => boolean): Candidate | undefined {
    if (this.candidates.length === 0 || this.sampler.total <= 0) return undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const c = this.candidates[this.sampler.draw()]!;
      if (!allowed || allowed(c)) return c;
    }
    return weightedAmong(this.candidates, allowed!, this.random);
  }
}
