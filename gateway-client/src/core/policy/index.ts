// Traffic policy, the pure half: what a request engine consults per request. The NATS half (the
// policy mirror) is adapters/policy-mirror.ts. See docs/traffic-policy.md.
export * from "./headers.js";
export * from "./subsets.js";
export * from "./split.js";
export * from "./routes.js";
export * from "./affinity.js";
export * from "./adaptive-throttle.js";
export * from "./token-bucket.js";
export * from "./retry-after.js";
export * from "./fallback.js";
export * from "./resolve.js";
export * from "./runtime.js";
export * from "./policy-chain.js";
