// Maps what undici and node:net throw to the core's failure reasons.
import type { Outcome } from "../core/types.js";

export type FailureReason = Extract<Outcome, { kind: "failure" }>["reason"];

const REFUSED = new Set(["ECONNREFUSED"]);
const CONNECT = new Set(["UND_ERR_CONNECT_TIMEOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EADDRNOTAVAIL", "ETIMEDOUT"]);
const RESET = new Set(["ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED", "ECONNABORTED"]);
const TIMEOUT = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

function codeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (REFUSED.has(code) || CONNECT.has(code) || RESET.has(code) || TIMEOUT.has(code))) return code;
    // AggregateError (happy eyeballs) carries the per-address errors.
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0) {
      const c = codeOf(inner[0]);
      if (c) return c;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The failure reason of an error thrown by a try (not for aborts: the caller knows why it aborted). */
export function classifyError(err: unknown): FailureReason {
  const code = codeOf(err);
  if (!code) return "other";
  if (REFUSED.has(code)) return "refused";
  if (CONNECT.has(code)) return "connect";
  if (RESET.has(code)) return "reset";
  return "timeout";
}

/** Statuses that say "this instance could not serve it, another may": retried (idempotent) and counted as failures. */
export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([502, 503, 504]);
