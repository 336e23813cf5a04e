import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { pino } from "pino";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http.js";
import { CatalogDump } from "../../src/adapters/http-catalog.js";

const silent = pino({ level: "silent" });

function rec(id: string, over: Partial<CatalogInstance> = {}): CatalogInstance {
  return {
    id, service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100,
    status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2, ...over,
  };
}

describe("registry HTTP GET /v1/catalog (inject)", () => {
  const memory = new CatalogMemory();
  let loaded = false;
  const status = (): StatusBody => ({
    revision: memory.revision, hosts: 1, lostHosts: 0, instances: 0, services: 0, selfPreservation: false,
    drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: true, catalogLoaded: loaded,
  });
  const app = buildHttp({ catalog: memory, status, ready: () => loaded, loaded: () => loaded, maxBlockingWaitMs: 1000, logger: silent, jitter: () => 0 });

  before(() => {
    memory.apply("orders", "b", 5, rec("b", { zone: "z1", tags: ["blue"], meta: { v: "2" } }));
    memory.apply("orders", "a", 6, rec("a", { status: "critical", reason: "agent-lost", checks: [{ id: "http-0", type: "http", status: "critical", output: "refused", since: 3 }] }));
    memory.apply("billing", "x", 7, rec("x", { service: "billing" }));
    memory.apply("billing", "x", 8, null);
  });
  after(() => app.close());

  it("catalog - 503 ROSTER_NOT_READY until the catalog is loaded", async () => {
    const r = await app.inject({ method: "GET", url: "/v1/catalog" });
    assert.equal(r.statusCode, 503);
    assert.equal((r.json() as { code: string }).code, "ROSTER_NOT_READY");
    loaded = true;
  });

  it("catalog - every known service by name, instances sorted, public fields only, the revision", async () => {
    const r = await app.inject({ method: "GET", url: "/v1/catalog" });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers["x-roster-index"], "8");
    const body = CatalogDump.parse(r.json());
    assert.equal(body.revision, 8);
    assert.deepEqual(Object.keys(body.services), ["billing", "orders"]);
    assert.deepEqual(body.services.billing, []);
    assert.deepEqual(body.services.orders!.map((i) => i.id), ["a", "b"]);
    const raw = r.json() as { services: { orders: Array<Record<string, unknown>> } };
    const [a, b] = raw.services.orders;
    assert.equal("epoch" in a!, false);
    assert.equal("registeredAt" in a!, false);
    assert.equal(a!.reason, "agent-lost");
    assert.deepEqual(a!.checks, [{ id: "http-0", type: "http", status: "critical", output: "refused", since: 3 }]);
    assert.deepEqual(b, { id: "b", service: "orders", host: "h1", address: "10.0.0.1", port: 8080, zone: "z1", tags: ["blue"], meta: { v: "2" }, weight: 100, status: "passing", checks: [], updatedAt: 2 });
  });

  it("catalog - the same catalog dumps to the same bytes", async () => {
    const one = await app.inject({ method: "GET", url: "/v1/catalog" });
    const two = await app.inject({ method: "GET", url: "/v1/catalog" });
    assert.equal(one.body, two.body);
  });
});
