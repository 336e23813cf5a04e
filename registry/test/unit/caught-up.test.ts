import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CaughtUpClock } from "../../src/core/caught-up.js";

describe("caught-up clock", () => {
  it("caught-up - the time is the send time of the newest probe back, the minimum over paths", () => {
    const c = new CaughtUpClock({ paths: ["main", "bulk"] });
    assert.equal(c.caughtUpTo(), null);
    c.sent("main", "m1", 100);
    c.sent("bulk", "b1", 100);
    assert.equal(c.returned("main", "m1"), true);
    assert.equal(c.caughtUpTo(), null, "bulk has not come back: not caught up");
    assert.equal(c.judgeAt(150), null);
    c.returned("bulk", "b1");
    assert.equal(c.caughtUpTo(), 100);
    c.sent("main", "m2", 200);
    c.sent("bulk", "b2", 200);
    c.returned("main", "m2");
    assert.equal(c.caughtUpTo(), 100, "bulk is still behind at 100");
    c.returned("bulk", "b2");
    assert.equal(c.judgeAt(250), 200);
    assert.equal(c.judgeAt(150), 150, "never later than now");
  });

  it("caught-up - a newer probe back answers for older ones; an old one arriving late does not move the time back", () => {
    const c = new CaughtUpClock({ paths: ["main"] });
    c.sent("main", "a", 10);
    c.sent("main", "b", 20);
    c.sent("main", "c", 30);
    c.returned("main", "b");
    assert.equal(c.caughtUpTo(), 20);
    assert.equal(c.returned("main", "a"), false, "answered by b");
    c.returned("main", "c");
    assert.equal(c.caughtUpTo(), 30);
  });

  it("caught-up - unknown tokens and paths change nothing (a forged probe cannot move the clock)", () => {
    const c = new CaughtUpClock({ paths: ["main"] });
    c.sent("main", "secret", 10);
    assert.equal(c.returned("main", "guess"), false);
    assert.equal(c.returned("other", "secret"), false);
    assert.equal(c.caughtUpTo(), null);
    c.sent("nowhere", "x", 50);
    assert.equal(c.returned("nowhere", "x"), false);
  });

  it("caught-up - outstanding probes are bounded: the oldest are forgotten, a newer one still counts", () => {
    const c = new CaughtUpClock({ paths: ["main"], maxOutstanding: 3 });
    for (let i = 1; i <= 5; i++) c.sent("main", `p${i}`, i * 10);
    assert.equal(c.returned("main", "p1"), false, "forgotten");
    assert.equal(c.returned("main", "p4"), true);
    assert.equal(c.caughtUpTo(), 40);
  });
});
