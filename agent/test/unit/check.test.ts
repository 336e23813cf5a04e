import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { applyResult, checkState, initialCheck, truncateOutput, type CheckResult } from "../../src/core/check.js";

const P: CheckResult = { status: "passing", output: "HTTP 200" };
const W: CheckResult = { status: "warning", output: "HTTP 429" };
const C: CheckResult = { status: "critical", output: "HTTP 503" };

function mk(rise = 1, fall = 2, type: "http" | "ttl" = "http") {
  return initialCheck({ id: "c", type, successBeforePassing: rise, failuresBeforeCritical: fall }, 1000);
}

describe("check thresholds", () => {
  it("check - starts critical, like Consul, with a 'not checked yet' output", () => {
    const c = mk();
    assert.equal(c.status, "critical");
    assert.equal(c.since, 1000);
    assert.equal(c.output, "not checked yet");
    assert.equal(mk(1, 1, "ttl").output, "no TTL report yet");
  });

  it("check - one passing result flips to passing when rise is 1", () => {
    const c = mk();
    assert.equal(applyResult(c, P, 2000), true);
    assert.equal(c.status, "passing");
    assert.equal(c.since, 2000);
    assert.equal(c.output, "HTTP 200");
  });

  it("check - rise 3 needs three consecutive passes; a failure restarts the count", () => {
    const c = mk(3, 1);
    assert.equal(applyResult(c, P, 1), false);
    assert.equal(applyResult(c, P, 2), false);
    assert.equal(applyResult(c, C, 3), false);
    assert.equal(applyResult(c, P, 4), false);
    assert.equal(applyResult(c, P, 5), false);
    assert.equal(c.status, "critical");
    assert.equal(applyResult(c, P, 6), true);
    assert.equal(c.status, "passing");
    assert.equal(c.since, 6);
  });

  it("check - fall 2: one failure keeps passing, the second flips to critical", () => {
    const c = mk(1, 2);
    applyResult(c, P, 1);
    assert.equal(applyResult(c, C, 2), false);
    assert.equal(c.status, "passing");
    assert.equal(c.output, "HTTP 503", "output follows the latest result even without a flip");
    assert.equal(applyResult(c, C, 3), true);
    assert.equal(c.status, "critical");
    assert.equal(c.since, 3);
  });

  it("check - a pass between failures resets the failure count", () => {
    const c = mk(1, 2);
    applyResult(c, P, 1);
    applyResult(c, C, 2);
    applyResult(c, P, 3);
    assert.equal(applyResult(c, C, 4), false);
    assert.equal(c.status, "passing");
    assert.equal(c.since, 1);
  });

  it("check - leaving passing takes the status of the last failure (warning)", () => {
    const c = mk(1, 2);
    applyResult(c, P, 1);
    applyResult(c, C, 2);
    assert.equal(applyResult(c, W, 3), true);
    assert.equal(c.status, "warning");
  });

  it("check - once unhealthy, warning and critical follow each result at once", () => {
    const c = mk(1, 3);
    assert.equal(applyResult(c, W, 1), true, "initial critical → warning at once");
    assert.equal(c.status, "warning");
    assert.equal(applyResult(c, C, 2), true);
    assert.equal(c.status, "critical");
    assert.equal(applyResult(c, C, 3), false);
    assert.equal(c.since, 2);
  });

  it("check - fall 1 flips on the first failure", () => {
    const c = mk(1, 1);
    applyResult(c, P, 1);
    assert.equal(applyResult(c, W, 2), true);
    assert.equal(c.status, "warning");
  });

  it("check - output is truncated to its last 1024 characters", () => {
    const c = mk();
    applyResult(c, { status: "passing", output: "a".repeat(2000) + "END" }, 1);
    assert.equal(c.output.length, 1024);
    assert.ok(c.output.endsWith("END"));
    assert.equal(truncateOutput("abc", 2), "bc");
  });

  it("check - wire state omits an empty output", () => {
    const c = mk();
    applyResult(c, { status: "passing" }, 5);
    assert.deepEqual(checkState(c), { id: "c", type: "http", status: "passing", since: 5 });
  });

  it("check - property: status only changes with a flip, and passing needs `rise` passes in a row", () => {
    const result = fc.constantFrom(P, W, C);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.array(result, { maxLength: 40 }), (rise, fall, results) => {
        const c = mk(rise, fall);
        let run = 0;
        let t = 0;
        for (const r of results) {
          const before = c.status;
          t += 1;
          const flipped = applyResult(c, r, t);
          run = r.status === "passing" ? run + 1 : 0;
          assert.equal(flipped, before !== c.status);
          if (flipped) assert.equal(c.since, t);
          if (c.status === "passing" && before !== "passing") assert.ok(run >= rise);
          if (before === "passing" && c.status !== "passing") assert.ok(c.consecutiveFailures >= fall);
        }
      }),
    );
  });
});
