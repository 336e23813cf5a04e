import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { pino } from "pino";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http.js";

const silent = pino({ level: "silent" });

function rec(id: string, over: Partial<CatalogInstance> = {}): CatalogInstance {
  return {
    id, service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100,
    status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2, ...over,
  };
}

describe("registry HTTP API (inject)", () => {
  const memory = new CatalogMemory();
  let ready = true;
  const status = (): StatusBody => ({
    revision: memory.revision, hosts: 1, lostHosts: 0, instances: memory.instanceCount, services: 1, selfPreservation: false,
    drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: ready, catalogLoaded: true,
  });
  const app = buildHttp({ catalog: memory, status, ready: () => ready, maxBlockingWaitMs: 2000, logger: silent, jitter: () => 0 });

  before(() => {
    memory.apply("orders", "a", 5, rec("a", { zone: "z1", tags: ["blue"] }));
    memory.apply("orders", "b", 6, rec("b", { status: "critical", reason: "agent-lost" }));
    memory.apply("gone", "x", 7, rec("x", { service: "gone" }));
    memory.apply("gone", "x", 8, null);
  });
  after(() => app.close());

  it("http - GET /v1/services lists every known service with counts and the global index", async () => {
    const r = await app.inject({ method: "GET", url: "/v1/services" });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers["x-roster-index"], "8");
    assert.deepEqual(r.json(), [
      { name: "gone", instances: 0, passing: 0 },
      { name: "orders", instances: 2, passing: 1 },
    ]);
  });

  it("http - instances: public fields only, service index header, filters", async () => {
    const r = await app.inject({ method: "GET", url: "/v1/services/orders/instances" });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers["x-roster-index"], "6");
    assert.equal(r.headers["etag"], '"6"');
    const body = r.json() as Array<Record<string, unknown>>;
    assert.deepEqual(Object.keys(body[0]!).sort(), ["address", "checks", "host", "id", "meta", "port", "service", "status", "tags", "updatedAt", "weight", "zone"]);
    assert.equal(body[1]!.reason, "agent-lost");
    assert.equal("epoch" in body[0]!, false);
    const passing = await app.inject({ method: "GET", url: "/v1/services/orders/instances?status=passing" });
    assert.deepEqual((passing.json() as Array<{ id: string }>).map((i) => i.id), ["a"]);
    const zone = await app.inject({ method: "GET", url: "/v1/services/orders/instances?zone=z2" });
    assert.deepEqual(zone.json(), []);
    const tag = await app.inject({ method: "GET", url: "/v1/services/orders/instances?tag=blue" });
    assert.deepEqual((tag.json() as Array<{ id: string }>).map((i) => i.id), ["a"]);
  });

  it("http - a never-seen service is 404 ROSTER_SERVICE_NOT_FOUND; a known empty one is []", async () => {
    const nf = await app.inject({ method: "GET", url: "/v1/services/nope/instances" });
    assert.equal(nf.statusCode, 404);
    assert.equal(nf.json().code, "ROSTER_SERVICE_NOT_FOUND");
    assert.match(nf.json().message, /nope/);
    const empty = await app.inject({ method: "GET", url: "/v1/services/gone/instances" });
    assert.equal(empty.statusCode, 200);
    assert.deepEqual(empty.json(), []);
    assert.equal(empty.headers["x-roster-index"], "8");
  });

  it("http - bad input is a 400 with a code and the bad field", async () => {
    for (const url of [
      "/v1/services/orders/instances?status=down",
      "/v1/services/orders/instances?index=-1",
      "/v1/services/orders/instances?index=abc",
      "/v1/services/orders/instances?index=1&wait=forever",
      "/v1/services/orders/instances?zone=a.b",
      "/v1/services/orders/instances?unknown=1",
      "/v1/services/orders/instances?tag=a&tag=b",
      "/v1/services/a.b/instances",
      "/v1/services/%2A/instances",
    ]) {
      const r = await app.inject({ method: "GET", url });
      assert.equal(r.statusCode, 400, url);
      assert.equal(r.json().code, "ROSTER_BAD_REQUEST", url);
    }
    const r = await app.inject({ method: "GET", url: "/v1/services/orders/instances?status=down" });
    assert.match(r.json().message, /status/);
  });

  it("http - unknown routes and methods are JSON 404s", async () => {
    const r = await app.inject({ method: "GET", url: "/nope" });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().code, "ROSTER_ROUTE_NOT_FOUND");
    const p = await app.inject({ method: "POST", url: "/v1/services" });
    assert.equal(p.statusCode, 404);
  });

  it("http - If-None-Match with the current ETag is 304", async () => {
    const r = await app.inject({ method: "GET", url: "/v1/services/orders/instances", headers: { "if-none-match": '"6"' } });
    assert.equal(r.statusCode, 304);
    assert.equal(r.body, "");
    const stale = await app.inject({ method: "GET", url: "/v1/services/orders/instances", headers: { "if-none-match": '"5"' } });
    assert.equal(stale.statusCode, 200);
  });

  it("http - blocking query: returns at once when already past the index, waits otherwise", async () => {
    const now = await app.inject({ method: "GET", url: "/v1/services/orders/instances?index=5&wait=10s" });
    assert.equal(now.headers["x-roster-index"], "6");
    const t0 = Date.now();
    const pending = app.inject({ method: "GET", url: "/v1/services/orders/instances?index=6&wait=10s" });
    setTimeout(() => memory.apply("orders", "c", 9, rec("c")), 100);
    const r = await pending;
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(r.headers["x-roster-index"], "9");
    assert.equal((r.json() as unknown[]).length, 3);
  });

  it("http - blocking query times out with the same index, capped by maxBlockingWait", async () => {
    const t0 = Date.now();
    const r = await app.inject({ method: "GET", url: "/v1/services/orders/instances?index=9&wait=200ms" });
    const took = Date.now() - t0;
    assert.ok(took >= 190 && took < 3000, `took ${took}`);
    assert.equal(r.headers["x-roster-index"], "9");
    const t1 = Date.now();
    await app.inject({ method: "GET", url: "/v1/services/orders/instances?index=9&wait=1h" });
    const capped = Date.now() - t1;
    assert.ok(capped >= 1900 && capped < 6000, `capped at maxBlockingWait (2s), took ${capped}`);
    assert.equal(memory.waiting, 0, "no waiter left behind");
  });

  it("http - a blocking query on a never-seen service waits for it to appear", async () => {
    const pending = app.inject({ method: "GET", url: "/v1/services/later/instances?index=0&wait=5s" });
    setTimeout(() => memory.apply("later", "l1", 10, rec("l1", { service: "later" })), 100);
    const r = await pending;
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers["x-roster-index"], "10");
  });

  it("http - status, healthz and readyz", async () => {
    assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
    ready = false;
    const nr = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(nr.statusCode, 503);
    assert.equal(nr.json().natsConnected, false);
    ready = true;
    const s = await app.inject({ method: "GET", url: "/v1/status" });
    assert.equal(s.json().revision, 10);
    assert.deepEqual(s.json().drops, { total: 0, byReason: {}, byKind: {} });
  });

  it("http - over a real listener, and close() releases blocked queries at once", async () => {
    const m2 = new CatalogMemory();
    m2.apply("svc", "a", 1, rec("a", { service: "svc" }));
    const app2 = buildHttp({ catalog: m2, status, ready: () => true, maxBlockingWaitMs: 60_000, logger: silent });
    const url = await app2.listen({ host: "127.0.0.1", port: 0 });
    const r = await fetch(`${url}/v1/services/svc/instances`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-roster-index"), "1");
    const blocked = fetch(`${url}/v1/services/svc/instances?index=1&wait=50s`).then((x) => x.status);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(m2.waiting, 1);
    const t0 = Date.now();
    await app2.close();
    assert.ok(Date.now() - t0 < 5000, "close did not wait for the blocking query's full wait");
    assert.equal(await blocked, 200);
  });

  it("http - a client that goes away releases its waiter", async () => {
    const m3 = new CatalogMemory();
    m3.apply("svc", "a", 1, rec("a", { service: "svc" }));
    const app3 = buildHttp({ catalog: m3, status, ready: () => true, maxBlockingWaitMs: 60_000, logger: silent });
    const url = await app3.listen({ host: "127.0.0.1", port: 0 });
    try {
      const ac = new AbortController();
      const p = fetch(`${url}/v1/services/svc/instances?index=1&wait=50s`, { signal: ac.signal }).catch(() => "aborted");
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(m3.waiting, 1);
      ac.abort();
      assert.equal(await p, "aborted");
      const t0 = Date.now();
      while (m3.waiting > 0 && Date.now() - t0 < 3000) await new Promise((res) => setTimeout(res, 20));
      assert.equal(m3.waiting, 0);
    } finally {
      await app3.close();
    }
  });
});
