import type { Endpoint } from "../types.js";

/** Live load of an endpoint, read by the load-aware balancers at pick time. */
export interface LoadSource {
  readonly inFlight: number;
  /** Peak-EWMA latency decayed to `now`; undefined before the first response. */
  ewmaMs(now: number): number | undefined;
}

/** One endpoint the balancer may choose, with its effective weight (> 0). */
export interface Candidate {
  readonly endpoint: Endpoint;
  readonly weight: number;
  readonly load: LoadSource;
}

export interface BalancerPickContext {
  readonly now: number;
  readonly hashKey?: string | undefined;
}

/**
 * A balancing strategy over a candidate set. `update` is called whenever the set or the
 * weights change (rare: membership, health, ejection, breaker, slow-start steps); `pick`
 * runs per request and is O(1) or O(log n). `allowed`, when given, filters candidates
 * (the request's already-tried endpoints); pick returns undefined when no candidate is
 * allowed.
 */
export interface Balancer {
  update(candidates: readonly Candidate[]): void;
  pick(ctx: BalancerPickContext, allowed?: (c: Candidate) => boolean): Candidate | undefined;
}

export type Random = () => number;

/** Weighted random choice among the allowed candidates: the O(n) fallback used on retries. */
export function weightedAmong(
  candidates: readonly Candidate[],
  allowed: (c: Candidate) => boolean,
  random: Random,
): Candidate | undefined {
  let total = 0;
  for (const c of candidates) if (allowed(c)) total += c.weight;
  if (total <= 0) return undefined;
  let r = random() * total;
  let last: Candidate | undefined;
  for (const c of candidates) {
    if (!allowed(c)) continue;
    last = c;
    r -= c.weight;
    if (r < 0) return c;
  }
  return last;
}

/**
 * Weighted random index over a fixed candidate list: prefix sums of the weights, built once per
 * update, and a binary search per draw. O(log n).
 */
export class WeightedSampler {
  private prefix = new Float64Array(0);
  private sum = 0;

  constructor(private readonly random: Random) {}

  get total(): number {
    return this.sum;
  }

  update(candidates: readonly Candidate[]): void {
    this.prefix = new Float64Array(candidates.length);
    let sum = 0;
    candidates.forEach((c, i) => {
      sum += c.weight;
      this.prefix[i] = sum;
    });
    this.sum = sum;
  }

  /** An index drawn with probability proportional to its candidate's weight. */
  draw(): number {
    const target = this.random() * this.sum;
    let lo = 0;
    let hi = this.prefix.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.prefix[mid]! > target) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** Random integer in [0, n). */
export function randomIndex(n: number, random: Random): number {
  const i = Math.floor(random() * n);
  return i >= n ? n - 1 : i < 0 ? 0 : i;
}
