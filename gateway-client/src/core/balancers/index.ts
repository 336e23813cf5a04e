import type { BalancerName } from "../types.js";
import type { Balancer, Random } from "./balancer.js";
import { leastRequestCost, P2CBalancer, peakEwmaCost } from "./p2c.js";
import { RandomBalancer } from "./random.js";
import type { RingHashOptions } from "./ring-hash.js";
import { RingHashBalancer } from "./ring-hash.js";
import { RoundRobinBalancer } from "./round-robin.js";

export type { Balancer, BalancerPickContext, Candidate, LoadSource, Random } from "./balancer.js";
export type { RingHashOptions } from "./ring-hash.js";
export { P2CBalancer, peakEwmaCost, leastRequestCost } from "./p2c.js";
export type { CostFn, P2CSampling } from "./p2c.js";
export { RandomBalancer } from "./random.js";
export { RoundRobinBalancer } from "./round-robin.js";
export { RingHashBalancer } from "./ring-hash.js";

export const BALANCER_NAMES: readonly BalancerName[] = ["p2c-peak-ewma", "least-request", "round-robin", "random", "ring-hash"];

export function createBalancer(name: BalancerName, ringHash: RingHashOptions, random: Random): Balancer {
  switch (name) {
    case "p2c-peak-ewma":
      return new P2CBalancer(peakEwmaCost, random);
    case "least-request":
      return new P2CBalancer(leastRequestCost, random, "weighted");
    case "round-robin":
      return new RoundRobinBalancer(random);
    case "random":
      return new RandomBalancer(random);
    case "ring-hash":
      return new RingHashBalancer(ringHash, random);
  }
}
