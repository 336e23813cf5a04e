// The contract between the pure core (balancing, ejection, budgets) and the adapters
// (mirror, undici request path). Everything here is time-injected: `now` is epoch ms.
import type { CatalogInstance } from "roster-schemas";

export type BalancerName = "p2c-peak-ewma" | "least-request" | "round-robin" | "random" | "ring-hash";

/** An instance as the balancer sees it (built from a CatalogInstance). */
export interface Endpoint {
  readonly id: string;
  readonly service: string;
  readonly address: string;
  readonly port: number;
  readonly zone: string | undefined;
  readonly weight: number;
  readonly status: CatalogInstance["status"];
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
}

/** What happened to one try, fed back by the request path or by `pick().done()`. */
export type Outcome =
  | { readonly kind: "success"; readonly latencyMs: number }
  | {
      readonly kind: "failure";
      /** `refused` (ECONNREFUSED) ejects at once; the others count towards consecutive failures. */
      readonly reason: "refused" | "connect" | "reset" | "timeout" | "status" | "other";
      readonly latencyMs: number;
      readonly statusCode?: number;
    }
  /** Aborted by the caller (or lost a hedge race): no verdict on the endpoint. */
  | { readonly kind: "cancelled"; readonly latencyMs: number };

export interface PickContext {
  readonly now: number;
  /** Consistent-hashing key (ring-hash balancer); ignored by the others. */
  readonly hashKey?: string;
  /** Endpoint ids already tried by this request: retries go elsewhere when possible. */
  readonly exclude?: ReadonlySet<string>;
}

/** Why nothing could be picked: carried by NoHealthyUpstreamError. */
export interface NoHealthyReasons {
  readonly known: number;
  readonly ejected: number;
  readonly circuitOpen: number;
  readonly draining: number;
  readonly critical: number;
  readonly inOtherZones: number;
  readonly excluded: number;
}

export type PickResult =
  | { readonly ok: true; readonly endpoint: Endpoint; readonly panic: boolean }
  | { readonly ok: false; readonly reasons: NoHealthyReasons };

// ---------------------------------------------------------------------------
// Additions (additive only): per-endpoint statistics and the balancer contract.
// ---------------------------------------------------------------------------

export type BreakerState = "closed" | "open" | "half-open";

/** A snapshot of one endpoint's bookkeeping, as returned by `ServiceBalancer.stats()`. */
export interface EndpointStats {
  readonly id: string;
  readonly zone: string | undefined;
  readonly status: Endpoint["status"];
  /** Catalog weight. */
  readonly weight: number;
  /** Weight after the warning factor and slow start (what the balancer uses). */
  readonly effectiveWeight: number;
  readonly inFlight: number;
  /** Peak-EWMA latency estimate decayed to `now`; undefined before the first response. */
  readonly ewmaMs: number | undefined;
  /** Epoch ms the current ejection ends; 0 when not ejected. */
  readonly ejectedUntil: number;
  /** Ejections so far (after forgiveness): the next one lasts base × (this + 1), capped. */
  readonly ejections: number;
  readonly consecutiveFailures: number;
  readonly breaker: BreakerState;
  readonly requests: number;
  readonly successes: number;
  readonly failures: number;
  /** True while the slow-start ramp is below full weight. */
  readonly slowStart: boolean;
}
