import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { BALANCER_NAMES } from "../../src/core/balancers/index.js";
import { ServiceBalancer } from "../../src/core/service-balancer.js";
import type { Outcome } from "../../src/core/types.js";
import { inst, seeded } from "./fixtures.js";

const status = fc.constantFrom("passing", "passing", "warning", "critical", "draining") as fc.Arbitrary<"passing" | "warning" | "critical" | "draining">;
const endpointsArb = fc.array(fc.record({ status, weight: fc.integer({ min: 1, max: 10_000 }), zone: fc.constantFrom("z1", "z2", undefined) }), {
  minLength: 1,
  maxLength: 12,
});
const outcomeArb: fc.Arbitrary<Outcome> = fc.oneof(
  fc.record({ kind: fc.constant("success" as const), latencyMs: fc.double({ min: 0, max: 1000, noNaN: true }) }),
  fc.record({
    kind: fc.constant("failure" as const),
    reason: fc.constantFrom("refused", "connect", "reset", "timeout", "status", "other") as fc.Arbitrary<"refused" | "connect" | "reset" | "timeout" | "status" | "other">,
    latencyMs: fc.double({ min: 0, max: 1000, noNaN: true }),
  }),
  fc.record({ kind: fc.constant("cancelled" as const), latencyMs: fc.double({ min: 0, max: 1000, noNaN: true }) }),
);

describe("service balancer - properties", () => {
  test("property - never a draining or excluded endpoint when another usable one exists", () => {
    fc.assert(
      fc.property(
        endpointsArb,
        fc.constantFrom(...BALANCER_NAMES),
        fc.constantFrom("z1", undefined),
        fc.array(fc.nat(11), { maxLength: 4 }),
        fc.integer(),
        (eps, balancer, zone, excludeIdx, seed) => {
          const b = new ServiceBalancer({ balancer, zone }, seeded(seed));
          b.setInstances(
            eps.map((e, i) => inst(`e${i}`, e)),
            0,
          );
          const exclude = new Set(excludeIdx.map((i) => `e${i}`));
          const usableOther = eps.some((e, i) => (e.status === "passing" || e.status === "warning") && !exclude.has(`e${i}`));
          for (let k = 0; k < 20; k++) {
            const r = b.pick({ now: k, exclude, hashKey: `key${k}` });
            if (!r.ok) {
              assert.ok(eps.every((e) => e.status === "draining"), "failed although a non-draining endpoint exists");
              continue;
            }
            assert.notEqual(r.endpoint.status, "draining");
            if (usableOther) assert.ok(!exclude.has(r.endpoint.id), `picked excluded ${r.endpoint.id}`);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test("property - ejected endpoints never exceed max(1, floor(known × maxEjectedShare))", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.array(fc.tuple(fc.nat(9), outcomeArb, fc.integer({ min: 0, max: 3000 })), { maxLength: 200 }),
        (n, share, events) => {
          const b = new ServiceBalancer(
            { outlier: { consecutiveFailures: 2, baseEjectionMs: 500, maxEjectionMs: 2000, maxEjectedShare: share } },
            seeded(n),
          );
          b.setInstances(
            Array.from({ length: n }, (_, i) => inst(`e${i}`)),
            0,
          );
          const cap = Math.max(1, Math.floor(n * share));
          let now = 0;
          for (const [idx, outcome, dt] of events) {
            now += dt;
            const id = `e${idx % n}`;
            b.onStart(id, now);
            b.onResult(id, outcome, now);
            assert.ok(b.ejectedCount(now) <= cap, `ejected ${b.ejectedCount(now)} > cap ${cap}`);
            const r = b.pick({ now });
            assert.ok(r.ok, "a pick failed with no draining endpoint");
          }
          for (const s of b.stats(now)) assert.ok(s.inFlight >= 0);
        },
      ),
      { numRuns: 200 },
    );
  });
});
