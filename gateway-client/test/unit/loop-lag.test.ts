// How much time a try gets back when its timer fired late (the caller's loop was blocked).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LAG_FLOOR_MS, lagExtensionMs } from "../../src/core/loop-lag.js";
import { TryTimerEntry } from "../../src/adapters/timeouts.js";

class Try extends TryTimerEntry {
  constructor(
    ms: number,
    public left: number,
  ) {
    super();
    this.tqMs = ms;
  }
  deadlineLeft(): number {
    return this.left;
  }
  onTimeout(): void {}
}

describe("loop lag", () => {
  test("an on-time or slightly late timer: the timeout stands", () => {
    assert.equal(lagExtensionMs(250, 0, false), 0);
    assert.equal(lagExtensionMs(250, 5, false), 0);
    assert.equal(lagExtensionMs(250, 62, false), 0); // under a quarter of the timeout
    assert.equal(lagExtensionMs(20, LAG_FLOOR_MS - 1, false), 0); // short timeouts: the floor
    assert.equal(lagExtensionMs(250, NaN, false), 0);
  });

  test("a timer late by a quarter of its timeout or more: the stolen time, at most one more timeout, once", () => {
    assert.equal(lagExtensionMs(250, 63, false), 63);
    assert.equal(lagExtensionMs(250, 150.2, false), 151);
    assert.equal(lagExtensionMs(250, 900, false), 250);
    assert.equal(lagExtensionMs(20, LAG_FLOOR_MS, false), LAG_FLOOR_MS);
    assert.equal(lagExtensionMs(250, 150, true), 0);
    assert.equal(lagExtensionMs(0, 150, false), 0);
  });

  test("a try's extension never runs past the request's deadline, and a deadline is never extended", () => {
    const t = new Try(250, 1000);
    assert.equal(t.lagExtension(150), 150);
    assert.equal(t.deadlineBound, false);

    const near = new Try(250, 100.5);
    assert.equal(near.lagExtension(150), 101); // what is left, and from now on it is the deadline
    assert.equal(near.deadlineBound, true);
    assert.equal(near.lagExtension(150), 0);

    const past = new Try(250, 0.5);
    assert.equal(past.lagExtension(150), 0);
    assert.equal(past.deadlineBound, true);

    const bound = new Try(250, 1000);
    bound.deadlineBound = true;
    assert.equal(bound.lagExtension(150), 0);
  });
});
