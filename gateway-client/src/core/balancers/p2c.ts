import type { Balancer, BalancerPickContext, Candidate, Random } from "./balancer.js";
import { randomIndex, weightedAmong } from "./balancer.js";

/** Cost of an endpoint for a power-of-two-choices comparison (lower is better). */
export type CostFn = (c: Candidate, now: number) => number;

/** Finagle's penalty for an endpoint with requests pending but no latency known yet. */
const UNSEEDED_PENALTY = 1e12;

/**
 * Peak-EWMA cost (Finagle `PeakEwma`, linkerd2-proxy): latency estimate × (in-flight + 1),
 * divided by the weight. An endpoint with no latency sample yet costs 0 while idle (so it
 * gets probed) and a large penalty once a request is pending (so it is probed by one
 * request at a time until it answers).
 */
export const peakEwmaCost: CostFn = (c, now) => {
  const ewma = c.load.ewmaMs(now);
  if (ewma === undefined) return c.load.inFlight === 0 ? 0 : UNSEEDED_PENALTY + c.load.inFlight;
  return (ewma * (c.load.inFlight + 1)) / c.weight;
};

/** Least-request cost (Envoy LEAST_REQUEST with active_request_bias 1): (in-flight + 1) / weight. */
export const leastRequestCost: CostFn = (c) => (c.load.inFlight + 1) / c.weight;

/**
 * Power of two choices: sample two distinct candidates uniformly and take the cheaper
 * (Mitzenmacher; Finagle's P2C balancers; Envoy LEAST_REQUEST choice_count 2). O(1).
 * Ties go to the first sample, which is itself random.
 */
export class P2CBalancer implements Balancer {
  private candidates: readonly Candidate[] = [];

  constructor(
    private readonly cost: CostFn,
    private readonly random: Random,
  ) {}

  update(candidates: readonly Candidate[]): void {
    this.candidates = candidates;
  }

  pick(ctx: BalancerPickContext, allowed?: (c: Candidate) => boolean): Candidate | undefined {
    const list = this.candidates;
    const n = list.length;
    if (n === 0) return undefined;
    if (n === 1) {
      const only = list[0]!;
      return !allowed || allowed(only) ? only : undefined;
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const i = randomIndex(n, this.random);
      let j = randomIndex(n - 1, this.random);
      if (j >= i) j++;
      const a = list[i]!;
      const b = list[j]!;
      const okA = !allowed || allowed(a);
      const okB = !allowed || allowed(b);
      if (okA && okB) return this.cost(b, ctx.now) < this.cost(a, ctx.now) ? b : a;
      if (okA) return a;
      if (okB) return b;
    }
    // Rare (retries over a mostly excluded set): the cheapest of two among the allowed.
    const first = weightedAmong(list, allowed!, this.random);
    if (!first) return undefined;
    const second = weightedAmong(list, (c) => c !== first && allowed!(c), this.random);
    if (!second) return first;
    return this.cost(second, ctx.now) < this.cost(first, ctx.now) ? second : first;
  }
}
