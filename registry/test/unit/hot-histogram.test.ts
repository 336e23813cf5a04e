import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Histogram, Registry } from "prom-client";
import { HotHistogram } from "../../src/adapters/hot-histogram.js";

const BUCKETS = [0.001, 0.005, 0.01, 0.5, 1];

/** The same name, help, buckets and values on a prom-client Histogram and a HotHistogram, each on its own registry. */
function both(values: number[], defaultLabels?: Record<string, string>) {
  const reference = new Registry();
  const hot = new Registry();
  if (defaultLabels) {
    reference.setDefaultLabels(defaultLabels);
    hot.setDefaultLabels(defaultLabels);
  }
  const h = new Histogram({ name: "lag_seconds", help: "a lag", buckets: BUCKETS, registers: [reference] });
  const mine = new HotHistogram("lag_seconds", "a lag", BUCKETS, [hot]);
  for (const v of values) {
    h.observe(v);
    mine.observe(v);
  }
  return { reference, hot, mine };
}

describe("hot histogram", () => {
  it("hot-histogram - scrapes exactly as prom-client's Histogram: empty, on the bounds, between, above the last, with default labels", async () => {
    for (const values of [[], [0, 0.001, 0.0010001, 0.005, 0.7, 1, 3, 1e9, 0.002, 0.002]]) {
      for (const labels of [undefined, { registry: "r1" }]) {
        const { reference, hot } = both(values, labels);
        assert.equal(await hot.metrics(), await reference.metrics());
        // The JSON form too, but for prom-client's exemplar slots (null: none recorded; we keep none).
        const json = async (r: Registry) => JSON.parse(JSON.stringify(await r.getMetricsAsJSON(), (k, v: unknown) => (k === "exemplar" ? undefined : v))) as unknown;
        assert.deepEqual(await json(hot), await json(reference));
      }
    }
  });

  it("hot-histogram - reset (the registry's resetMetrics) starts from zero, every series still there", async () => {
    // prom-client's own Histogram drops its series on reset until the next observation; a scrape
    // that keeps them at 0 is what rate() over a restart expects, and nothing here resets anyway.
    const { hot, mine } = both([0.3, 2]);
    hot.resetMetrics();
    const text = await hot.metrics();
    assert.match(text, /lag_seconds_count 0\n/);
    assert.match(text, /lag_seconds_bucket\{le="\+Inf"\} 0\n/);
    mine.observe(0.004);
    assert.match(await hot.metrics(), /lag_seconds_bucket\{le="0.005"\} 1\nlag_seconds_bucket\{le="0.01"\} 1\n/);
  });
});
