import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AdaptiveTimeout } from "../../src/core/adaptive-timeout.js";

describe("adaptive timeout", () => {
  test("adaptive timeout - starts at the initial value and doubles on each timeout up to the cap", () => {
    const t = new AdaptiveTimeout({ initialMs: 1000, maxMs: 8000 });
    assert.equal(t.ms, 1000);
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      t.onTimeout();
      seen.push(t.ms);
    }
    assert.deepEqual(seen, [2000, 4000, 8000, 8000, 8000]);
  });

  test("adaptive timeout - answers bring it back to srtt + 4 rttvar, never below the initial value", () => {
    const t = new AdaptiveTimeout({ initialMs: 1000, maxMs: 8000 });
    t.onTimeout();
    t.onTimeout();
    assert.equal(t.ms, 4000);
    t.onAnswer(20); // a fast server: back to the floor at once
    assert.equal(t.ms, 1000);
    const slow = new AdaptiveTimeout({ initialMs: 1000, maxMs: 8000 });
    for (let i = 0; i < 50; i++) slow.onAnswer(1500 + (i % 2) * 200); // a slow-but-working server
    assert.ok(slow.ms > 1700 && slow.ms < 2500, `timeout ${slow.ms} follows a 1.5-1.7 s round trip`);
    slow.reset();
    assert.equal(slow.ms, 1000);
  });

  test("adaptive timeout - requests that timed out together double it once", () => {
    const t = new AdaptiveTimeout({ initialMs: 1000, maxMs: 8000 });
    const used = t.ms;
    t.onTimeout(used);
    t.onTimeout(used);
    t.onTimeout(used);
    assert.equal(t.ms, 2000);
  });

  test("adaptive timeout - rejects a cap below the initial value", () => {
    assert.throws(() => new AdaptiveTimeout({ initialMs: 1000, maxMs: 500 }), RangeError);
    assert.throws(() => new AdaptiveTimeout({ initialMs: 0, maxMs: 500 }), RangeError);
  });
});
