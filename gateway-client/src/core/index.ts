// Internal entry of the pure core (balancing, ejection, breakers, budgets). The package's
// public surface is src/index.ts; adapters and tests may import from here.
export * from "./types.js";
export * from "./service-balancer.js";
export * from "./balancers/index.js";
export * from "./breaker.js";
export * from "./peak-ewma.js";
export * from "./hash.js";
export * from "./sliding-counter.js";
export * from "./retry-budget.js";
export * from "./backoff.js";
export * from "./retry-policy.js";
export * from "./concurrency.js";
export * from "./hedge.js";
export * from "./loop-lag.js";
export * from "./adaptive-timeout.js";
