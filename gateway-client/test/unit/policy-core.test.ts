// The pure traffic-policy core: subsets, split, routes, affinity, throttling, rate limit,
// Retry-After, fallbacks, resolvePolicy and the per-service runtime. Injected clock and RNG.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Policy } from "roster-schemas";
import {
  AdaptiveThrottle,
  LoadSignals,
  ServicePolicyRuntime,
  StaleCache,
  SubsetIndex,
  SubsetSplitter,
  TokenBucket,
  affinityKey,
  cookieValue,
  headerLookup,
  isAccepted,
  matchRoute,
  parseRetryAfter,
  resolvePolicy,
  staleKey,
  staticFallback,
} from "../../src/core/policy/index.js";
import { toEndpoint } from "../../src/core/index.js";
import { inst, seeded, tally } from "./fixtures.js";

const gatewayDefaults = { balancer: "p2c-peak-ewma" as const, tryTimeout: 2000, deadline: 10_000, deadlineSet: false, maxRetries: 2 };
const policy = (doc: unknown) => Policy.parse(doc);

function shares(picks: Iterable<string | undefined>, n: number): Record<string, number> {
  const t = tally([...picks].map((s) => s ?? "none"));
  return Object.fromEntries([...t].map(([k, v]) => [k, (v / n) * 100]));
}

