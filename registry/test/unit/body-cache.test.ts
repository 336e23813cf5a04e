import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { BodyCache, PublicFragments } from "../../src/adapters/http/body-cache.js";
import { publicInstance } from "../../src/adapters/http/public-instance.js";

function record(id: string, status: CatalogInstance["status"] = "passing"): CatalogInstance {
  return { id, service: "orders", host: "h", address: "10.0.0.1", port: 80, tags: [], meta: {}, weight: 100, status, checks: [], epoch: 1, registeredAt: 1, updatedAt: 1 };
}

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

  it("PublicFragments - a body is the public instances sorted by id; after one change, one instance is encoded again", () => {
    const live = new Map<string, CatalogInstance>();
    for (let i = 999; i >= 0; i--) live.set(`i-${String(i).padStart(4, "0")}`, record(`i-${String(i).padStart(4, "0")}`));
    const f = new PublicFragments({ instancesOf: (s) => (s === "orders" ? live : undefined) });
    const all = JSON.parse(f.body("orders", () => true).toString()) as unknown[];
    assert.deepEqual(all, [...live.values()].sort((a, b) => a.id.localeCompare(b.id)).map(publicInstance));
    assert.equal(f.encodes, 1000);
    live.set("i-0500", record("i-0500", "critical"));
    const passing = JSON.parse(f.body("orders", (r) => r.status === "passing").toString()) as Array<{ id: string }>;
    assert.equal(f.encodes, 1001, "one change, one encode");
    assert.equal(passing.length, 999);
    assert.ok(!passing.some((i) => i.id === "i-0500"));
    live.delete("i-0001");
    assert.equal((JSON.parse(f.body("orders", () => true).toString()) as unknown[]).length, 999);
    assert.equal(f.encodes, 1001, "a delete encodes nothing");
    assert.equal(f.body("unknown", () => true).toString(), "[]");
  });
});
