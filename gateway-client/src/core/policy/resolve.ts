import type { Policy, SubsetSelector } from "roster-schemas";
import type { BalancerName } from "../types.js";
import { DEFAULT_ADAPTIVE_THROTTLE, type AdaptiveThrottleOptions } from "./adaptive-throttle.js";
import type { PolicyAffinity } from "./affinity.js";
import type { PolicyFallback } from "./fallback.js";
import type { PolicyRoute } from "./routes.js";
import type { SplitEntry } from "./split.js";

/** The gateway's own options that a service policy may override (GatewayPolicy's names). */
export interface GatewayDefaults {
  readonly balancer: BalancerName;
  readonly tryTimeout: number;
  readonly deadline: number;
  /** `deadline` was configured (not the built-in default): it travels upstream. */
  readonly deadlineSet: boolean;
  readonly maxRetries: number;
}

/** What is in force for one service: the gateway's options overridden by the service's policy. */
export interface ResolvedPolicy {
  readonly balancer: BalancerName;
  readonly tryTimeoutMs: number;
  readonly deadlineMs: number;
  /** The deadline was set (by the policy or the gateway's options): tries carry it upstream. */
  readonly deadlineSet: boolean;
  readonly maxRetries: number;
  readonly subsets: Readonly<Record<string, SubsetSelector>> | undefined;
  readonly split: readonly SplitEntry[] | undefined;
  readonly routes: readonly PolicyRoute[] | undefined;
  readonly affinity: PolicyAffinity | undefined;
  readonly throttle: AdaptiveThrottleOptions | undefined;
  readonly rateLimit: { readonly perSecond: number; readonly burst: number } | undefined;
  readonly fallback: PolicyFallback | undefined;
  /** Revision of the service policy (0: none, the gateway's options only). */
  readonly revision: number;
  /** Top-level fields the service policy set; every other value is the gateway's own. */
  readonly fromPolicy: readonly string[];
}

/**
 * Merges a gateway's local options with a service's policy: the policy wins field by field, and
 * what it leaves out stays as the gateway says. An affinity needs consistent hashing, so it brings
 * the ring-hash balancer unless the policy names a balancer itself. Pure.
 */
export function resolvePolicy(gateway: GatewayDefaults, policy: Policy | null | undefined, revision = 0): ResolvedPolicy {
  const p = policy ?? {};
  const from = Object.keys(p).filter((k) => (p as Record<string, unknown>)[k] !== undefined);
  const throttle = p.throttle?.adaptive
    ? { k: p.throttle.k ?? DEFAULT_ADAPTIVE_THROTTLE.k, windowMs: p.throttle.window ?? DEFAULT_ADAPTIVE_THROTTLE.windowMs }
    : undefined;
  return {
    balancer: p.balancer ?? (p.affinity ? "ring-hash" : gateway.balancer),
    tryTimeoutMs: p.timeouts?.try ?? gateway.tryTimeout,
    deadlineMs: p.timeouts?.deadline ?? gateway.deadline,
    deadlineSet: p.timeouts?.deadline !== undefined || gateway.deadlineSet,
    maxRetries: p.retries?.max ?? gateway.maxRetries,
    subsets: p.subsets,
    split: p.split,
    routes: p.routes,
    affinity: p.affinity,
    throttle,
    rateLimit: p.rateLimit ? { perSecond: p.rateLimit.perSecond, burst: p.rateLimit.burst ?? Math.max(1, Math.ceil(p.rateLimit.perSecond)) } : undefined,
    fallback: p.fallback,
    revision: policy ? revision : 0,
    fromPolicy: from,
  };
}
