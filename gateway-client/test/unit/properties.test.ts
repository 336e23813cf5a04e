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
  test("property - only usable endpoints, never a draining or excluded one when another usable one exists", () => {
    fc.assert(
      fc.property(
        endpointsArb,
        fc.constantFrom(...BALANCER_NAMES),
        fc.constantFrom("z1", undefined),
        fc.array(fc.nat(11), { maxLength: 4 }),
        fc.integer(),
        fc.array(fc.tuple(fc.nat(11), outcomeArb), { maxLength: 30 }),
        (eps, balancer, zone, excludeIdx, seed, events) => {
          const b = new ServiceBalancer({ balancer, zone, panicThreshold: 0 }, seeded(seed));
          b.setInstances(
            eps.map((e, i) => inst(`e${i}`, e)),
            0,
          );
          // Ejections and open breakers along the way; the property is about the usable rest.
          for (const [idx, outcome] of events) {
            b.onStart(`e${idx}`, 1);
            b.onResult(`e${idx}`, outcome, 1);
          }
          const exclude = new Set(excludeIdx.map((i) => `e${i}`));
          const usable = new Set(b.stats(2).filter((s) => (s.status === "passing" || s.status === "warning") && s.ejectedUntil === 0 && s.breaker !== "open").map((s) => s.id));
          const usableOther = [...usable].some((id) => !exclude.has(id));
          for (let k = 2; k < 22; k++) {
            const r = b.pick({ now: 2, exclude, hashKey: `key${k}` });
            if (usable.size > 0) assert.ok(r.ok, "no pick although an endpoint is usable");
            if (!r.ok) continue;
            assert.notEqual(r.endpoint.status, "draining");
            assert.ok(usable.has(r.endpoint.id), `picked unusable ${r.endpoint.id}`);
            if (usableOther) assert.ok(!exclude.has(r.endpoint.id), `picked excluded ${r.endpoint.id}`);
          }
        },
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 300) },
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
      { numRuns: Number(process.env.FC_RUNS ?? 200) },
    );
  });
});

describe("service balancer - panic property", () => {
  test("property - with panic on, a pick fails only when every endpoint is draining", () => {
    fc.assert(
      fc.property(endpointsArb, fc.constantFrom(...BALANCER_NAMES), fc.array(fc.tuple(fc.nat(11), outcomeArb), { maxLength: 30 }), (eps, balancer, events) => {
        const b = new ServiceBalancer({ balancer }, seeded(eps.length));
        b.setInstances(
          eps.map((e, i) => inst(`e${i}`, e)),
          0,
        );
        for (const [idx, outcome] of events) {
          b.onStart(`e${idx}`, 1);
          b.onResult(`e${idx}`, outcome, 1);
        }
        const r = b.pick({ now: 2, hashKey: "k" });
        assert.equal(r.ok, !eps.every((e) => e.status === "draining"));
        if (r.ok) assert.notEqual(r.endpoint.status, "draining");
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 300) },
    );
  });
});
