import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Balancer, Candidate } from "../../src/core/balancers/index.js";
import { BALANCER_NAMES, createBalancer, RingHashBalancer } from "../../src/core/balancers/index.js";
import { resolveBalancerOptions, toEndpoint } from "../../src/core/service-balancer.js";
import { inst, seeded } from "./fixtures.js";

function candidates(weights: readonly number[], load: { inFlight: number; ewma?: number }[] = []): Candidate[] {
  return weights.map((w, i) => {
    const l = load[i] ?? { inFlight: 0 };
    return {
      endpoint: toEndpoint(inst(`e${i}`, { weight: Math.max(1, Math.round(w)) })),
      weight: w,
      load: { inFlight: l.inFlight, ewmaMs: () => l.ewma },
    };
  });
}

function shares(b: Balancer, n: number, key?: (i: number) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const c = b.pick({ now: 0, hashKey: key?.(i) });
    assert.ok(c);
    m.set(c.endpoint.id, (m.get(c.endpoint.id) ?? 0) + 1);
  }
  for (const [k, v] of m) m.set(k, v / n);
  return m;
}

const ringOptions = resolveBalancerOptions().ringHash;

describe("balancers - weights", () => {
  const weights = [100, 200, 300, 400];
  for (const name of ["round-robin", "random", "ring-hash"] as const) {
    test(`${name} - shares are proportional to weights`, () => {
      const b = createBalancer(name, ringOptions, seeded(100));
      b.update(candidates(weights));
      const s = shares(b, 40_000, (i) => `key-${i}`);
      weights.forEach((w, i) => {
        const got = s.get(`e${i}`) ?? 0;
        const tolerance = name === "ring-hash" ? 0.03 : 0.01;
        assert.ok(Math.abs(got - w / 1000) < tolerance, `${name} e${i}: ${got} vs ${w / 1000}`);
      });
    });
  }

  test("round-robin - smooth: weights 5,1,1 never serve the light ones back to back", () => {
    const b = createBalancer("round-robin", ringOptions, seeded(101));
    b.update(candidates([5, 1, 1]));
    const seq: string[] = [];
    for (let i = 0; i < 70; i++) seq.push(b.pick({ now: 0 })!.endpoint.id);
    for (let start = 0; start + 7 <= 70; start += 7) {
      const window = seq.slice(start, start + 7);
      assert.equal(window.filter((x) => x === "e0").length, 5, `window ${window.join(",")}`);
    }
    for (let i = 1; i < seq.length; i++) assert.ok(!(seq[i] !== "e0" && seq[i - 1] !== "e0"), `${seq.join(",")}`);
  });

  test("round-robin - equal weights visit every endpoint once per cycle", () => {
    const b = createBalancer("round-robin", ringOptions, seeded(102));
    b.update(candidates([1, 1, 1, 1, 1]));
    for (let cycle = 0; cycle < 10; cycle++) {
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) seen.add(b.pick({ now: 0 })!.endpoint.id);
      assert.equal(seen.size, 5);
    }
  });

  test("p2c peak-ewma - with equal load, weights divide the cost: the heavier endpoint wins its comparisons", () => {
    const b = createBalancer("p2c-peak-ewma", ringOptions, seeded(103));
    b.update(candidates([100, 300], [{ inFlight: 1, ewma: 5 }, { inFlight: 1, ewma: 5 }]));
    assert.equal(shares(b, 1000).get("e1"), 1);
  });

  test("least-request - at equal load, shares are proportional to weights", () => {
    const b = createBalancer("least-request", ringOptions, seeded(109));
    b.update(candidates([100, 200, 300, 400]));
    const s = shares(b, 40_000);
    [100, 200, 300, 400].forEach((w, i) => assert.ok(Math.abs(s.get(`e${i}`)! - w / 1000) < 0.01, `e${i} ${s.get(`e${i}`)}`));
  });

  test("least-request - fewer requests in flight wins over weight", () => {
    const b = createBalancer("least-request", ringOptions, seeded(110));
    b.update(candidates([100, 300], [{ inFlight: 0 }, { inFlight: 4 }]));
    const s = shares(b, 10_000);
    // e1 wins only when drawn twice: (3/4)² of the time.
    assert.ok(Math.abs(s.get("e1")! - 0.5625) < 0.02, `${s.get("e1")}`);
  });

  test("p2c peak-ewma - cost is latency × (in-flight + 1): a slow idle endpoint loses to a fast busy one", () => {
    const b = createBalancer("p2c-peak-ewma", ringOptions, seeded(104));
    b.update(candidates([100, 100], [{ inFlight: 0, ewma: 100 }, { inFlight: 5, ewma: 2 }]));
    assert.equal(shares(b, 500).get("e1"), 1);
  });

  test("p2c peak-ewma - an unseeded endpoint is probed while idle, then held to one request at a time", () => {
    const b = createBalancer("p2c-peak-ewma", ringOptions, seeded(105));
    b.update(candidates([100, 100], [{ inFlight: 0 }, { inFlight: 3, ewma: 1 }]));
    assert.equal(shares(b, 100).get("e0"), 1);
    b.update(candidates([100, 100], [{ inFlight: 1 }, { inFlight: 3, ewma: 1 }]));
    assert.equal(shares(b, 100).get("e1"), 1);
  });

  test("p2c - many endpoints: every one gets picked and none dominates", () => {
    const b = createBalancer("least-request", ringOptions, seeded(106));
    b.update(candidates(Array.from({ length: 50 }, () => 100)));
    const s = shares(b, 50_000);
    assert.equal(s.size, 50);
    for (const v of s.values()) assert.ok(v > 0.01 && v < 0.03);
  });

  test("empty candidate set - every balancer returns undefined", () => {
    for (const name of BALANCER_NAMES) {
      const b = createBalancer(name, ringOptions, seeded(107));
      b.update([]);
      assert.equal(b.pick({ now: 0, hashKey: "k" }), undefined, name);
    }
  });

  test("allowed - nothing allowed returns undefined, one allowed returns it", () => {
    for (const name of BALANCER_NAMES) {
      const b = createBalancer(name, ringOptions, seeded(108));
      b.update(candidates([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
      assert.equal(b.pick({ now: 0, hashKey: "k" }, () => false), undefined, name);
      for (let i = 0; i < 50; i++) assert.equal(b.pick({ now: 0, hashKey: `k${i}` }, (c) => c.endpoint.id === "e7")?.endpoint.id, "e7", name);
    }
  });
});

describe("balancers - ring hash", () => {
  const N = 10;
  const KEYS = 20_000;
  const owners = (b: Balancer) => Array.from({ length: KEYS }, (_, i) => b.pick({ now: 0, hashKey: `user-${i}` })!.endpoint.id);

  test("ring hash - the same key always lands on the same endpoint, across instances of the balancer", () => {
    const a = new RingHashBalancer(ringOptions, seeded(1));
    const b = new RingHashBalancer(ringOptions, seeded(2));
    a.update(candidates(Array(N).fill(100)));
    b.update(candidates(Array(N).fill(100)).reverse());
    assert.deepEqual(owners(a), owners(b));
  });

  test("ring hash - removing one of N endpoints moves about 1/N of the keys, all of them its own", () => {
    const b = new RingHashBalancer(ringOptions, seeded(3));
    const all = candidates(Array(N).fill(100));
    b.update(all);
    const before = owners(b);
    b.update(all.filter((c) => c.endpoint.id !== "e3"));
    const after = owners(b);
    let moved = 0;
    for (let i = 0; i < KEYS; i++) {
      if (before[i] !== after[i]) {
        moved++;
        assert.equal(before[i], "e3", `key ${i} moved from ${before[i]} to ${after[i]}`);
      }
    }
    const share = moved / KEYS;
    assert.ok(Math.abs(share - 1 / N) < 0.04, `moved ${share}`);
    // And adding it back restores the original mapping exactly.
    b.update(all);
    assert.deepEqual(owners(b), before);
  });

  test("ring hash - a ring patched from the previous one (few endpoints changed) is the ring built from scratch", () => {
    const ringOf = (x: RingHashBalancer) => (x as unknown as { ring: Float64Array }).ring;
    for (const options of [ringOptions, { virtualNodes: 40, maxRingSize: 3000 }]) {
      const rnd = seeded(77);
      const patched = new RingHashBalancer(options, seeded(5));
      let list = candidates(Array.from({ length: 60 }, () => 100));
      let next = list.length;
      for (let step = 0; step < 150; step++) {
        const r = rnd();
        const at = Math.floor(rnd() * list.length);
        if (r < 0.35) list = list.filter((_, i) => i !== at); // a health flip out
        else if (r < 0.7 || list.length < 5) {
          // one in (a new endpoint, or one back), at any place
          const c = candidates([100 * (1 + Math.floor(rnd() * 3))])[0]!;
          const added = { ...c, endpoint: { ...c.endpoint, id: `n${next++}` } };
          list = [...list.slice(0, at), added, ...list.slice(at)];
        } else if (r < 0.85) {
          // a weight change: its points change
          list = list.map((c, i) => (i === at ? { ...c, endpoint: { ...c.endpoint, weight: 50 + Math.floor(rnd() * 200) } } : c));
        } else if (r < 0.95) list = [...list].reverse(); // every owner number changes
        else list = list.filter(() => rnd() < 0.5); // half of the ring goes (possibly all of it)
        patched.update(list);
        const fresh = new RingHashBalancer(options, seeded(5));
        fresh.update(list);
        assert.deepEqual(ringOf(patched), ringOf(fresh), `step ${step}`);
        for (let k = 0; k < 50; k++) assert.equal(patched.pick({ now: 0, hashKey: `s${step}k${k}` })?.endpoint.id, fresh.pick({ now: 0, hashKey: `s${step}k${k}` })?.endpoint.id);
      }
    }
  });

  test("ring hash - an excluded owner walks to the next endpoint on the ring, deterministically", () => {
    const b = new RingHashBalancer(ringOptions, seeded(4));
    b.update(candidates(Array(N).fill(100)));
    for (let i = 0; i < 100; i++) {
      const first = b.pick({ now: 0, hashKey: `k${i}` })!.endpoint.id;
      const retry1 = b.pick({ now: 0, hashKey: `k${i}` }, (c) => c.endpoint.id !== first)!.endpoint.id;
      const retry2 = b.pick({ now: 0, hashKey: `k${i}` }, (c) => c.endpoint.id !== first)!.endpoint.id;
      assert.notEqual(retry1, first);
      assert.equal(retry1, retry2);
    }
  });

  test("ring hash - ring size follows virtualNodes × weight / 100 and respects maxRingSize", () => {
    const small = new RingHashBalancer({ virtualNodes: 4, maxRingSize: 1000 }, seeded(5));
    small.update(candidates([100, 100]));
    const capped = new RingHashBalancer({ virtualNodes: 160, maxRingSize: 64 }, seeded(6));
    capped.update(candidates(Array(8).fill(100)));
    const s = shares(capped, 4000, (i) => `k${i}`);
    assert.equal(s.size, 8);
    const few = shares(small, 400, (i) => `k${i}`);
    assert.equal(few.size, 2);
  });
});
