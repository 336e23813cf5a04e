// PolicyRuntimes: a runtime per service that follows the policy mirror (fed here from a
// last-known-good copy, no NATS needed: the real PolicyMirror object).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PolicyMirror } from "../../src/adapters/policy-mirror.js";
import { PolicyRuntimes } from "../../src/adapters/policy-runtimes.js";
import { toEndpoint } from "../../src/core/index.js";
import { headerLookup } from "../../src/core/policy/index.js";
import { inst, seeded } from "./fixtures.js";

const defaults = { balancer: "p2c-peak-ewma" as const, tryTimeout: 2000, deadline: 10_000, deadlineSet: false, maxRetries: 2 };

describe("policy runtimes", () => {
  it("policy runtimes - gateway options until a policy is known, then the policy's, field by field", () => {
    const mirror = new PolicyMirror();
    const changed: string[] = [];
    const rts = new PolicyRuntimes(mirror, defaults, seeded(1), (s) => changed.push(s));
    try {
      const before = rts.inForce("orders");
      assert.deepEqual([before.known, before.tryTimeoutMs, before.revision], [false, 2000, 0]);
      const rt = rts.get("orders");
      mirror.loadLastKnownGood([{ service: "orders", revision: 4, policy: { subsets: { v2: { tags: ["v2"] } }, routes: [{ match: { headers: { "x-v": "2" } }, subset: "v2" }], timeouts: { try: "300ms" } } }]);
      assert.deepEqual(changed, ["orders"]);
      assert.equal(rts.get("orders"), rt, "the same runtime, updated in place");
      const now = rts.inForce("orders");
      assert.deepEqual([now.known, now.fromLastKnownGood, now.tryTimeoutMs, now.deadlineMs, now.revision], [true, true, 300, 10_000, 4]);
      rts.setEndpoints("orders", [inst("a", { tags: ["v1"] }), inst("b", { tags: ["v2"] })].map(toEndpoint));
      const plan = rt.plan({ method: "GET", path: "/", header: headerLookup({ "x-v": "2" }) }, () => true);
      assert.deepEqual([plan.subset, plan.via], ["v2", "route"]);
      assert.deepEqual(rt.members("v2").map((e) => e.id), ["b"]);
    } finally {
      rts.close();
      mirror.close();
    }
  });
});
