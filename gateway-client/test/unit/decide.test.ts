// The engine's decision after a try (core/decide.ts), on an injected clock.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { afterTry, hedgeNow, callerDeadline, tryTimer, type AfterTryInput } from "../../src/core/decide.js";
import { RetryBudget } from "../../src/core/retry-budget.js";
import { backoffDelay } from "../../src/core/backoff.js";
import type { Outcome } from "../../src/core/types.js";

const refused: Outcome = { kind: "failure", reason: "refused", latencyMs: 1 };
const timeout: Outcome = { kind: "failure", reason: "timeout", latencyMs: 100 };
const reset: Outcome = { kind: "failure", reason: "reset", latencyMs: 5 };
const s503: Outcome = { kind: "failure", reason: "status", statusCode: 503, latencyMs: 2 };
const s500: Outcome = { kind: "failure", reason: "status", statusCode: 500, latencyMs: 2 };
const ok: Outcome = { kind: "success", latencyMs: 3 };
const cancelled: Outcome = { kind: "cancelled", latencyMs: 3 };

const base: AfterTryInput = { outcome: refused, hasResponse: false, idempotent: true, tries: 1, maxRetries: 2, aborted: false, remainingMs: 10_000 };
const always = { trySpend: () => true };
const never = { trySpend: () => false };
const fixed = (ms: number) => () => ms;

describe("decide", () => {
  test("decide - a success or a non-retryable status is answered", () => {
    assert.deepEqual(afterTry({ ...base, outcome: ok, hasResponse: true }, always, 0, fixed(10)), { action: "stop", why: "answered" });
    assert.deepEqual(afterTry({ ...base, outcome: s500, hasResponse: true }, always, 0, fixed(10)), { action: "stop", why: "answered" });
  });

  test("decide - refused retries for any method, reset and timeout only when idempotent", () => {
    assert.deepEqual(afterTry({ ...base, idempotent: false }, always, 0, fixed(7)), { action: "retry", backoffMs: 7 });
    assert.deepEqual(afterTry({ ...base, outcome: reset, idempotent: false }, always, 0, fixed(7)), { action: "stop", why: "not-retryable" });
    assert.deepEqual(afterTry({ ...base, outcome: timeout }, always, 0, fixed(7)), { action: "retry", backoffMs: 7 });
    // A retryable status on a POST is returned to the caller as it is.
    assert.deepEqual(afterTry({ ...base, outcome: s503, hasResponse: true, idempotent: false }, always, 0, fixed(7)), { action: "stop", why: "answered" });
  });

  test("decide - a cancelled try and an aborted request stop", () => {
    assert.deepEqual(afterTry({ ...base, outcome: cancelled }, always, 0, fixed(1)), { action: "stop", why: "not-retryable" });
    assert.deepEqual(afterTry({ ...base, aborted: true }, always, 0, fixed(1)), { action: "stop", why: "aborted" });
  });

  test("decide - the retry limit counts tries, including the first", () => {
    assert.equal(afterTry({ ...base, tries: 2, maxRetries: 2 }, always, 0, fixed(1)).action, "retry");
    assert.deepEqual(afterTry({ ...base, tries: 3, maxRetries: 2 }, always, 0, fixed(1)), { action: "stop", why: "max-retries" });
    assert.deepEqual(afterTry({ ...base, tries: 1, maxRetries: 0 }, always, 0, fixed(1)), { action: "stop", why: "max-retries" });
  });

  test("decide - a backoff that would end past the deadline stops without spending the budget", () => {
    let spent = 0;
    const counting = { trySpend: () => (spent++, true) };
    assert.deepEqual(afterTry({ ...base, remainingMs: 50 }, counting, 0, fixed(50)), { action: "stop", why: "deadline" });
    assert.deepEqual(afterTry({ ...base, remainingMs: 0 }, counting, 0, fixed(0)), { action: "stop", why: "deadline" });
    assert.equal(spent, 0);
    assert.equal(afterTry({ ...base, remainingMs: 51 }, counting, 0, fixed(50)).action, "retry");
    assert.equal(spent, 1);
  });

  test("decide - the budget is asked last and its refusal stops", () => {
    assert.deepEqual(afterTry(base, never, 0, fixed(1)), { action: "stop", why: "budget" });
    assert.deepEqual(afterTry({ ...base, outcome: s503, hasResponse: true }, never, 0, fixed(1)), { action: "stop", why: "budget" });
  });

  test("decide - on an injected clock the budget refills as its window slides", () => {
    const budget = new RetryBudget({ ratio: 0, windowMs: 1000, minRetriesPerSecond: 2 });
    let now = 0;
    const decide = () => afterTry(base, budget, now, fixed(1)).action;
    assert.equal(decide(), "retry");
    assert.equal(decide(), "retry");
    now = 500;
    assert.equal(decide(), "stop");
    now = 1000;
    assert.equal(decide(), "retry");
  });

  test("decide - backoff is drawn for the retry number that follows (full jitter, capped)", () => {
    const seen: number[] = [];
    const backoff = (retry: number) => (seen.push(retry), backoffDelay(retry, () => 0.999, { baseMs: 25, capMs: 1000 }));
    const d1 = afterTry({ ...base, tries: 1, maxRetries: 10 }, always, 0, backoff);
    const d5 = afterTry({ ...base, tries: 8, maxRetries: 10 }, always, 0, backoff);
    assert.deepEqual(seen, [1, 8]);
    assert.deepEqual(d1, { action: "retry", backoffMs: 24 });
    assert.deepEqual(d5, { action: "retry", backoffMs: 999 });
  });

  test("decide - a try's timer is its timeout, or the deadline when that comes first", () => {
    assert.deepEqual(tryTimer(200, 1000), { timeoutMs: 200, deadlineBound: false });
    assert.deepEqual(tryTimer(200, 150), { timeoutMs: 150, deadlineBound: true });
    assert.deepEqual(tryTimer(200, 200), { timeoutMs: 200, deadlineBound: true });
    assert.deepEqual(tryTimer(200, -5), { timeoutMs: 1, deadlineBound: true });
  });

  test("decide - a hedge needs the request alive, a slot, another instance, then the load cap", () => {
    let asked = 0;
    const yes = () => (asked++, true);
    const alive = { aborted: false, slotFree: true, otherInstance: true };
    assert.deepEqual(hedgeNow({ ...alive, aborted: true }, yes), { hedge: false, why: "aborted" });
    assert.deepEqual(hedgeNow({ ...alive, slotFree: false }, yes), { hedge: false, why: "no-slot" });
    assert.deepEqual(hedgeNow({ ...alive, otherInstance: false }, yes), { hedge: false, why: "no-other-instance" });
    assert.equal(asked, 0, "the load cap is not charged for a hedge that cannot go");
    assert.deepEqual(hedgeNow(alive, () => false), { hedge: false, why: "load-cap" });
    assert.deepEqual(hedgeNow(alive, yes), { hedge: true });
  });

  test("decide - the caller's deadline: its own, else a valid incoming header, else none", () => {
    assert.equal(callerDeadline(300, "100"), 300);
    assert.equal(callerDeadline(undefined, "100"), 100);
    assert.equal(callerDeadline(undefined, "nope"), undefined);
    assert.equal(callerDeadline(undefined, "-3"), undefined);
    assert.equal(callerDeadline(undefined, "Infinity"), undefined);
    assert.equal(callerDeadline(undefined, undefined), undefined);
  });
});