describe("policy core", () => {
  it("policy core - split honoured within ±1 point over 10,000 picks, for many seeds and splits", () => {
    const splits = [
      [{ subset: "a", weight: 95 }, { subset: "b", weight: 5 }],
      [{ subset: "a", weight: 50 }, { subset: "b", weight: 50 }],
      [{ subset: "a", weight: 0.6 }, { subset: "b", weight: 0.3 }, { subset: "c", weight: 0.1 }],
      [{ subset: "a", weight: 1 }, { subset: "b", weight: 1 }, { subset: "c", weight: 1 }],
    ];
    let worst = 0;
    for (const split of splits) {
      const total = split.reduce((a, e) => a + e.weight, 0);
      for (let seed = 1; seed <= 50; seed++) {
        const s = new SubsetSplitter(split, seeded(seed));
        const got = shares(Array.from({ length: 10_000 }, () => s.pick(() => true).subset), 10_000);
        for (const e of split) {
          const dev = Math.abs((got[e.subset] ?? 0) - (e.weight / total) * 100);
          worst = Math.max(worst, dev);
          assert.ok(dev <= 1, `split ${JSON.stringify(split)} seed ${seed}: ${e.subset} off by ${dev.toFixed(2)} points`);
        }
      }
    }
    // Far inside the promise (independent random draws: σ = 0.5 point at 50/50).
    assert.ok(worst < 0.2, `worst deviation ${worst.toFixed(3)} points`);
  });

  it("policy core - a subset with no usable instance gives its share to the rest, pro rata, and says so", () => {
    const s = new SubsetSplitter([{ subset: "a", weight: 60 }, { subset: "b", weight: 30 }, { subset: "c", weight: 10 }], seeded(7));
    const usable = (x: string) => x !== "b";
    const picks = Array.from({ length: 10_000 }, () => s.pick(usable));
    assert.ok(picks.every((p) => p.redistributed));
    const got = shares(picks.map((p) => p.subset), 10_000);
    assert.equal(got.b, undefined);
    assert.ok(Math.abs(got.a! - 85.714) <= 1 && Math.abs(got.c! - 14.286) <= 1, JSON.stringify(got));
    assert.deepEqual(s.pick(() => true).redistributed, false);
    // Blue/green 100/0 with blue down: green (weight 0) serves rather than nothing.
    const bg = new SubsetSplitter([{ subset: "blue", weight: 100 }, { subset: "green", weight: 0 }], seeded(1));
    assert.deepEqual(bg.pick((x) => x === "green"), { subset: "green", redistributed: true });
    assert.deepEqual(bg.pick(() => false), { subset: undefined, redistributed: true });
    assert.equal(shares(Array.from({ length: 1000 }, () => bg.pick(() => true).subset), 1000).blue, 100);
  });

  it("policy core - with an affinity key the subset is a function of the key, and the shares still hold", () => {
    const s = new SubsetSplitter([{ subset: "stable", weight: 90 }, { subset: "canary", weight: 10 }], seeded(3));
    const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
    const first = keys.map((k) => s.pick(() => true, k).subset);
    assert.deepEqual(keys.map((k) => s.pick(() => true, k).subset), first, "same key, same subset");
    const got = shares(first, 10_000);
    assert.ok(Math.abs(got.canary! - 10) <= 1, JSON.stringify(got));
  });

  it("policy core - subsets by tags and meta", () => {
    const eps = [inst("a", { tags: ["v1"] }), inst("b", { tags: ["v1", "eu"] }), inst("c", { meta: { version: "2.0.0" } })].map(toEndpoint);
    const idx = new SubsetIndex({ stable: { tags: ["v1"] }, eu: { tags: ["v1", "eu"] }, canary: { meta: { version: "2.0.0" } }, all: {} });
    idx.update(eps);
    assert.deepEqual(idx.members("stable").map((e) => e.id), ["a", "b"]);
    assert.deepEqual(idx.members("eu").map((e) => e.id), ["b"]);
    assert.deepEqual(idx.members("canary").map((e) => e.id), ["c"]);
    assert.equal(idx.members("all").length, 3);
    assert.deepEqual(idx.members("nope"), []);
    assert.deepEqual(idx.subsetsOf(eps[1]!), ["stable", "eu", "all"]);
  });

  it("policy core - a changed instance (a new object) is matched again; the unchanged ones keep their subsets", () => {
    const a = toEndpoint(inst("a", { tags: ["v1"] }));
    const b = toEndpoint(inst("b", { tags: ["v1"] }));
    const idx = new SubsetIndex({ stable: { tags: ["v1"] }, canary: { tags: ["v2"] } });
    idx.update([a, b]);
    assert.deepEqual([idx.members("stable").map((e) => e.id), idx.members("canary").map((e) => e.id)], [["a", "b"], []]);
    const b2 = toEndpoint(inst("b", { tags: ["v2"] })); // same id, retagged
    idx.update([a, b2]);
    assert.deepEqual([idx.members("stable").map((e) => e.id), idx.members("canary").map((e) => e.id)], [["a"], ["b"]]);
    idx.update([b2]);
    assert.deepEqual([idx.members("stable"), idx.members("canary")], [[], [b2]], "a gone instance leaves its subsets");
  });

  it("policy core - a policy update keeps the partition when the subsets are the same, redoes it when they change", () => {
    const doc = (canary: Record<string, unknown>, weight: number) =>
      policy({ subsets: { stable: { tags: ["v1"] }, canary }, split: [{ subset: "stable", weight: 100 - weight }, { subset: "canary", weight }] });
    const rt = new ServicePolicyRuntime(resolvePolicy(gatewayDefaults, doc({ tags: ["v2"] }, 5), 1), seeded(3));
    rt.setEndpoints([inst("a", { tags: ["v1"] }), inst("b", { tags: ["v2"] }), inst("c", { tags: ["v2"], meta: { zone: "eu" } })].map(toEndpoint));
    const canary = rt.members("canary");
    assert.deepEqual(canary.map((e) => e.id), ["b", "c"]);
    rt.update(resolvePolicy(gatewayDefaults, doc({ tags: ["v2"] }, 50), 2));
    assert.equal(rt.members("canary"), canary, "weights moved, subsets the same: the partition stands");
    assert.equal(rt.resolved.split?.[1]?.weight, 50);
    rt.update(resolvePolicy(gatewayDefaults, doc({ tags: ["v2"], meta: { zone: "eu" } }, 50), 3));
    assert.deepEqual(rt.members("canary").map((e) => e.id), ["c"], "new selector: partitioned again");
    assert.deepEqual(rt.members("stable").map((e) => e.id), ["a"]);
  });

  it("policy core - routes match headers, first match wins", () => {
    const routes = policy({
      subsets: { a: {}, b: {}, c: {} },
      routes: [
        { match: { headers: { "x-canary": "always" } }, subset: "a" },
        { match: { headers: { "x-user": { prefix: "test-" }, "x-beta": { present: true } } }, subset: "b" },
        { match: { headers: { "x-canary": { exact: "always" } } }, subset: "c" },
        { match: { headers: { "x-debug": { present: false } } }, subset: "c" },
      ],
    }).routes;
    assert.equal(matchRoute(routes, headerLookup({ "X-Canary": "always" }))?.subset, "a");
    assert.equal(matchRoute(routes, headerLookup(["x-user", "test-1", "x-beta", "1", "x-debug", "1"]))?.subset, "b");
    assert.equal(matchRoute(routes, headerLookup({ "x-user": "test-1", "x-debug": "1" })), undefined, "every condition must hold");
    assert.equal(matchRoute(routes, headerLookup({}))?.subset, "c");
    assert.equal(matchRoute(undefined, headerLookup({})), undefined);
    assert.equal(headerLookup(new Map([["X-A", "1"]]))("x-a"), "1");
    assert.equal(headerLookup({ "x-a": ["1", "2"] })("x-a"), "1");
  });

  it("policy core - affinity key from a header or a cookie", () => {
    assert.equal(affinityKey({ header: "x-user-id" }, headerLookup({ "x-user-id": "u42" })), "u42");
    assert.equal(affinityKey({ header: "x-user-id" }, headerLookup({})), undefined);
    assert.equal(affinityKey({ cookie: "session" }, headerLookup({ cookie: 'a=1; session="s-9"; b=2' })), "s-9");
    assert.equal(affinityKey({ cookie: "session" }, headerLookup({ cookie: "sessionx=1" })), undefined);
    assert.equal(affinityKey(undefined, headerLookup({ "x-user-id": "u" })), undefined);
    assert.equal(cookieValue("a=1;b=2", "b"), "2");
    assert.equal(affinityKey({ header: "x-k" }, headerLookup({ "x-k": "k".repeat(5000) }))!.length, 512);
  });

  it("policy core - adaptive throttling follows max(0, (requests − k·accepts) / (requests + 1))", () => {
    const t = new AdaptiveThrottle({ k: 2, windowMs: 10_000 });
    const rnd = seeded(11);
    let now = 0;
    // A healthy upstream: everything accepted, nothing rejected.
    for (let i = 0; i < 1000; i++) {
      assert.equal(t.shouldReject(now, rnd), false);
      t.accepted(now);
      now += 5;
    }
    assert.equal(t.rejectProbability(now), 0);
    // Offered 1,000/s to an upstream that takes 300/s and refuses the rest: at equilibrium
    // requests R = 1000/s, accepts A = 300/s, so p = (1000 − 600) / 1001 ≈ 0.4 rejected locally.
    now += 20_000; // a fresh window
    let rejected = 0;
    let sent = 0;
    let acceptedThisSecond = 0;
    const n = 30_000;
    for (let i = 0; i < n; i++) {
      if (now % 1000 === 0) acceptedThisSecond = 0;
      if (t.shouldReject(now, rnd)) rejected++;
      else {
        sent++;
        if (acceptedThisSecond < 300) {
          acceptedThisSecond++;
          t.accepted(now);
        }
      }
      now += 1;
    }
    const { requests, accepts } = t.counts(now);
    assert.ok(Math.abs(t.rejectProbability(now) - Math.max(0, (requests - 2 * accepts) / (requests + 1))) < 1e-9);
    assert.ok(rejected / n > 0.33 && rejected / n < 0.47, `rejected ${rejected / n}`);
    assert.ok(sent / (n / 1000) < 700, `sent ${sent / (n / 1000)}/s to an upstream that takes 300/s`);
    // k = 1 rejects sooner than k = 3.
    const feed = (k: number) => {
      const x = new AdaptiveThrottle({ k, windowMs: 10_000 });
      for (let i = 0; i < 100; i++) x.shouldReject(0, () => 1);
      for (let i = 0; i < 40; i++) x.accepted(0);
      return x.rejectProbability(0);
    };
    assert.ok(feed(1) > feed(2) && feed(2) > feed(3) && feed(3) === 0);
    assert.ok(isAccepted({ kind: "success" }) && !isAccepted({ kind: "failure", statusCode: 503 }) && !isAccepted({ kind: "failure", statusCode: 429 }));
    assert.ok(isAccepted({ kind: "failure", statusCode: 500 }) && !isAccepted({ kind: "failure" }));
  });

  it("policy core - token bucket: burst, then perSecond", () => {
    const b = new TokenBucket(10, 5);
    let ok = 0;
    for (let i = 0; i < 20; i++) if (b.take(1000)) ok++;
    assert.equal(ok, 5);
    assert.equal(b.waitMs(1000), 100);
    assert.equal(b.take(1050), false);
    assert.equal(b.take(1100), true);
    // One second later: 10 tokens earned, capped at the burst of 5.
    assert.equal(b.available(2100), 5);
    // Over 10 s at a steady offered 100/s, about 10/s go through.
    let passed = 0;
    for (let t = 3000; t < 13_000; t += 10) if (b.take(t)) passed++;
    assert.ok(passed >= 100 && passed <= 106, `passed ${passed}`);
  });

  it("policy core - Retry-After on 429/503 backs an instance off, capped and bounded", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("2", now), 2000);
    assert.equal(parseRetryAfter(" 120 ", now), 60_000, "capped");
    assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
    assert.equal(parseRetryAfter("Wed, 31 Dec 2025 00:00:05 GMT", now), 0);
    for (const bad of ["soon", "-1", "1.5", "", "99999999999", "1e3"]) assert.equal(parseRetryAfter(bad, now), undefined, bad);
    const s = new LoadSignals();
    assert.equal(s.note("i1", 503, "1", now), 1000);
    assert.equal(s.note("i2", 500, "1", now), undefined, "a 500 is no load signal");
    assert.equal(s.note("i3", 429, undefined, now), undefined, "no Retry-After, no back-off");
    assert.ok(s.backingOff("i1", now + 999) && !s.backingOff("i1", now + 1000));
    assert.ok(!s.backingOff("i2", now));
  });

  it("policy core - fallbacks: static, and a bounded stale cache of GETs within maxAge", () => {
    assert.equal(staticFallback(undefined), undefined);
    const st = staticFallback({ status: 503, body: "later", headers: { "retry-after": "2" } })!;
    assert.deepEqual([st.status, new TextDecoder().decode(st.body), st.headers["retry-after"], st.headers["x-roster-fallback"]], [503, "later", "2", "static"]);
    const c = new StaleCache({ maxAgeMs: 1000, maxEntries: 2, maxBodyBytes: 10 });
    const h = headerLookup({ authorization: "Bearer A" });
    const k = staleKey("GET", "/x?y=1", h)!;
    assert.equal(staleKey("POST", "/x", h), undefined);
    assert.notEqual(staleKey("GET", "/x?y=1", headerLookup({ authorization: "Bearer B" })), k, "one user's answer is not another's");
    assert.ok(c.cacheable(200, headerLookup({})) && !c.cacheable(500, headerLookup({})) && !c.cacheable(200, headerLookup({ "cache-control": "private, max-age=5" })) && !c.cacheable(200, headerLookup({}), 11));
    c.put(k, 200, { "content-type": "text/plain" }, new TextEncoder().encode("hello"), 0);
    const hit = c.get(k, 900)!;
    assert.deepEqual([hit.status, hit.headers["x-roster-fallback"], new TextDecoder().decode(hit.body), hit.ageMs], [200, "stale", "hello", 900]);
    assert.equal(c.get(k, 1001), undefined, "too old");
    assert.equal(c.put("big", 200, {}, new Uint8Array(11), 0), false);
    c.put("a", 200, {}, new Uint8Array(1), 0);
    c.put("b", 200, {}, new Uint8Array(1), 0);
    c.get("a", 1);
    c.put("c", 200, {}, new Uint8Array(1), 2);
    assert.deepEqual([c.size, c.get("b", 3), !!c.get("a", 3)], [2, undefined, true], "least recently used goes first");
  });

  it("policy core - resolvePolicy: the service policy overrides the gateway's options field by field", () => {
    const none = resolvePolicy(gatewayDefaults, null);
    assert.deepEqual([none.balancer, none.tryTimeoutMs, none.deadlineMs, none.maxRetries, none.revision, none.fromPolicy], ["p2c-peak-ewma", 2000, 10_000, 2, 0, []]);
    const p = resolvePolicy(gatewayDefaults, policy({ timeouts: { try: "500ms" }, retries: { max: 0 }, throttle: { adaptive: true }, rateLimit: { perSecond: 50 } }), 7);
    assert.deepEqual([p.balancer, p.tryTimeoutMs, p.deadlineMs, p.maxRetries, p.revision], ["p2c-peak-ewma", 500, 10_000, 0, 7]);
    assert.deepEqual(p.throttle, { k: 2, windowMs: 30_000 });
    assert.deepEqual(p.rateLimit, { perSecond: 50, burst: 50 });
    // A deadline travels upstream only when set: by the policy, or by the gateway's options.
    assert.deepEqual([none.deadlineSet, p.deadlineSet], [false, false]);
    const dl = resolvePolicy(gatewayDefaults, policy({ timeouts: { deadline: "1s" } }));
    assert.deepEqual([dl.deadlineMs, dl.deadlineSet], [1000, true]);
    assert.equal(resolvePolicy({ ...gatewayDefaults, deadlineSet: true }, null).deadlineSet, true);
    assert.deepEqual([...p.fromPolicy].sort(), ["rateLimit", "retries", "throttle", "timeouts"]);
    assert.equal(resolvePolicy(gatewayDefaults, policy({ affinity: { header: "x-u" } })).balancer, "ring-hash", "an affinity brings consistent hashing");
    assert.equal(resolvePolicy(gatewayDefaults, policy({ throttle: { adaptive: false } })).throttle, undefined);
  });

  it("policy core - runtime: routes before the split, redistribution, admission, fallback order", () => {
    const doc = policy({
      subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } },
      split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }],
      routes: [{ match: { headers: { "x-canary": "always" } }, subset: "canary" }],
      affinity: { header: "x-user-id" },
      rateLimit: { perSecond: 1, burst: 2 },
      fallback: { status: 503, body: "later", stale: { maxAge: "10s" } },
    });
    const rt = new ServicePolicyRuntime(resolvePolicy(gatewayDefaults, doc, 3), seeded(5));
    rt.setEndpoints([inst("s1", { tags: ["v1"] }), inst("c1", { tags: ["v2"] })].map(toEndpoint));
    assert.deepEqual(rt.members("canary").map((e) => e.id), ["c1"]);
    const req = (headers: Record<string, string>, path = "/x") => ({ method: "GET", path, header: headerLookup(headers) });
    const all = () => true;
    const routed = rt.plan(req({ "x-canary": "always", "x-user-id": "u1" }), all);
    assert.deepEqual([routed.subset, routed.via, routed.hashKey, routed.spill], ["canary", "route", "u1", ["stable"]]);
    // The routed subset cannot serve: the split decides, and says so.
    const moved = rt.plan(req({ "x-canary": "always" }), (s) => s === "stable");
    assert.deepEqual([moved.subset, moved.via, moved.redistributed], ["stable", "split", true]);
    assert.equal(rt.plan(req({}), () => false).nothingUsable, true);
    // Admission: burst 2, then rate limited with a wait.
    assert.deepEqual([rt.admit(0).ok, rt.admit(0).ok], [true, true]);
    assert.deepEqual(rt.admit(0), { ok: false, reason: "rate-limited", retryAfterMs: 1000 });
    // Fallback: static until a good answer is remembered, then stale for the same GET.
    assert.equal(rt.fallback(req({}), 0)?.kind, "static");
    const key = rt.staleKeyFor(req({}, "/x"), 200, 5)!;
    rt.remember(key, 200, {}, new TextEncoder().encode("hello"), 100);
    assert.equal(rt.fallback(req({}, "/x"), 5000)?.kind, "stale");
    assert.equal(rt.fallback(req({}, "/other"), 5000)?.kind, "static");
    assert.equal(rt.fallback(req({}, "/x"), 20_000)?.kind, "static", "older than maxAge");
    // Retry-After: that instance backs off.
    rt.onResult(0, "c1", { kind: "failure", statusCode: 429, retryAfter: "1" });
    assert.ok(rt.backingOff("c1", 500) && !rt.backingOff("c1", 1000));
    // A new policy keeps the bucket when its settings did not change.
    rt.update(resolvePolicy(gatewayDefaults, policy({ ...doc, timeouts: { try: 100 } }), 4));
    assert.equal(rt.admit(0).ok, false, "same bucket, still empty");
    rt.update(resolvePolicy(gatewayDefaults, null));
    assert.deepEqual(rt.plan(req({ "x-canary": "always" }), all).subset, undefined);
    assert.equal(rt.admit(0).ok, true);
    assert.equal(rt.fallback(req({}), 0), undefined, "no policy, no fallback: the error stands");
  });
});

describe("adaptive throttle in flight", () => {
  it("adaptive throttle - requests in flight do not count before they complete (no collapse at cold start)", () => {
    const rt = new ServicePolicyRuntime(resolvePolicy({ balancer: "p2c-peak-ewma", tryTimeout: 1000, deadline: 2000, deadlineSet: true, maxRetries: 2 }, { throttle: { adaptive: true } }, 1), () => 0.5);
    const now = 1_000_000;
    for (let i = 0; i < 32; i++) assert.equal(rt.admit(now).ok, true, `request ${i} of a burst in flight`);
    for (let i = 0; i < 32; i++) rt.onResult(now + 5, `e${i % 2}`, { kind: "success", statusCode: 200 });
    assert.equal(rt.admit(now + 6).ok, true);
    assert.equal(rt.throttleState(now + 6)!.rejectProbability, 0);
    // An upstream that refuses everything: rejections start once answers say so.
    for (let i = 0; i < 200; i++) if (rt.admit(now + 10).ok) rt.onResult(now + 10, "e0", { kind: "failure", statusCode: 503 });
    assert.ok(rt.counters.throttled > 50, `${rt.counters.throttled} throttled`);
  });
});
