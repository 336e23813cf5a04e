import type { Outcome } from "./types.js";

/** RFC 9110 §9.2.2 idempotent methods (TRACE included). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** Status codes that say "this upstream could not handle it; another may" (Envoy's gateway-error / retriable-status). */
const RETRYABLE_STATUS = new Set([502, 503, 504]);

/**
 * Whether a request may be sent twice. An explicit answer from the caller wins (true makes
 * a POST retryable; false makes even a GET single-shot); otherwise the method decides.
 */
export function isIdempotent(method: string, explicit?: boolean): boolean {
  if (explicit !== undefined) return explicit;
  if (method === "GET") return true; // the common case, without a toUpperCase copy
  return IDEMPOTENT.has(method.toUpperCase());
}

/**
 * Whether an outcome is worth another try on another endpoint: connection errors
 * (refused, connect, reset), timeouts, and 502/503/504. Other statuses are the
 * application's answer and are returned as they are; a cancelled try never retries.
 */
export function isRetryable(outcome: Outcome): boolean {
  if (outcome.kind !== "failure") return false;
  switch (outcome.reason) {
    case "refused":
    case "connect":
    case "reset":
    case "timeout":
      return true;
    case "status":
      return outcome.statusCode !== undefined && RETRYABLE_STATUS.has(outcome.statusCode);
    case "other":
      return false;
  }
}

/** True when the request never reached the application (safe to retry whatever the method). */
export function failedBeforeSending(outcome: Outcome): boolean {
  return outcome.kind === "failure" && (outcome.reason === "refused" || outcome.reason === "connect");
}

/**
 * The whole decision for one failed try: retryable outcome, and either idempotent or a
 * failure that happened before the request was sent. (The budget and the attempt limit
 * are checked by the caller.)
 */
export function shouldRetry(outcome: Outcome, idempotent: boolean): boolean {
  return isRetryable(outcome) && (idempotent || failedBeforeSending(outcome));
}
