// GET /v1/services/:name/history: changes with the time the registry saw them, from the stream
// ring; a read-scope route (401 without a token when auth is on); bad windows are 400.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { HttpAuthConfig } from "roster-schemas";
import { pino } from "pino";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http.js";

const silent = pino({ level: "silent" });
const READ = "history-read-token-0123456789";

function rec(id: string, over: Partial<CatalogInstance> = {}): CatalogInstance {
  return { id, service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100, status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2, ...over };
}

interface History {
  service: string;
  revision: number;
  from: number;
  complete: boolean;
  changes: { revision: number; id: string; at: number; op: string; status?: string; reason?: string; checks?: { id: string; status: string; output?: string }[] }[];
}

describe("registry HTTP history (inject)", () => {
  const memory = new CatalogMemory();
  const status = (): StatusBody => ({
    revision: memory.revision, hosts: 1, lostHosts: 0, instances: memory.instanceCount, services: 1, selfPreservation: false,
    drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: true, catalogLoaded: true,
  });
  const app = buildHttp({
    catalog: memory, status, ready: () => true, maxBlockingWaitMs: 2000, logger: silent, jitter: () => 0,
    security: { auth: HttpAuthConfig.parse({ tokens: [{ name: "reader", token: READ, scopes: ["read"] }] }) },
  });
  const auth = { authorization: `Bearer ${READ}` };
  after(() => app.close());

  it("http-history - every change of the service in order, with its time, status, reason and checks", async () => {
    const t0 = Date.now();
    const check = (status: "passing" | "critical", output: string) => ({ id: "http-0", type: "http" as const, status, output, since: 5 });
    memory.apply("orders", "a", 1, rec("a", { checks: [check("passing", "200 OK")] }));
    memory.apply("payments", "p", 2, rec("p", { service: "payments" }));
    memory.apply("orders", "a", 3, rec("a", { status: "critical", checks: [check("critical", "connect ECONNREFUSED")] }));
    memory.apply("orders", "a", 4, rec("a", { status: "critical", reason: "agent-lost", checks: [check("critical", "connect ECONNREFUSED")] }));
    memory.apply("orders", "a", 5, null);
    const r = await app.inject({ method: "GET", url: "/v1/services/orders/history", headers: auth });
    assert.equal(r.statusCode, 200, r.body);
    const h = r.json() as History;
    assert.equal(h.service, "orders");
    assert.equal(h.revision, 5);
    assert.equal(h.complete, true);
    assert.deepEqual(h.changes.map((c) => [c.revision, c.op, c.status ?? null, c.reason ?? null]), [[1, "put", "passing", null], [3, "put", "critical", null], [4, "put", "critical", "agent-lost"], [5, "delete", null, null]]);
    assert.deepEqual(h.changes[1]!.checks?.map((c) => [c.id, c.status, c.output]), [["http-0", "critical", "connect ECONNREFUSED"]]);
    for (const c of h.changes) assert.ok(c.at >= t0 && c.at <= Date.now(), "stamped when seen");
    assert.ok(h.from <= t0 && h.from >= t0 - 3_600_001 - 1000, "default window: the last hour");
  });

  it("http-history - a window that starts after the changes returns none; an unknown service has none", async () => {
    await new Promise((ok) => setTimeout(ok, 1100));
    const r = await app.inject({ method: "GET", url: "/v1/services/orders/history?window=1s", headers: auth });
    assert.deepEqual((r.json() as History).changes, []);
    const u = await app.inject({ method: "GET", url: "/v1/services/never-seen/history", headers: auth });
    assert.equal(u.statusCode, 200);
    assert.deepEqual([(u.json() as History).changes, (u.json() as History).revision], [[], 0]);
  });

  it("http-history - someone without a read token gets 401, a wrong token too", async () => {
    for (const headers of [{}, { authorization: "Bearer not-the-token-0123456789" }]) {
      const r = await app.inject({ method: "GET", url: "/v1/services/orders/history", headers });
      assert.equal(r.statusCode, 401);
      assert.equal((r.json() as { code: string }).code, "ROSTER_UNAUTHORIZED");
    }
  });

  it("http-history - a bad window or name is 400 naming it", async () => {
    for (const url of ["/v1/services/orders/history?window=forever", "/v1/services/orders/history?window=48h", "/v1/services/orders/history?extra=1", "/v1/services/Bad%20Name/history"]) {
      const r = await app.inject({ method: "GET", url, headers: auth });
      assert.equal(r.statusCode, 400, url);
      assert.equal((r.json() as { code: string }).code, "ROSTER_BAD_REQUEST");
    }
    const w = await app.inject({ method: "GET", url: "/v1/services/orders/history?window=48h", headers: auth });
    assert.match((w.json() as { message: string }).message, /window: expected a duration between "1s" and "24h"/);
  });
});
