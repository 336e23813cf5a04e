// gw.dispatcher: fetch() and undici.request() route through the catalog (host = service).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { fetch as undiciFetch, request as undiciRequest } from "undici";
import { waitFor } from "roster-testkit";
import { createGateway, type Gateway, type GatewayOptions } from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

describe("gateway dispatcher", () => {
  const fx = fakeRegistryFixture();
  let n = 0;

  async function setup(faults: Array<Upstream["fault"]>, opts: Partial<GatewayOptions> = {}): Promise<{ service: string; ups: Upstream[]; gw: Gateway }> {
    const service = `disp${++n}`;
    const ups = await Promise.all(faults.map((_, i) => Upstream.start(`${service}-u${i}`)));
    ups.forEach((u, i) => (u.fault = faults[i]!));
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port));
    const gw = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, balancer: "round-robin", ...opts });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === ups.length, { timeoutMs: 5000, what: "instances" });
    return { service, ups, gw };
  }

  test("dispatcher - undici fetch routes by service name, with the deadline header when one is set", async () => {
    const { service, ups, gw } = await setup(["ok", "ok"], { deadline: "5s" });
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const res = await undiciFetch(`http://${service}/hello?i=${i}`, { dispatcher: gw.dispatcher });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { upstream: string; path: string };
      assert.equal(body.path, `/hello?i=${i}`);
      seen.add(body.upstream);
    }
    assert.equal(seen.size, 2, "both instances served");
    const sent = Number(ups[0]!.lastHeaders["x-roster-deadline-ms"]);
    assert.ok(sent > 0 && sent <= 5000, `x-roster-deadline-ms=${sent}`);
    assert.equal(gw.stats(service)!.endpoints.reduce((s, e) => s + e.successes, 0), 4);
  });

  test("dispatcher - Node's global fetch accepts it too", async () => {
    const { service, ups, gw } = await setup(["ok"]);
    const init = { dispatcher: gw.dispatcher } as unknown as RequestInit;
    const res = await fetch(`http://${service}/global`, init);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { path: string }).path, "/global");
    assert.equal(ups[0]!.lastHeaders["x-roster-deadline-ms"], undefined, "no deadline set: none sent");
  });

  test("dispatcher - undici.request with a POST body", async () => {
    const { service, gw } = await setup(["ok"]);
    const res = await undiciRequest(`http://${service}/orders`, { method: "POST", body: JSON.stringify({ a: 1 }), dispatcher: gw.dispatcher });
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as { upstream: string }).upstream, `${service}-u0`);
  });

  test("dispatcher - retries on a refused connection and a swallowed 503, without the caller seeing them", async () => {
    const { service, ups, gw } = await setup(["5xx", "ok", "ok"], { balancerOptions: { outlier: { consecutiveFailures: 0 }, breaker: { failureThreshold: 0 } } });
    await ups[1]!.kill();
    for (let i = 0; i < 9; i++) {
      const res = await undiciFetch(`http://${service}/r${i}`, { dispatcher: gw.dispatcher });
      assert.equal(res.status, 200, `request ${i}`);
      assert.equal(((await res.json()) as { upstream: string }).upstream, `${service}-u2`);
    }
    assert.ok(ups[0]!.hits >= 1, "the 503 instance was tried");
    assert.ok(gw.stats(service)!.retries >= 2);
  });

  test("dispatcher - per-try timeout fires against a hanging upstream", async () => {
    const { service, gw } = await setup(["hang"], { tryTimeout: 200, maxRetries: 0 });
    const t0 = Date.now();
    await assert.rejects(undiciRequest(`http://${service}/`, { dispatcher: gw.dispatcher }), (err: unknown) => {
      return (err as { code?: string }).code === "ROSTER_TRY_TIMEOUT" || /timed out/.test(String(err));
    });
    const took = Date.now() - t0;
    assert.ok(took >= 190 && took < 1500, `took ${took}ms`);
  });

  test("dispatcher - unknown service and no healthy upstream surface as errors", async () => {
    const { service, gw } = await setup(["ok"]);
    await assert.rejects(undiciRequest(`http://nope-${service}/`, { dispatcher: gw.dispatcher }), { code: "ROSTER_UNKNOWN_SERVICE" });
    fx.reg.put(makeInstance(service, `${service}-u0`, gw.instances(service)[0]!.port, { status: "critical" }));
    await waitFor(() => gw.instances(service)[0]?.status === "critical", { timeoutMs: 5000, what: "critical" });
    // Default panic threshold: with nothing healthy the balancer routes to everything (and says so).
    const panics: boolean[] = [];
    gw.on("panic", (_s: string, p: boolean) => panics.push(p));
    const res = await undiciRequest(`http://${service}/`, { dispatcher: gw.dispatcher });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.deepEqual(panics, [true]);
    // Panic disabled: nothing can serve.
    const strict = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, balancerOptions: { panicThreshold: 0 } });
    try {
      await assert.rejects(undiciRequest(`http://${service}/`, { dispatcher: strict.dispatcher }), { code: "ROSTER_NO_HEALTHY_UPSTREAM" });
    } finally {
      await strict.close();
    }
  });
});
