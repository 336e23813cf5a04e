import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { HedgePolicy, LatencyTracker } from "../../src/core/hedge.js";
import { seeded } from "./fixtures.js";

describe("latency tracker", () => {
  test("latency tracker - p95 within 5 % of the truth", () => {
    const t = new LatencyTracker(10_000);
    const r = seeded(300);
    const samples: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const v = 1 + r() * 99; // uniform 1..100 ms
      samples.push(v);
      t.record(v, 0);
    }
    samples.sort((a, b) => a - b);
    const truth = samples[Math.ceil(0.95 * samples.length) - 1]!;
    const got = t.quantile(0.95, 0)!;
    assert.ok(Math.abs(got - truth) / truth < 0.06, `p95 ${got} vs ${truth}`);
  });

  test("latency tracker - forgets after two windows, follows a regime change", () => {
    const t = new LatencyTracker(1000);
    for (let i = 0; i < 100; i++) t.record(100, 0);
    assert.equal(t.count(1500), 100);
    for (let i = 0; i < 100; i++) t.record(5, 1500);
    assert.ok(t.quantile(0.5, 1500)! < 10);
    assert.equal(t.count(2000), 100);
    assert.ok(t.quantile(0.95, 2000)! < 10);
    assert.equal(t.count(4000), 0);
    assert.equal(t.quantile(0.95, 4000), undefined);
    t.record(-1, 4000);
    t.record(Number.NaN, 4000);
    assert.equal(t.count(4000), 0);
  });
});

describe("hedge policy", () => {
  test("hedge - no delay and no hedge before minSamples", () => {
    const h = new HedgePolicy({ minSamples: 10 });
    for (let i = 0; i < 9; i++) {
      h.recordRequest(0);
      h.recordLatency(10, 0);
    }
    assert.equal(h.hedgeDelayMs(0), undefined);
    assert.equal(h.shouldHedge(0), false);
    h.recordLatency(10, 0);
    assert.ok(h.hedgeDelayMs(0)! >= 10 && h.hedgeDelayMs(0)! < 11);
  });

  test("hedge - delay is the observed p95, clamped", () => {
    const h = new HedgePolicy({ minSamples: 1, maxDelayMs: 50, minDelayMs: 2 });
    for (let i = 0; i < 100; i++) h.recordLatency(i < 95 ? 1 : 500, 0);
    assert.equal(h.hedgeDelayMs(0), 2);
    for (let i = 0; i < 100; i++) h.recordLatency(500, 0);
    assert.equal(h.hedgeDelayMs(0), 50);
  });

  test("hedge - hedges never exceed maxExtraLoad of the requests in the window", () => {
    const h = new HedgePolicy({ maxExtraLoad: 0.1, windowMs: 1000, minSamples: 1 });
    h.recordLatency(1, 0);
    let hedges = 0;
    let requests = 0;
    for (let ms = 0; ms < 5000; ms++) {
      h.recordRequest(ms);
      h.recordLatency(1, ms);
      requests++;
      if (h.shouldHedge(ms)) hedges++; // every request wants a hedge
    }
    assert.ok(hedges <= 0.1 * requests + 1, `hedges ${hedges} of ${requests}`);
    assert.ok(hedges >= 0.08 * requests, `hedges ${hedges} of ${requests}`);
    assert.equal(new HedgePolicy({ maxExtraLoad: 0 }).shouldHedge(0), false);
  });

  test("hedge - bad options are a RangeError", () => {
    assert.throws(() => new HedgePolicy({ quantile: 1 }), RangeError);
    assert.throws(() => new HedgePolicy({ minDelayMs: 5, maxDelayMs: 1 }), RangeError);
  });
});
