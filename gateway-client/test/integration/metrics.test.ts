// The gateway's prom-client metrics after real requests to real upstreams (catalog from a
// test-side publisher on real NATS).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { metricValue, parsePrometheus, waitFor, type Sample } from "roster-testkit";
import { Registry, register as globalRegister } from "prom-client";
import { createGateway, InvalidOptionsError, type Gateway, type GatewayOptions } from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

describe("gateway metrics", () => {
  const fx = fakeRegistryFixture();
  let n = 0;

  async function setup(faults: Array<Upstream["fault"]>, opts: Partial<GatewayOptions> = {}) {
    const service = `msvc${++n}`;
    const ups = await Promise.all(faults.map((f, i) => Upstream.start(`${service}-u${i}`)));
    ups.forEach((u, i) => (u.fault = faults[i]!));
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port));
    const gw = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, metrics: true, ...opts });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === ups.length, { timeoutMs: 5000, what: `${ups.length} instances` });
    return { service, ups, gw };
  }
  const scrape = async (r: Registry | undefined): Promise<Sample[]> => parsePrometheus(await r!.metrics());

  test("metrics - requests by outcome, retries, ejections, endpoint health and breaker state after real traffic", async () => {
    const { service, ups, gw } = await setup(["ok", "ok"], { balancer: "round-robin", maxRetries: 2 });
    assert.ok(gw.metrics instanceof Registry);
    // A service's series appear with its first request (its runtime is made then).
    assert.equal(metricValue(await scrape(gw.metrics), "roster_gateway_endpoints", { service }), undefined);
    await (await gw.request(service)).body.dump();
    const before = await scrape(gw.metrics);
    assert.equal(metricValue(before, "roster_gateway_endpoints", { service, state: "healthy" }), 2);
    assert.equal(metricValue(before, "roster_gateway_stale"), 0);
    await ups[1]!.kill(); // refused from now on: ejected at once, the retry goes to u0
    for (let i = 0; i < 5; i++) {
      const res = await gw.request(service);
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    }
    const m = await scrape(gw.metrics);
    const labels = { gateway: "default", service };
    assert.equal(metricValue(m, "roster_gateway_requests_total", { ...labels, outcome: "response" }), 6);
    assert.equal(metricValue(m, "roster_gateway_requests_started_total", labels), 6);
    assert.ok((metricValue(m, "roster_gateway_retries_total", labels) ?? 0) >= 1, "the try to the dead instance was retried");
    assert.equal(metricValue(m, "roster_gateway_ejections_total", labels), 1);
    assert.equal(metricValue(m, "roster_gateway_endpoints", { ...labels, state: "total" }), 2);
    assert.equal(metricValue(m, "roster_gateway_endpoints", { ...labels, state: "healthy" }), 1);
    assert.equal(metricValue(m, "roster_gateway_endpoints", { ...labels, state: "ejected" }), 1);
    assert.equal(metricValue(m, "roster_gateway_panic", labels), 0);
    assert.equal(metricValue(m, "roster_gateway_in_flight", labels), 0);
    assert.equal(metricValue(m, "roster_gateway_breaker_state", { ...labels, endpoint: ups[0]!.name }), 0);
    assert.ok(metricValue(m, "roster_gateway_breaker_state", { ...labels, endpoint: ups[1]!.name }) !== undefined);
    assert.equal(metricValue(m, "roster_gateway_hedges_total", labels), 0);
    // No process metrics in a library, and nothing on prom-client's global registry.
    assert.equal(metricValue(m, "process_cpu_user_seconds_total"), undefined);
    assert.equal((await globalRegister.getMetricsAsJSON()).filter((x) => x.name.startsWith("roster_")).length, 0);
  });

  test("metrics - an error is counted under its code", async () => {
    const { service, gw } = await setup(["hang"], { tryTimeout: 100, maxRetries: 0 });
    await assert.rejects(gw.request(service), (err: { code?: string }) => err.code === "ROSTER_TRY_TIMEOUT");
    const m = await scrape(gw.metrics);
    assert.equal(metricValue(m, "roster_gateway_requests_total", { service, outcome: "ROSTER_TRY_TIMEOUT" }), 1);
    assert.equal(metricValue(m, "roster_gateway_requests_total", { service, outcome: "response" }), 0);
  });

  test("metrics - gateways sharing the host's Registry report under their own name; a duplicate name is refused", async () => {
    const shared = new Registry();
    const a = await setup(["ok"], { metrics: shared, name: "a" });
    const b = await createGateway({ nats: fx.nats.url, services: [a.service], logger: silent, metrics: shared, name: "b" });
    fx.cleanups.push(() => b.close());
    assert.equal(b.metrics, shared);
    await (await a.gw.request(a.service)).body.dump();
    await (await b.request(a.service)).body.dump();
    await (await b.request(a.service)).body.dump();
    const m = await scrape(shared);
    assert.equal(metricValue(m, "roster_gateway_requests_total", { gateway: "a", service: a.service, outcome: "response" }), 1);
    assert.equal(metricValue(m, "roster_gateway_requests_total", { gateway: "b", service: a.service, outcome: "response" }), 2);
    await assert.rejects(createGateway({ nats: fx.nats.url, logger: silent, metrics: shared, name: "a" }), (err: unknown) => err instanceof InvalidOptionsError);
    // Once "a" is closed its series go, and the name is free again.
    await a.gw.close();
    assert.equal(metricValue(await scrape(shared), "roster_gateway_requests_total", { gateway: "a" }), undefined);
    const a2 = await createGateway({ nats: fx.nats.url, logger: silent, metrics: shared, name: "a" });
    await a2.close();
  });

  test("metrics - off by default", async () => {
    const gw: Gateway = await createGateway({ nats: fx.nats.url, logger: silent });
    fx.cleanups.push(() => gw.close());
    assert.equal(gw.metrics, undefined);
  });
});
