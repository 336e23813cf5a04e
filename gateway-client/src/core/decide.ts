// What the request engine does after a try, as a pure function: both front-ends (request()
// and the undici dispatcher) run through it, so their retry semantics cannot drift. No clock
// of its own: `now` and the time left are passed in; the budget is the core's RetryBudget.
import type { Outcome } from "./types.js";
import { shouldRetry } from "./retry-policy.js";

/** What a request knows after one of its tries ended. */
export interface AfterTryInput {
  /** The try's outcome (a retryable status is a failure with `reason: "status"`). */
  readonly outcome: Outcome;
  /** The try produced a response (a status the caller could be given). */
  readonly hasResponse: boolean;
  readonly idempotent: boolean;
  /** Tries made so far, this one included. */
  readonly tries: number;
  /** Retries allowed after the first try (0 for a body that cannot be replayed). */
  readonly maxRetries: number;
  /** The request was aborted (caller, deadline, close()). */
  readonly aborted: boolean;
  /** ms left before the request's deadline. */
  readonly remainingMs: number;
}

export type StopReason =
  /** The try answered with something the caller gets as is (success, or a status not worth retrying). */
  | "answered"
  | "aborted"
  | "not-retryable"
  | "max-retries"
  /** The backoff before the next try would end past the deadline. */
  | "deadline"
  /** The service's retry budget refused the retry. */
  | "budget";

export type AfterTry =
  | { readonly action: "retry"; readonly backoffMs: number }
  /** No more tries: the caller gets the try's response when there is one, else an error for `why`. */
  | { readonly action: "stop"; readonly why: StopReason };

/** Anything that may refuse a retry (the core's RetryBudget); spending is the side effect of yes. */
export interface RetryGate {
  trySpend(now: number): boolean;
}

/**
 * The decision after a try: retry (on another instance, after `backoffMs`) or stop. The order
 * matters: the budget is asked last, so a retry that could not happen anyway (aborted, limit,
 * deadline) spends nothing; the deadline is judged against the backoff drawn for the retry.
 */
export function afterTry(input: AfterTryInput, budget: RetryGate, now: number, backoffMs: (retry: number) => number): AfterTry {
  const { outcome } = input;
  if (input.aborted) return { action: "stop", why: "aborted" };
  if (outcome.kind === "success") return { action: "stop", why: "answered" };
  if (!shouldRetry(outcome, input.idempotent)) return { action: "stop", why: input.hasResponse ? "answered" : "not-retryable" };
  if (input.tries > input.maxRetries) return { action: "stop", why: "max-retries" };
  const delay = backoffMs(input.tries);
  if (!(input.remainingMs > delay)) return { action: "stop", why: "deadline" };
  if (!budget.trySpend(now)) return { action: "stop", why: "budget" };
  return { action: "retry", backoffMs: delay };
}

/** A try's timer: the try timeout, or the request's deadline when that comes first (never extended then). */
export function tryTimer(tryTimeoutMs: number, remainingMs: number): { readonly timeoutMs: number; readonly deadlineBound: boolean } {
  return { timeoutMs: Math.max(1, Math.min(tryTimeoutMs, remainingMs)), deadlineBound: remainingMs <= tryTimeoutMs };
}

export type HedgeRefusal = "aborted" | "no-slot" | "no-other-instance" | "load-cap";

/**
 * When the hedge delay has passed and the first try has not answered: send a second try to
 * another instance, or not (and why). `allowed` is asked last because yes counts the hedge
 * against the extra-load cap (the core's HedgePolicy.shouldHedge).
 */
export function hedgeNow(input: { readonly aborted: boolean; readonly slotFree: boolean; readonly otherInstance: boolean }, allowed: () => boolean): { readonly hedge: true } | { readonly hedge: false; readonly why: HedgeRefusal } {
  if (input.aborted) return { hedge: false, why: "aborted" };
  if (!input.slotFree) return { hedge: false, why: "no-slot" };
  if (!input.otherInstance) return { hedge: false, why: "no-other-instance" };
  if (!allowed()) return { hedge: false, why: "load-cap" };
  return { hedge: true };
}

/**
 * The deadline the caller set for a request (ms from its start): its own, else a valid incoming
 * deadline header; undefined when it set none (the gateway's deadline applies). Only a deadline
 * that was set travels upstream in the deadline header, as gRPC sends `grpc-timeout` only for a
 * deadline the caller gave.
 */
export function callerDeadline(own: number | undefined, header: string | string[] | undefined): number | undefined {
  if (own !== undefined) return own;
  if (header !== undefined) {
    const n = Number(header);
    if (n > 0 && Number.isFinite(n)) return n;
  }
  return undefined;
}
