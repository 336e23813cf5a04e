// PolicyTraffic's subset balancers follow the service's instances and its policy: a health change
// reaches the subset of the changed instance, a policy change keeps (or rebuilds) what it must.
// The real PolicyMirror object, fed through its `change` event (no NATS needed).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Policy, type CatalogInstance } from "roster-schemas";
import { PolicyMirror, type PolicyView } from "../../src/adapters/policy-mirror.js";
import { PolicyTraffic } from "../../src/adapters/policy-traffic.js";
import { inst, seeded } from "./fixtures.js";

const defaults = { balancer: "p2c-peak-ewma" as const, tryTimeout: 2000, deadline: 10_000, deadlineSet: false, maxRetries: 2 };

function setup() {
  const mirror = new PolicyMirror();
  const traffic = new PolicyTraffic(mirror, defaults, {}, seeded(1), { redistributed: () => undefined }, undefined);
  let revision = 0;
  const setPolicy = (doc: unknown) => {
    const view: PolicyView = { service: "orders", revision: ++revision, policy: Policy.parse(doc), fromLastKnownGood: false };
    mirror.emit("change", "orders", view);
  };
  const usable = () => Object.fromEntries(traffic.inForce("orders").liveSplit.map((s) => [s.subset, s.usable]));
  return { mirror, traffic, setPolicy, usable };
}

const canary = (weight: number, selector: Record<string, unknown> = { tags: ["v2"] }) => ({
  subsets: { stable: { tags: ["v1"] }, canary: selector },
  split: [
    { subset: "stable", weight: 100 - weight },
    { subset: "canary", weight },
  ],
});

describe("policy traffic", () => {
  it("policy traffic - health changes reach the subset of the changed instance, across weight-only policy changes", () => {
    const { mirror, traffic, setPolicy, usable } = setup();
    try {
      let instances: CatalogInstance[] = [inst("a", { tags: ["v1"] }), inst("b", { tags: ["v2"] }), inst("c", { tags: ["v2"], meta: { zone: "eu" } })];
      const flip = (id: string, status: CatalogInstance["status"]) => {
        instances = instances.map((i) => (i.id === id ? { ...i, status } : i)); // the mirror: a new object for the changed one
        traffic.setInstances("orders", instances);
      };
      traffic.setInstances("orders", instances);
      setPolicy(canary(5));
      assert.deepEqual(usable(), { stable: true, canary: true });
      flip("b", "critical");
      assert.deepEqual(usable(), { stable: true, canary: true }, "c still serves the canary");
      flip("c", "critical");
      assert.deepEqual(usable(), { stable: true, canary: false });
      setPolicy(canary(50)); // weights only: the same subsets and balancers
      assert.deepEqual(usable(), { stable: true, canary: false }, "the canary's instances are still down");
      flip("c", "passing");
      assert.deepEqual(usable(), { stable: true, canary: true }, "a recovery after a weight-only change reaches the subset");
      flip("a", "critical");
      assert.deepEqual(usable(), { stable: false, canary: true });
      setPolicy(canary(50, { tags: ["v2"], meta: { zone: "us" } })); // a new selector: nobody in it
      assert.deepEqual(usable(), { stable: false, canary: false });
      setPolicy(canary(50, { meta: { zone: "eu" } }));
      assert.deepEqual(usable(), { stable: false, canary: true }, "c is the new canary");
      assert.deepEqual(traffic.inForce("orders").liveSplit.map((s) => s.share), [0, 1]);
    } finally {
      traffic.close();
      mirror.close();
    }
  });

  it("policy traffic - one instance at a time: the whole list is read again only when a policy needs it, and subsets follow", () => {
    const { mirror, traffic, setPolicy, usable } = setup();
    try {
      let instances: CatalogInstance[] = [inst("a", { tags: ["v1"] }), inst("b", { tags: ["v2"] })];
      let reads = 0;
      const all = () => {
        reads++;
        return instances;
      };
      const change = (next: CatalogInstance | undefined, id = next!.id) => {
        const before = instances.find((i) => i.id === id);
        instances = next ? (before ? instances.map((i) => (i.id === id ? next : i)) : [...instances, next]) : instances.filter((i) => i.id !== id);
        traffic.updateInstance("orders", { id, prevRevision: 0, revision: 0, before, after: next }, all);
      };
      traffic.setInstances("orders", instances);
      change(inst("b", { tags: ["v2"], status: "critical" }));
      change(inst("c", { tags: ["v2"] }));
      change(undefined, "a");
      assert.equal(reads, 0, "no policy with subsets: single changes never read the whole list");
      // A policy with subsets arrives: it partitions the instances as they are now (b down, c added, a gone).
      setPolicy(canary(10));
      assert.equal(reads, 1);
      assert.deepEqual(usable(), { stable: false, canary: true });
      // With subsets, a change may move an instance between them: placed from the whole list.
      change(inst("b", { tags: ["v1"] }));
      assert.equal(reads, 2);
      assert.deepEqual(usable(), { stable: true, canary: true }, "b moved to stable and serves");
      change(inst("c", { tags: ["v2"], status: "critical" }));
      assert.deepEqual(usable(), { stable: true, canary: false });
    } finally {
      traffic.close();
      mirror.close();
    }
  });
});
