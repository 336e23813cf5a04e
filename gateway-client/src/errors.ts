// Every error the gateway client throws. Codes are stable and listed in README.md
// ("Errors"); the lower error, when there is one, is in `cause`.
import { RosterError } from "roster-schemas";
import type { NoHealthyReasons } from "./core/types.js";

export { RosterError };

/** Nothing in the catalog can serve the request right now (every instance ejected, draining, critical...). */
export class NoHealthyUpstreamError extends RosterError {
  readonly service: string;
  readonly revision: number;
  readonly reasons: NoHealthyReasons;
  constructor(service: string, revision: number, reasons: NoHealthyReasons, options?: { cause?: unknown }) {
    const parts = Object.entries(reasons)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`)
      .join(", ");
    super(
      "ROSTER_NO_HEALTHY_UPSTREAM",
      `no healthy upstream for service "${service}" at catalog revision ${revision} (${parts || "no instances"})`,
      options,
    );
    this.service = service;
    this.revision = revision;
    this.reasons = reasons;
  }
}

/** The first snapshot of a service did not arrive within `snapshotTimeout` (and no last-known-good copy exists). */
export class SnapshotTimeoutError extends RosterError {
  readonly service: string;
  readonly timeoutMs: number;
  constructor(service: string, timeoutMs: number, options?: { cause?: unknown }) {
    super("ROSTER_SNAPSHOT_TIMEOUT", `no catalog snapshot for service "${service}" within ${timeoutMs}ms`, options);
    this.service = service;
    this.timeoutMs = timeoutMs;
  }
}

/** The registry answered that it has never seen this service. */
export class UnknownServiceError extends RosterError {
  readonly service: string;
  readonly revision: number;
  constructor(service: string, revision: number) {
    super("ROSTER_UNKNOWN_SERVICE", `service "${service}" is not in the catalog (revision ${revision})`);
    this.service = service;
    this.revision = revision;
  }
}

/** The overall deadline of a request passed before any try succeeded. */
export class DeadlineExceededError extends RosterError {
  readonly service: string;
  readonly deadlineMs: number;
  readonly tries: number;
  constructor(service: string, deadlineMs: number, tries: number, options?: { cause?: unknown }) {
    super("ROSTER_DEADLINE_EXCEEDED", `request to "${service}" exceeded its ${deadlineMs}ms deadline after ${tries} tries`, options);
    this.service = service;
    this.deadlineMs = deadlineMs;
    this.tries = tries;
  }
}

/** One try took longer than the per-try timeout (the try was aborted). */
export class TryTimeoutError extends RosterError {
  readonly service: string;
  readonly endpointId: string;
  readonly timeoutMs: number;
  constructor(service: string, endpointId: string, timeoutMs: number) {
    super("ROSTER_TRY_TIMEOUT", `try to "${service}" instance ${endpointId} timed out after ${timeoutMs}ms`);
    this.service = service;
    this.endpointId = endpointId;
    this.timeoutMs = timeoutMs;
  }
}

/** The last try failed at the connection level and no retry was allowed or left. */
export class UpstreamError extends RosterError {
  readonly service: string;
  readonly endpointId: string;
  readonly reason: string;
  readonly tries: number;
  constructor(service: string, endpointId: string, reason: string, tries: number, options?: { cause?: unknown }) {
    const lower = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    super("ROSTER_UPSTREAM_FAILED", `request to "${service}" instance ${endpointId} failed (${reason}) after ${tries} tries${lower}`, options);
    this.service = service;
    this.endpointId = endpointId;
    this.reason = reason;
    this.tries = tries;
  }
}

/** The per-service concurrency cap is reached and its wait queue is full. */
export class QueueFullError extends RosterError {
  readonly service: string;
  constructor(service: string, limit: number, queue: number) {
    super("ROSTER_QUEUE_FULL", `service "${service}": ${limit} requests in flight and ${queue} queued (limits reached)`);
    this.service = service;
  }
}

/** A retry was needed but the retry budget of the service is spent; the last failure is in `cause`. */
export class RetryBudgetExhaustedError extends RosterError {
  readonly service: string;
  readonly tries: number;
  constructor(service: string, tries: number, options?: { cause?: unknown }) {
    super("ROSTER_RETRY_BUDGET_EXHAUSTED", `request to "${service}" failed and the retry budget is exhausted (${tries} tries)`, options);
    this.service = service;
    this.tries = tries;
  }
}

/** The caller's AbortSignal fired; its reason is in `cause`. */
export class RequestAbortedError extends RosterError {
  readonly service: string;
  constructor(service: string, options?: { cause?: unknown }) {
    super("ROSTER_ABORTED", `request to "${service}" was aborted by the caller`, options);
    this.service = service;
  }
}

/** The gateway is closed (or closing). */
export class GatewayClosedError extends RosterError {
  constructor() {
    super("ROSTER_CLOSED", "the gateway is closed");
  }
}

/** Options passed to createGateway() are invalid; `issues` are `path: problem` lines. */
export class InvalidOptionsError extends RosterError {
  readonly issues: string[];
  constructor(issues: string[]) {
    super("ROSTER_INVALID_OPTIONS", `invalid gateway options: ${issues.join("; ")}`);
    this.issues = issues;
  }
}

/** Every code above, for the README test (each code documented, each unique). */
export const ERROR_CODES = [
  "ROSTER_NO_HEALTHY_UPSTREAM",
  "ROSTER_SNAPSHOT_TIMEOUT",
  "ROSTER_UNKNOWN_SERVICE",
  "ROSTER_DEADLINE_EXCEEDED",
  "ROSTER_TRY_TIMEOUT",
  "ROSTER_UPSTREAM_FAILED",
  "ROSTER_QUEUE_FULL",
  "ROSTER_RETRY_BUDGET_EXHAUSTED",
  "ROSTER_ABORTED",
  "ROSTER_CLOSED",
  "ROSTER_INVALID_OPTIONS",
] as const;
