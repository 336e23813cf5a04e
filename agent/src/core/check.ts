import type { CheckState, CheckStatus, CheckType } from "roster-schemas";
import { LIMITS } from "roster-schemas";

/** What one run of a check (or one TTL report, or a TTL expiry) says. */
export interface CheckResult {
  status: CheckStatus;
  output?: string;
}

/**
 * A check's rise/fall state. Like Consul: every check starts `critical` ("not checked yet"),
 * TTL checks included (critical until their first report). A check becomes `passing` after
 * `successBeforePassing` consecutive passing results, and leaves `passing` after
 * `failuresBeforeCritical` consecutive non-passing results, taking the status of the last one
 * (warning or critical). Once out of `passing`, a non-passing result moves it between warning
 * and critical at once: flap damping only guards the way into and out of passing.
 */
export interface CheckRuntime {
  readonly id: string;
  readonly type: CheckType;
  readonly successBeforePassing: number;
  readonly failuresBeforeCritical: number;
  status: CheckStatus;
  output: string;
  /** When the check entered `status` (epoch ms). */
  since: number;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  /** When the last result arrived (0 = never). */
  lastResultAt: number;
}

export const INITIAL_OUTPUT: Record<CheckType, string> = {
  http: "not checked yet",
  tcp: "not checked yet",
  exec: "not checked yet",
  ttl: "no TTL report yet",
};

export function initialCheck(
  spec: { id: string; type: CheckType; successBeforePassing: number; failuresBeforeCritical: number },
  now: number,
): CheckRuntime {
  return {
    id: spec.id,
    type: spec.type,
    successBeforePassing: Math.max(1, spec.successBeforePassing),
    failuresBeforeCritical: Math.max(1, spec.failuresBeforeCritical),
    status: "critical",
    output: INITIAL_OUTPUT[spec.type],
    since: now,
    consecutiveSuccesses: 0,
    consecutiveFailures: 0,
    lastResultAt: 0,
  };
}

/** Keeps the last `max` characters (the end of a log is the interesting part). */
export function truncateOutput(text: string, max: number = LIMITS.maxCheckOutputLength): string {
  return text.length <= max ? text : text.slice(text.length - max);
}

/**
 * Feeds one result to the machine. Mutates `check`; returns true when its status flipped
 * (that is the edge the agent publishes as a `health` message).
 */
export function applyResult(check: CheckRuntime, result: CheckResult, now: number): boolean {
  check.lastResultAt = now;
  check.output = truncateOutput(result.output ?? "");
  let next: CheckStatus = check.status;
  if (result.status === "passing") {
    check.consecutiveSuccesses += 1;
    check.consecutiveFailures = 0;
    if (check.status !== "passing" && check.consecutiveSuccesses >= check.successBeforePassing) next = "passing";
  } else {
    check.consecutiveFailures += 1;
    check.consecutiveSuccesses = 0;
    if (check.status !== "passing" || check.consecutiveFailures >= check.failuresBeforeCritical) next = result.status;
  }
  if (next === check.status) return false;
  check.status = next;
  check.since = now;
  return true;
}

/** The wire form of a check's state. */
export function checkState(check: CheckRuntime): CheckState {
  const s: CheckState = { id: check.id, type: check.type, status: check.status, since: check.since };
  if (check.output) s.output = check.output;
  return s;
}
