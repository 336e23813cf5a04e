import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { backoffDelay, DEFAULT_BACKOFF } from "../../src/core/backoff.js";
import { RetryBudget } from "../../src/core/retry-budget.js";
import { failedBeforeSending, isIdempotent, isRetryable, shouldRetry } from "../../src/core/retry-policy.js";
import { SlidingCounter } from "../../src/core/sliding-counter.js";
import type { Outcome } from "../../src/core/types.js";
import { seeded } from "./fixtures.js";

describe("sliding counter", () => {
  test("sliding counter - counts within the window and forgets slot by slot", () => {
    const c = new SlidingCounter(1000, 10);
    c.add(0, 5);
    c.add(450, 3);
    assert.equal(c.total(999), 8);
    assert.equal(c.total(1000), 3); // slot 0 left the window
    assert.equal(c.total(1450), 0);
    c.add(5000);
    assert.equal(c.total(5000), 1);
    c.add(4000); // a clock that went backwards counts in the newest slot
    assert.equal(c.total(5000), 2);
  });
});

describe("retry budget", () => {
  test("retry budget - the reserve allows minRetriesPerSecond × window with no traffic", () => {
    const b = new RetryBudget({ ratio: 0.2, windowMs: 10_000, minRetriesPerSecond: 10 });
    let spent = 0;
    while (b.trySpend(0)) spent++;
    assert.equal(spent, 100);
  });

  test("retry budget - a full outage: retries stay at ratio × requests + reserve", () => {
    const b = new RetryBudget();
    let requests = 0;
    let retries = 0;
    // 1,000 requests/s for 30 s, every try failing, each request wanting 3 retries.
    for (let ms = 0; ms < 30_000; ms++) {
      b.recordRequest(ms);
      requests++;
      for (let k = 0; k < 3; k++) if (b.trySpend(ms)) retries++;
    }
    // Over 30 s: 3 windows of (0.2 × 10,000 + 100) at most.
    assert.ok(retries <= 3 * (0.2 * 10_000 + 100) + 100, `retries ${retries}`);
    assert.ok(retries / requests > 0.18 && retries / requests < 0.25, `ratio ${retries / requests}`);
  });

  test("retry budget - recovers once the window slides past the spent retries", () => {
    const b = new RetryBudget({ ratio: 0, windowMs: 1000, minRetriesPerSecond: 2 });
    assert.ok(b.trySpend(0));
    assert.ok(b.trySpend(0));
    assert.ok(!b.trySpend(500));
    assert.ok(b.trySpend(1000));
  });

  test("retry budget - bad options are a RangeError", () => {
    assert.throws(() => new RetryBudget({ windowMs: 0 }), RangeError);
    assert.throws(() => new RetryBudget({ ratio: -1 }), RangeError);
  });
});

describe("backoff", () => {
  test("backoff - full jitter below min(cap, base × 2^(attempt-1))", () => {
    const r = seeded(200);
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** (attempt - 1));
      let max = 0;
      for (let i = 0; i < 2000; i++) {
        const d = backoffDelay(attempt, r);
        assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d}`);
        max = Math.max(max, d);
      }
      assert.ok(max > ceiling * 0.9, `attempt ${attempt} never came near its ceiling`);
    }
    assert.equal(backoffDelay(1, () => 0.999999), 24);
    assert.equal(backoffDelay(100, () => 0.5), 500);
  });
});

describe("retry policy", () => {
  const f = (reason: "refused" | "connect" | "reset" | "timeout" | "status" | "other", statusCode?: number): Outcome => ({ kind: "failure", reason, latencyMs: 1, statusCode });

  test("retry policy - idempotent methods, and the caller's word wins", () => {
    for (const m of ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "get"]) assert.equal(isIdempotent(m), true, m);
    for (const m of ["POST", "PATCH", "CONNECT"]) assert.equal(isIdempotent(m), false, m);
    assert.equal(isIdempotent("POST", true), true);
    assert.equal(isIdempotent("GET", false), false);
  });

  test("retry policy - retryable outcomes", () => {
    for (const r of ["refused", "connect", "reset", "timeout"] as const) assert.equal(isRetryable(f(r)), true, r);
    for (const s of [502, 503, 504]) assert.equal(isRetryable(f("status", s)), true, String(s));
    for (const s of [500, 404, 429]) assert.equal(isRetryable(f("status", s)), false, String(s));
    assert.equal(isRetryable(f("status")), false);
    assert.equal(isRetryable(f("other")), false);
    assert.equal(isRetryable({ kind: "success", latencyMs: 1 }), false);
    assert.equal(isRetryable({ kind: "cancelled", latencyMs: 1 }), false);
  });

  test("retry policy - a non-idempotent request retries only failures before sending", () => {
    assert.equal(failedBeforeSending(f("refused")), true);
    assert.equal(shouldRetry(f("refused"), false), true);
    assert.equal(shouldRetry(f("connect"), false), true);
    assert.equal(shouldRetry(f("reset"), false), false);
    assert.equal(shouldRetry(f("status", 503), false), false);
    assert.equal(shouldRetry(f("reset"), true), true);
  });
});
