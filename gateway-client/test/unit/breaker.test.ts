import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CircuitBreaker } from "../../src/core/breaker.js";
import { PeakEwma } from "../../src/core/peak-ewma.js";

describe("circuit breaker", () => {
  test("breaker - closed → open after consecutive failures; a success resets the count", () => {
    const b = new CircuitBreaker({ failureThreshold: 3, openMs: 100, halfOpenProbes: 1 });
    b.onFailure(0);
    b.onFailure(0);
    b.onSuccess(0);
    b.onFailure(0);
    b.onFailure(0);
    assert.equal(b.state(0), "closed");
    assert.equal(b.onFailure(5), true);
    assert.equal(b.state(5), "open");
    assert.equal(b.allows(104), false);
    assert.equal(b.nextChangeAt(), 105);
    assert.equal(b.onFailure(50), false, "failures while open change nothing");
    assert.equal(b.state(105), "half-open");
    assert.equal(b.allows(105), true);
  });

  test("breaker - half-open admits halfOpenProbes, closes after as many successes", () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10, halfOpenProbes: 3 });
    b.onFailure(0);
    for (let i = 0; i < 2; i++) assert.equal(b.onStart(10), false);
    assert.equal(b.onStart(10), true, "third probe fills the slots");
    assert.equal(b.allows(10), false);
    assert.equal(b.onSuccess(11), false);
    assert.equal(b.onSuccess(11), false);
    assert.equal(b.onSuccess(12), true);
    assert.equal(b.state(12), "closed");
    assert.equal(b.onStart(12), false);
  });

  test("breaker - a failed probe reopens for openMs; a cancelled probe frees its slot", () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10, halfOpenProbes: 1 });
    b.onFailure(0);
    b.onStart(10);
    assert.equal(b.allows(10), false);
    assert.equal(b.onCancel(11), true);
    assert.equal(b.allows(11), true);
    b.onStart(11);
    assert.equal(b.onFailure(12), true);
    assert.equal(b.state(21), "open");
    assert.equal(b.state(22), "half-open");
  });

  test("breaker - failureThreshold 0 disables it", () => {
    const b = new CircuitBreaker({ failureThreshold: 0, openMs: 10, halfOpenProbes: 1 });
    for (let i = 0; i < 100; i++) b.onFailure(i);
    assert.equal(b.state(100), "closed");
    assert.equal(b.enabled, false);
  });
});

describe("peak ewma", () => {
  test("peak ewma - undefined until seeded, peaks at once, blends lower samples", () => {
    const e = new PeakEwma(1000);
    assert.equal(e.get(0), undefined);
    e.observe(10, 0);
    assert.equal(e.get(0), 10);
    e.observe(100, 0);
    assert.equal(e.get(0), 100);
    // A lower sample blends in with the weight of the time since the previous one.
    e.observe(10, 1000);
    const w = Math.exp(-1);
    assert.ok(Math.abs(e.get(1000)! - (100 * w + 10 * (1 - w))) < 1e-9);
    // Under steady traffic the estimate converges to the latency.
    for (let t = 1001; t < 20_000; t++) e.observe(10, t);
    assert.ok(Math.abs(e.get(20_000)! - 10) < 0.01);
  });

  test("peak ewma - decays towards zero while idle with time constant decayMs", () => {
    const e = new PeakEwma(1000);
    e.observe(100, 0);
    assert.ok(Math.abs(e.get(1000)! - 100 * Math.exp(-1)) < 1e-9);
    assert.ok(e.get(10_000)! < 0.01);
  });

  test("peak ewma - a cancelled try only raises the estimate", () => {
    const e = new PeakEwma(1000);
    e.observe(50, 0);
    e.observeAtLeast(10, 0);
    assert.equal(e.get(0), 50);
    e.observeAtLeast(80, 0);
    assert.equal(e.get(0), 80);
    const fresh = new PeakEwma(1000);
    fresh.observeAtLeast(5, 0);
    assert.equal(fresh.get(0), 5);
  });
});
