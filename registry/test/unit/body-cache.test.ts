import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BodyCache } from "../../src/adapters/http/body-cache.js";

describe("BodyCache", () => {
  it("encodes once per (service, revision, variant) and again when the revision moves", () => {
    const cache = new BodyCache();
    let builds = 0;
    const build = (v: unknown) => () => {
      builds++;
      return v;
    };
    const a = cache.get("orders", 5, "passing", build([{ id: "a" }]));
    assert.equal(a.toString(), '[{"id":"a"}]');
    assert.equal(cache.get("orders", 5, "passing", build(["other"])), a);
    assert.equal(builds, 1);
    assert.equal(cache.get("orders", 5, "any", build([])).toString(), "[]");
    assert.equal(builds, 2);
    assert.equal(cache.get("orders", 6, "passing", build([{ id: "b" }])).toString(), '[{"id":"b"}]');
    assert.equal(builds, 3);
    // The old revision's variants are gone with it.
    cache.get("orders", 6, "any", build(["x"]));
    assert.equal(builds, 4);
  });

  it("keeps at most maxVariants bodies per service and still answers past the cap", () => {
    const cache = new BodyCache(2);
    let builds = 0;
    const build = () => {
      builds++;
      return [builds];
    };
    cache.get("s", 1, "v1", build);
    cache.get("s", 1, "v2", build);
    assert.equal(cache.get("s", 1, "v3", build).toString(), "[3]");
    assert.equal(cache.get("s", 1, "v3", build).toString(), "[4]");
    assert.equal(cache.get("s", 1, "v1", build).toString(), "[1]");
    assert.equal(cache.size, 1);
  });
});
