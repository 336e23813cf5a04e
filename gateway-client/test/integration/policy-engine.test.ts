// Traffic policies in the request engine, end to end: a real registry (PUT /v1/services/:name/policy),
// a real nats-server, real HTTP instances, and both front-ends (request() and fetch with the
// gateway's dispatcher).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "roster-registry";
import { createGateway, type Gateway } from "../../src/index.js";
import { FakeAgent, Upstream, registration, silent, startRegistry } from "./helpers.js";

describe("policy engine", () => {
  let nats: NatsServer;
  let registry: Registry;
  const cleanups: Array<() => Promise<void>> = [];
  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url);
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await registry?.close();
    await nats?.close();
  });

  async function putPolicy(service: string, body: unknown): Promise<number> {
    const res = await fetch(`${registry.url}/v1/services/${service}/policy`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { revision: number }).revision;
  }

  /** Instances of `service`: `spec` maps a name prefix to [count, tags]. */
  async function deploy(service: string, spec: Record<string, [number, string[]]>): Promise<Map<string, Upstream[]>> {
    const out = new Map<string, Upstream[]>();
    const regs = [];
    for (const [prefix, [n, tags]] of Object.entries(spec)) {
      const ups = await Promise.all(Array.from({ length: n }, (_, i) => Upstream.start(`${service}-${prefix}${i}`)));
      cleanups.push(async () => void (await Promise.all(ups.map((u) => u.close()))));
      out.set(prefix, ups);
      for (const u of ups) regs.push(registration(service, u.name, u.port, { tags }));
    }
    // Heartbeats every 2 s: on a loaded machine 200 ms ones arrive late and mark instances critical.
    const agent = await FakeAgent.connect(nats.url, `host-${service}`, 2000);
    cleanups.push(() => agent.close());
    await agent.register(regs);
    return out;
  }

  async function gateway(service: string, count: number, revision: number): Promise<Gateway> {
    const gw = await createGateway({ nats: nats.url, services: [service], logger: silent, backoff: { base: 1, max: 5 } });
    cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === count && gw.policy(service).revision === revision, { timeoutMs: 5000, what: "instances and policy" });
    return gw;
  }

  const via = {
    request: async (gw: Gateway, service: string, headers: Record<string, string> = {}) => {
      const res = await gw.request(service, { path: "/", headers });
      const text = await res.body.text();
      return { status: res.statusCode, upstream: res.headers["x-upstream"] as string | undefined, fallback: res.headers["x-roster-fallback"] as string | undefined, text };
    },
    fetch: async (gw: Gateway, service: string, headers: Record<string, string> = {}) => {
      const res = await fetch(`http://${service}/`, { dispatcher: gw.dispatcher, headers });
      const text = await res.text();
      return { status: res.status, upstream: res.headers.get("x-upstream") ?? undefined, fallback: res.headers.get("x-roster-fallback") ?? undefined, text };
    },
  };

  test("policy engine - a 95/5 split holds within a point over 2,000 requests through request() and fetch", async () => {
    await deploy("split", { s: [2, ["v1"]], c: [1, ["v2"]] });
    const rev = await putPolicy("split", { subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } }, split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }] });
    const gw = await gateway("split", 3, rev);
    for (const front of ["request", "fetch"] as const) {
      let canary = 0;
      const N = 2000;
      for (let i = 0; i < N; i += 50) {
        const batch = await Promise.all(Array.from({ length: 50 }, () => via[front](gw, "split")));
        for (const r of batch) {
          assert.equal(r.status, 200);
          if (r.upstream?.startsWith("split-c")) canary++;
        }
      }
      const share = (100 * canary) / N;
      assert.ok(Math.abs(share - 5) <= 1, `${front}: canary share ${share}% (want 5 ± 1) ${JSON.stringify(gw.policy("split").counters)} ${JSON.stringify(gw.stats("split"))}`);
    }
    const split = gw.policy("split").liveSplit;
    assert.deepEqual(split.map((s) => [s.subset, Math.round(s.configured * 100)]), [["stable", 95], ["canary", 5]]);
  });

  test("policy engine - a subset with no usable instance gives its share to the rest of the split (event, metric), never no healthy upstream", async () => {
    const ups = await deploy("redis", { s: [2, ["v1"]], c: [1, ["v2"]] });
    const rev = await putPolicy("redis", { subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } }, split: [{ subset: "stable", weight: 50 }, { subset: "canary", weight: 50 }] });
    const gw = await createGateway({ nats: nats.url, services: ["redis"], logger: silent, metrics: true, name: "redis-test" });
    cleanups.push(() => gw.close());
    await waitFor(() => gw.instances("redis").length === 3 && gw.policy("redis").revision === rev, { timeoutMs: 5000, what: "instances and policy" });
    const events: string[] = [];
    gw.on("redistributed", (service, wanted) => events.push(`${service}:${wanted}`));
    await ups.get("c")![0]!.kill();
    for (let i = 0; i < 60; i++) {
      const r = await (i % 2 ? via.fetch : via.request)(gw, "redis");
      assert.equal(r.status, 200);
      assert.match(r.upstream!, /^redis-s/);
    }
    assert.ok(events.length >= 20, `${events.length} redistribution events`);
    assert.deepEqual(gw.policy("redis").liveSplit.map((s) => [s.subset, s.share, s.usable]), [["stable", 1, true], ["canary", 0, false]]);
    const text = await gw.metrics!.metrics();
    const m = /roster_gateway_policy_events_total\{gateway="redis-test",service="redis",kind="redistributed"\} (\d+)/.exec(text);
    assert.ok(m && Number(m[1]) === gw.policy("redis").counters.redistributed && Number(m[1]) >= 20, text.split("\n").filter((l) => l.includes("policy_events")).join("\n"));
  });

  test("policy engine - blue/green: 100/0 flipped to 0/100 by PUT and back, header route wins over the split", async () => {
    await deploy("bg", { blue: [2, ["blue"]], green: [2, ["green"]] });
    const subsets = { blue: { tags: ["blue"] }, green: { tags: ["green"] } };
    const routes = [{ match: { headers: { "x-canary": "always" } }, subset: "green" }];
    const put = (b: number, g: number) => putPolicy("bg", { subsets, routes, split: [{ subset: "blue", weight: b }, { subset: "green", weight: g }] });
    const gw = await gateway("bg", 4, await put(100, 0));
    const sides = async (front: "request" | "fetch", headers?: Record<string, string>) => {
      const rs = await Promise.all(Array.from({ length: 40 }, () => via[front](gw, "bg", headers)));
      return new Set(rs.map((r) => r.upstream?.replace(/\d+$/, "")));
    };
    assert.deepEqual(await sides("request"), new Set(["bg-blue"]));
    assert.deepEqual(await sides("fetch", { "x-canary": "always" }), new Set(["bg-green"]));
    const flipped = await put(0, 100);
    await waitFor(() => gw.policy("bg").revision === flipped, { what: "the flip" });
    assert.deepEqual(await sides("fetch"), new Set(["bg-green"]));
    assert.deepEqual(await sides("request"), new Set(["bg-green"]));
    const back = await put(100, 0);
    await waitFor(() => gw.policy("bg").revision === back, { what: "the roll-back" });
    assert.deepEqual(await sides("request"), new Set(["bg-blue"]));
    assert.deepEqual(await sides("fetch"), new Set(["bg-blue"]));
  });

  test("policy engine - a failing canary: a retry leaves the subset only when it has no other usable instance; a fallback answers when nothing serves", async () => {
    const ups = await deploy("canfail", { s: [1, ["v1"]], c: [2, ["v2"]] });
    for (const u of ups.get("c")!) u.fault = "5xx";
    const subsets = { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } };
    const rev = await putPolicy("canfail", { subsets, split: [{ subset: "stable", weight: 0 }, { subset: "canary", weight: 100 }], retries: { max: 2 }, fallback: { status: 503, body: '{"error":"try later"}', headers: { "retry-after": "2" } } });
    const gw = await gateway("canfail", 3, rev);
    const stable = ups.get("s")![0]!;
    // Try 1 and 2 hit both canaries (503), try 3 leaves the subset for stable.
    const r = await via.request(gw, "canfail");
    assert.deepEqual([r.status, r.upstream], [200, "canfail-s0"]);
    assert.equal(ups.get("c")!.reduce((a, u) => a + u.hits, 0), 2, "both canaries tried first");
    // Nothing can serve: the static fallback, marked, through both front-ends.
    stable.fault = "5xx";
    for (const front of ["request", "fetch"] as const) {
      const f = await via[front](gw, "canfail");
      assert.deepEqual([f.status, f.fallback, f.text], [503, "static", '{"error":"try later"}'], front);
    }
    // Without a fallback the failing status comes back as before.
    const rev2 = await putPolicy("canfail", { subsets, split: [{ subset: "stable", weight: 0 }, { subset: "canary", weight: 100 }], retries: { max: 2 } });
    await waitFor(() => gw.policy("canfail").revision === rev2, { what: "policy without fallback" });
    const plain = await via.fetch(gw, "canfail");
    assert.deepEqual([plain.status, plain.fallback], [503, undefined]);
  });

  test("policy engine - stale fallback (opt-in): the last good answer of the same GET when nothing serves, through fetch and request()", async () => {
    const ups = await deploy("stale", { a: [1, []] });
    const rev = await putPolicy("stale", { retries: { max: 0 }, fallback: { stale: { maxAge: "30s" } } });
    const gw = await gateway("stale", 1, rev);
    const good = await via.fetch(gw, "stale");
    assert.deepEqual([good.status, good.fallback], [200, undefined]);
    await ups.get("a")![0]!.kill();
    for (const front of ["fetch", "request"] as const) {
      const s = await via[front](gw, "stale");
      assert.deepEqual([s.status, s.fallback, s.text], [200, "stale", good.text], front);
    }
    // Another path was never answered: the error stays.
    await assert.rejects(gw.request("stale", { path: "/other" }), (e: { code?: string }) => e.code?.startsWith("ROSTER_") === true);
  });

  test("policy engine - affinity by header through fetch and by cookie through request(): a key stays on its instance, few keys move when one goes", async () => {
    const ups = await deploy("sticky", { a: [4, []] });
    const rev = await putPolicy("sticky", { affinity: { header: "x-user-id" } });
    const gw = await gateway("sticky", 4, rev);
    assert.equal(gw.policy("sticky").balancer, "ring-hash");
    const home = new Map<string, string>();
    for (let u = 0; u < 60; u++) {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) seen.add((await via.fetch(gw, "sticky", { "x-user-id": `user-${u}` })).upstream!);
      assert.equal(seen.size, 1, `user-${u} stayed on one instance`);
      home.set(`user-${u}`, [...seen][0]!);
    }
    assert.ok(new Set(home.values()).size >= 3, "keys spread over the instances");
    // One instance goes: only its keys move.
    const gone = ups.get("a")![0]!;
    await gone.kill();
    let moved = 0;
    for (const [user, was] of home) {
      const now = (await via.fetch(gw, "sticky", { "x-user-id": user })).upstream!;
      if (was !== gone.name) assert.equal(now, was, `${user} kept its instance`);
      else moved++;
    }
    assert.ok(moved < home.size / 2, `${moved} keys moved`);
    const cookieRev = await putPolicy("sticky", { affinity: { cookie: "session" } });
    await waitFor(() => gw.policy("sticky").revision === cookieRev, { what: "cookie affinity" });
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) seen.add((await via.request(gw, "sticky", { cookie: "lang=en; session=abc123" })).upstream!);
    assert.equal(seen.size, 1);
  });

  test("policy engine - rate limit and adaptive throttling reject locally with their own codes; a 429 with Retry-After sends the next requests elsewhere", async () => {
    const ups = await deploy("thr", { a: [2, []] });
    const gw = await gateway("thr", 2, await putPolicy("thr", { rateLimit: { perSecond: 1, burst: 5 } }));
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => via.request(gw, "thr")));
    const codes = results.map((r) => (r.status === "fulfilled" ? r.value.status : (r.reason as { code?: string }).code));
    assert.equal(codes.filter((c) => c === 200).length, 5, codes.join(","));
    assert.equal(codes.filter((c) => c === "ROSTER_LOCAL_RATE_LIMITED").length, 7);
    const viaFetch = await fetch("http://thr/", { dispatcher: gw.dispatcher }).catch((e: Error) => e);
    assert.equal(((viaFetch as Error).cause as { code?: string }).code, "ROSTER_LOCAL_RATE_LIMITED");
    // Adaptive throttling: an upstream that refuses everything.
    for (const u of ups.get("a")!) u.fault = "5xx";
    const rev = await putPolicy("thr", { throttle: { adaptive: true }, retries: { max: 0 } });
    await waitFor(() => gw.policy("thr").revision === rev, { what: "throttle policy" });
    let throttled = 0;
    for (let i = 0; i < 200; i++) {
      try {
        await via.request(gw, "thr");
      } catch (err) {
        if ((err as { code?: string }).code === "ROSTER_THROTTLED") throttled++;
      }
    }
    assert.ok(throttled > 100, `${throttled} of 200 rejected locally`);
    // Retry-After: instance 0 answers 429 + Retry-After: 30, so the next requests go to instance 1.
    const [u0, u1] = ups.get("a")!;
    u0!.fault = "5xx";
    u0!.statusCode = 429;
    u1!.fault = "ok";
    const rev2 = await putPolicy("thr", { retries: { max: 0 }, balancer: "round-robin" });
    await waitFor(() => gw.policy("thr").revision === rev2, { what: "plain policy" });
    const server = u0!.server;
    server.prependListener("request", (_req, res) => res.setHeader("retry-after", "30"));
    for (let i = 0; i < 4; i++) await via.request(gw, "thr");
    const before = u0!.hits;
    const after = await Promise.all(Array.from({ length: 20 }, () => via.fetch(gw, "thr")));
    assert.equal(u0!.hits, before, "no request to the instance that asked for a pause");
    assert.ok(after.every((r) => r.status === 200));
    assert.ok(gw.policy("thr").counters.loadSignals >= 1);
  });
});
