// Errors of the traffic policy (docs/traffic-policy.md): requests refused by this process before
// they are sent. Listed in ERROR_CODES (errors.ts) and README.md like every other code.
import { RosterError } from "roster-schemas";

/** Adaptive throttling (policy `throttle`) rejected the request locally: the upstream refuses much of what it gets. */
export class ThrottledError extends RosterError {
  readonly service: string;
  readonly rejectProbability: number;
  constructor(service: string, rejectProbability: number) {
    super("ROSTER_THROTTLED", `request to "${service}" rejected locally by adaptive throttling (the upstream refuses much of what it gets; reject probability ${rejectProbability.toFixed(2)})`);
    this.service = service;
    this.rejectProbability = rejectProbability;
  }
}

/** The policy's rate limit (`rateLimit`, a token bucket per caller process and service) is spent. */
export class LocalRateLimitedError extends RosterError {
  readonly service: string;
  readonly retryAfterMs: number;
  constructor(service: string, perSecond: number, retryAfterMs: number) {
    super("ROSTER_LOCAL_RATE_LIMITED", `request to "${service}" over this process's rate limit of ${perSecond}/s (a token in ${retryAfterMs}ms)`);
    this.service = service;
    this.retryAfterMs = retryAfterMs;
  }
}
