// The request policy of a gateway: zod schema with defaults. Durations accept "250ms",
// "2s" or a number of milliseconds. Balancer tuning (outlier ejection, breaker, slow start,
// locality, panic threshold) is passed through to the core's ServiceBalancer, which checks
// its own ranges.
import { z } from "zod";
import { Duration, Name, formatIssues } from "roster-schemas";
import { InvalidOptionsError } from "./errors.js";

const BALANCERS = ["p2c-peak-ewma", "least-request", "round-robin", "random", "ring-hash"] as const;

export const GatewayPolicy = z.object({
  /** The caller's zone: prefer instances there (zone-aware routing with spill-over). */
  zone: Name.optional(),
  /** Services to mirror at start (others are mirrored on first use). */
  services: z.array(Name).default([]),
  balancer: z.enum(BALANCERS).default("p2c-peak-ewma"),
  /** Timeout of one try, until the response headers arrive. */
  tryTimeout: Duration.default(2000),
  /**
   * Overall budget of a request across tries and backoff, until the response headers arrive.
   * Given here, it travels upstream in the deadline header; the built-in 10 s does not.
   */
  deadline: Duration.default(10_000),
  /** Retries after the first try (so at most maxRetries + 1 tries). */
  maxRetries: z.number().int().min(0).max(10).default(2),
  /** Full-jitter exponential backoff between tries: random in [0, min(max, base × 2^(n-1))]. */
  backoff: z.object({ base: Duration.default(25), max: Duration.default(1000) }).prefault({}),
  /**
   * Retry budget per service (Finagle/gRPC style): retries may add at most `ratio` of the
   * requests, plus `minPerSecond` retries a second so low traffic can still retry.
   */
  retryBudget: z
    .object({ ratio: z.number().min(0).max(10).default(0.2), minPerSecond: z.number().min(0).default(10), window: Duration.default(10_000) })
    .prefault({}),
  /** Requests in flight per service, and how many more may wait for a slot. */
  concurrency: z.object({ limit: z.number().int().min(1).default(1000), queue: z.number().int().min(0).default(1000) }).prefault({}),
  /**
   * Hedged requests (idempotent only): a second try to another instance when the first has
   * not answered after the observed quantile, if a concurrency slot is free, with hedges
   * capped at `maxExtraLoad` of the requests in the window.
   */
  hedge: z
    .object({
      enabled: z.boolean().default(false),
      quantile: z.number().gt(0).lt(1).default(0.95),
      maxExtraLoad: z.number().min(0).max(1).default(0.1),
      window: Duration.default(10_000),
      /** No hedge before this many latency samples. */
      minSamples: z.number().int().min(1).default(20),
      /** Bounds on the hedge delay. */
      minDelay: Duration.default(1),
      maxDelay: Duration.default(10_000),
    })
    .prefault({}),
  /** How long the first request to a service waits for its catalog snapshot. */
  snapshotTimeout: Duration.default(2000),
  /**
   * Timeout of one snapshot request (one page); a timed-out request is retried with backoff. Raise it
   * when many clients resync at once on a busy host, so answers already on their way are not wasted.
   */
  snapshotRequestTimeout: Duration.default(1000),
  /** How long createGateway waits for NATS before falling back to the last-known-good file. */
  connectTimeout: Duration.default(2000),
  /** Keep a copy of the mirror here (atomic rename, debounced) to route when NATS is unreachable at start. */
  lastKnownGoodFile: z.string().min(1).optional(),
  /** undici Pool per endpoint. */
  pool: z
    .object({
      connections: z.number().int().min(1).default(64),
      keepAliveTimeout: Duration.default(4000),
      connectTimeout: Duration.default(1000),
    })
    .prefault({}),
});

export type GatewayPolicyInput = z.input<typeof GatewayPolicy>;
export type GatewayPolicy = z.output<typeof GatewayPolicy> & {
  /** `deadline` was given, not the built-in default: then it is a deadline set, which travels upstream. */
  readonly deadlineSet: boolean;
};

export function parsePolicy(input: unknown): GatewayPolicy {
  const r = GatewayPolicy.safeParse(input);
  if (!r.success) throw new InvalidOptionsError(formatIssues(r.error));
  const given = typeof input === "object" && input !== null && (input as { deadline?: unknown }).deadline !== undefined;
  return { ...r.data, deadlineSet: given };
}
