// Request-path behaviour (timeouts, deadline, retries, budget, cap, hedging) against real
// node:http upstreams with injected faults. The catalog comes from a test-side publisher on
// real NATS so each test controls its instances exactly.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "roster-testkit";
import {
  createGateway,
  DeadlineExceededError,
  GatewayClosedError,
  QueueFullError,
  RequestAbortedError,
  TryTimeoutError,
  type Gateway,
  type GatewayOptions,
} from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

describe("gateway request path", () => {
  const fx = fakeRegistryFixture();
  let n = 0;

  /** A fresh service with `faults.length` upstreams; returns them and a gateway following it. */
  async function setup(faults: Array<Upstream["fault"]>, opts: Partial<GatewayOptions> = {}) {
    const service = `svc${++n}`;
    const ups = await Promise.all(faults.map((f, i) => Upstream.start(`${service}-u${i}`)));
    ups.forEach((u, i) => (u.fault = faults[i]!));
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port));
    const gw = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, ...opts });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === ups.length, { timeoutMs: 5000, what: `${ups.length} instances` });
    return { service, ups, gw };
  }

  async function ok(gw: Gateway, service: string, opts: Parameters<Gateway["request"]>[1] = {}): Promise<number> {
    const res = await gw.request(service, opts);
    await res.body.dump();
    return res.statusCode;
  }

  test("gateway - per-try timeout fires against a hanging upstream and the retry goes elsewhere", async () => {
    const { service, ups, gw } = await setup(["hang", "ok"], { tryTimeout: 200, balancer: "round-robin" });
    for (let i = 0; i < 6; i++) {
      const t0 = Date.now();
      assert.equal(await ok(gw, service), 200);
      assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0}ms`);
    }
    assert.ok(ups[0]!.hits >= 1, "the hanging instance was tried");
    const ejected = gw.stats(service)!.endpoints.find((e) => e.id === ups[0]!.name)!;
    assert.ok(ejected.failures >= 1);
  });

  test("gateway - per-try timeout fires on a single hanging instance (ROSTER_TRY_TIMEOUT), bounded", async () => {
    const { service, gw } = await setup(["hang"], { tryTimeout: 150, maxRetries: 0 });
    const t0 = Date.now();
    await assert.rejects(gw.request(service), (err: unknown) => err instanceof TryTimeoutError && err.code === "ROSTER_TRY_TIMEOUT");
    const took = Date.now() - t0;
    assert.ok(took >= 140 && took < 1500, `took ${took}ms`);
  });

  test("gateway - the overall deadline fires (ROSTER_DEADLINE_EXCEEDED) and travels upstream in x-roster-deadline-ms", async () => {
    const { service, ups, gw } = await setup(["hang"], { tryTimeout: 5000 });
    const t0 = Date.now();
    await assert.rejects(gw.request(service, { deadline: 250 }), (err: unknown) => err instanceof DeadlineExceededError && err.code === "ROSTER_DEADLINE_EXCEEDED");
    const took = Date.now() - t0;
    assert.ok(took >= 240 && took < 1500, `took ${took}ms`);
    // An incoming x-roster-deadline-ms (a caller's remaining budget) bounds the request too.
    const t1 = Date.now();
    await assert.rejects(gw.request(service, { headers: { "x-roster-deadline-ms": "200" } }), { code: "ROSTER_DEADLINE_EXCEEDED" });
    assert.ok(Date.now() - t1 < 1500);
    ups[0]!.fault = "ok";
    await ok(gw, service, { deadline: 3000 });
    const sent = Number(ups[0]!.lastHeaders["x-roster-deadline-ms"]);
    assert.ok(sent > 2000 && sent <= 3000, `x-roster-deadline-ms=${sent}`);
  });

  test("gateway - the deadline header carries a deadline that was set, never the built-in default", async () => {
    const { service, ups, gw } = await setup(["ok"]);
    const sent = (): string | string[] | undefined => ups[0]!.lastHeaders["x-roster-deadline-ms"];
    await ok(gw, service);
    assert.equal(sent(), undefined, "the built-in 10 s is a safety bound of this gateway, not the caller's deadline");
    await ok(gw, service, { headers: { "x-other": "1" } });
    assert.equal(sent(), undefined);
    assert.equal(ups[0]!.lastHeaders["x-other"], "1");
    // An unreadable incoming header sets nothing, and is not passed on either.
    await ok(gw, service, { headers: { "x-roster-deadline-ms": "soon" } });
    assert.equal(sent(), undefined);
    // A caller's remaining budget is passed on, less what has gone by.
    await ok(gw, service, { headers: { "x-roster-deadline-ms": "5000" } });
    assert.ok(Number(sent()) > 4000 && Number(sent()) <= 5000, `x-roster-deadline-ms=${String(sent())}`);
    await ok(gw, service, { deadline: 700 });
    assert.ok(Number(sent()) > 500 && Number(sent()) <= 700, `x-roster-deadline-ms=${String(sent())}`);
    // The gateway's own `deadline` option, when given, is a deadline set.
    const configured = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, deadline: "3s" });
    fx.cleanups.push(() => configured.close());
    await waitFor(() => configured.instances(service).length === 1, { timeoutMs: 5000, what: "instance" });
    await ok(configured, service);
    assert.ok(Number(sent()) > 2000 && Number(sent()) <= 3000, `x-roster-deadline-ms=${String(sent())}`);
  });

  test("gateway - 503 is retried on another instance (body discarded); a POST is not retried on 503", async () => {
    const { service, ups, gw } = await setup(["5xx", "ok"], { balancer: "round-robin", balancerOptions: { outlier: { consecutiveFailures: 0 }, breaker: { failureThreshold: 0 } } });
    for (let i = 0; i < 10; i++) assert.equal(await ok(gw, service), 200);
    assert.ok(ups[0]!.hits >= 3, `503 instance hits ${ups[0]!.hits}`);
    assert.ok(gw.stats(service)!.retries >= 3);
    let got503 = 0;
    for (let i = 0; i < 10; i++) if ((await ok(gw, service, { method: "POST", body: "x" })) === 503) got503++;
    assert.ok(got503 >= 3, `POSTs answered 503: ${got503}`);
  });

  test("gateway - a POST is retried when the connection is refused (it never reached the upstream)", async () => {
    const { service, ups, gw } = await setup(["ok", "ok"], { balancer: "round-robin" });
    await ups[0]!.kill();
    for (let i = 0; i < 6; i++) assert.equal(await ok(gw, service, { method: "POST", body: JSON.stringify({ i }) }), 200);
  });

  test("gateway - the retry budget caps retries during a full outage", async () => {
    const { service, ups, gw } = await setup(["5xx", "5xx", "5xx"], {
      maxRetries: 2,
      backoff: { base: 1, max: 2 },
      retryBudget: { ratio: 0.2, minPerSecond: 1, window: "10s" },
    });
    const requests = 150;
    let statuses503 = 0;
    const worker = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) if ((await ok(gw, service)) === 503) statuses503++;
    };
    await Promise.all(Array.from({ length: 5 }, () => worker(requests / 5)));
    const hits = ups.reduce((s, u) => s + u.hits, 0);
    assert.equal(statuses503, requests, "every request answered with the upstream's 503");
    // Without a budget: 3 tries each = 450 hits. With it: ≤ requests × (1 + ratio) + reserve (10).
    assert.ok(hits > requests, `hits ${hits}`);
    assert.ok(hits <= requests * 1.2 + 10 + 1, `hits ${hits} for ${requests} requests`);
    assert.ok(gw.stats(service)!.budgetExhausted > 0);
  });

  test("gateway - concurrency cap with a bounded queue rejects with ROSTER_QUEUE_FULL", async () => {
    const { service, ups, gw } = await setup(["slow"], { concurrency: { limit: 1, queue: 1 } });
    ups[0]!.slowMs = 300;
    const a = gw.request(service);
    const b = gw.request(service);
    await assert.rejects(gw.request(service), (err: unknown) => err instanceof QueueFullError && err.code === "ROSTER_QUEUE_FULL");
    for (const p of [a, b]) {
      const res = await p;
      await res.body.dump();
      assert.equal(res.statusCode, 200);
    }
    assert.equal(gw.stats(service)!.inFlight, 0);
  });

  test("gateway - hedging sends a second try after the observed p95 and aborts the loser", async () => {
    const { service, ups, gw } = await setup(["ok", "ok"], {
      balancer: "round-robin",
      tryTimeout: 5000,
      hedge: { enabled: true, minSamples: 10, maxExtraLoad: 1 },
    });
    for (let i = 0; i < 20; i++) await ok(gw, service);
    let closedWithoutAnswer = 0;
    ups[0]!.server.on("request", (req, res) => req.on("close", () => !res.writableEnded && closedWithoutAnswer++));
    ups[0]!.fault = "hang";
    for (let i = 0; i < 4; i++) {
      const t0 = Date.now();
      assert.equal(await ok(gw, service), 200);
      assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0}ms`);
    }
    assert.ok(gw.stats(service)!.hedges >= 1, "a hedge was sent");
    await waitFor(() => closedWithoutAnswer >= 1, { timeoutMs: 3000, what: "the losing try aborted" });
  });

  test("gateway - the caller's signal aborts a request (ROSTER_ABORTED)", async () => {
    const { service, gw } = await setup(["hang"], { tryTimeout: 5000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    await assert.rejects(gw.request(service, { signal: ac.signal }), (err: unknown) => err instanceof RequestAbortedError);
    assert.ok(Date.now() - t0 < 1500);
  });

  test("gateway - pick() for other protocols, done() feeds the balancer", async () => {
    const { service, ups, gw } = await setup(["ok", "ok"]);
    const p = await gw.pick(service);
    assert.ok(ups.some((u) => u.port === p.endpoint.port && p.endpoint.address === "127.0.0.1"));
    p.done("failure");
    const q = await gw.pick(service, { exclude: [p.endpoint.id] });
    assert.notEqual(q.endpoint.id, p.endpoint.id);
    q.done({ kind: "success", latencyMs: 3 });
    const stats = gw.stats(service)!.endpoints;
    assert.equal(stats.find((e) => e.id === p.endpoint.id)!.failures, 1);
    assert.equal(stats.find((e) => e.id === q.endpoint.id)!.successes, 1);
  });

  test("gateway - close() rejects requests in flight and new ones with ROSTER_CLOSED", async () => {
    const { service, gw } = await setup(["hang"], { tryTimeout: 5000 });
    const pending = gw.request(service).then(
      () => null,
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 50));
    await gw.close();
    assert.ok((await pending) instanceof GatewayClosedError);
    await assert.rejects(gw.request(service), { code: "ROSTER_CLOSED" });
  });

  test("gateway - zone-aware: a caller in zone a stays in zone a while it is healthy, spills when it is not", async () => {
    const service = `zoned${++n}`;
    const ups = await Promise.all([0, 1, 2].map((i) => Upstream.start(`${service}-u${i}`)));
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    fx.reg.put(makeInstance(service, ups[0]!.name, ups[0]!.port, { zone: "a" }));
    fx.reg.put(makeInstance(service, ups[1]!.name, ups[1]!.port, { zone: "b" }));
    fx.reg.put(makeInstance(service, ups[2]!.name, ups[2]!.port, { zone: "b" }));
    const gw = await createGateway({ nats: fx.nats.url, services: [service], zone: "a", logger: silent });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === 3, { timeoutMs: 5000, what: "3 instances" });
    for (let i = 0; i < 20; i++) assert.equal(await ok(gw, service), 200);
    assert.equal(ups[0]!.hits, 20, "all in zone a");
    fx.reg.put(makeInstance(service, ups[0]!.name, ups[0]!.port, { zone: "a", status: "critical" }));
    await waitFor(() => gw.instances(service).find((i) => i.id === ups[0]!.name)?.status === "critical", { timeoutMs: 5000, what: "critical" });
    for (let i = 0; i < 10; i++) assert.equal(await ok(gw, service), 200);
    assert.equal(ups[0]!.hits, 20, "zone a is down: spilled to zone b");
    assert.equal(ups[1]!.hits + ups[2]!.hits, 10);
  });

  test("gateway - removed endpoints have their pools closed; a new instance is used at once", async () => {
    const { service, ups, gw } = await setup(["ok"]);
    assert.equal(await ok(gw, service), 200);
    const extra = await Upstream.start(`${service}-extra`);
    fx.cleanups.push(() => extra.close());
    fx.reg.put(makeInstance(service, extra.name, extra.port));
    fx.reg.remove(service, ups[0]!.name);
    await waitFor(() => gw.instances(service).length === 1 && gw.instances(service)[0]!.id === extra.name, { timeoutMs: 5000, what: "swap" });
    assert.equal(await ok(gw, service), 200);
    assert.equal(extra.hits, 1);
    // The old pool was closed: its keep-alive connection is gone.
    await waitFor(() => ups[0]!.sockets.size === 0, { timeoutMs: 3000, what: "old pool closed" });
  });

  test("gateway - snapshotRequestTimeout bounds each snapshot request (unanswered ones are retried)", async () => {
    const service = `slowsnap${++n}`;
    fx.reg.answerSnapshots = false;
    try {
      const count = async (snapshotRequestTimeout: number) => {
        const before = fx.reg.snapshotRequests;
        const gw = await createGateway({ nats: fx.nats.url, snapshotTimeout: 600, snapshotRequestTimeout, logger: silent });
        await assert.rejects(gw.request(service), { code: "ROSTER_SNAPSHOT_TIMEOUT" });
        await gw.close();
        return fx.reg.snapshotRequests - before;
      };
      const short = await count(50);
      const long = await count(500);
      assert.ok(short > long, `50 ms requests: ${short}, 500 ms requests: ${long}`);
      assert.ok(long <= 2, `a 500 ms request timeout allows at most 2 requests in 600 ms, saw ${long}`);
    } finally {
      fx.reg.answerSnapshots = true;
    }
  });
});
