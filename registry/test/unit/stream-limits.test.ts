// Per-client caps on event streams and the catalog dump encoded once per revision, against a real
// listener (fetch): the limits of issue "Secure by default" that are not about memory (that one is
// test/security/stream-flood.test.ts, against the real registry process).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { pino } from "pino";
import { CatalogMemory, type CatalogReader } from "../../src/adapters/store/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http/server.js";

const silent = pino({ level: "silent" });
const rec = (id: string, over: Partial<CatalogInstance> = {}): CatalogInstance => ({
  id, service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100,
  status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2, ...over,
});
const status = (): StatusBody => ({
  revision: 0, hosts: 0, lostHosts: 0, instances: 0, services: 0, selfPreservation: false,
  drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: true, catalogLoaded: true,
});

describe("stream limits and catalog body cache", () => {
  it("stream - past streams.maxPerClient a client gets 429 ROSTER_TOO_MANY_CLIENT_STREAMS with Retry-After; other clients are not affected", async () => {
    const memory = new CatalogMemory();
    memory.load("orders", "a", 1, rec("a"));
    const tokens = [
      { name: "alice", secret: "alice-token-0123456789", scopes: ["read" as const] },
      { name: "bob", secret: "bob-token-0123456789ab", scopes: ["read" as const] },
    ];
    const app = buildHttp({
      catalog: memory, status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent,
      stream: { maxPerClient: 2, maxOpen: 100 },
      security: { auth: { tokens, openReads: false, openPaths: ["/healthz", "/readyz"] } },
    });
    const base = await app.listen({ host: "127.0.0.1", port: 0 });
    const ctl = new AbortController();
    const as = (who: "alice" | "bob") => ({ authorization: `Bearer ${tokens.find((t) => t.name === who)!.secret}` });
    try {
      const a1 = await fetch(`${base}/v1/stream`, { headers: as("alice"), signal: ctl.signal });
      const a2 = await fetch(`${base}/v1/services/orders/stream`, { headers: as("alice"), signal: ctl.signal });
      assert.deepEqual([a1.status, a2.status], [200, 200]);
      const a3 = await fetch(`${base}/v1/stream`, { headers: as("alice") });
      assert.equal(a3.status, 429);
      assert.equal(a3.headers.get("retry-after"), "5");
      assert.equal(((await a3.json()) as { code: string }).code, "ROSTER_TOO_MANY_CLIENT_STREAMS");
      // Another token is another client, even from the same IP.
      const b1 = await fetch(`${base}/v1/stream`, { headers: as("bob"), signal: ctl.signal });
      assert.equal(b1.status, 200);
      // Closing one of alice's streams gives her place back.
      await a1.body?.cancel();
      const t0 = Date.now();
      let again = 0;
      while (Date.now() - t0 < 5000) {
        const r = await fetch(`${base}/v1/stream`, { headers: as("alice"), signal: ctl.signal });
        again = r.status;
        if (again === 200) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal(again, 200);
    } finally {
      ctl.abort();
      await app.close();
    }
  });

  it("catalog - /v1/catalog is encoded once per catalog revision, however many ask", async () => {
    const memory = new CatalogMemory();
    memory.load("orders", "a", 1, rec("a"));
    memory.load("orders", "b", 2, rec("b"));
    let reads = 0;
    // Counts the walks over every service that building a dump needs.
    const counted = new Proxy(memory, {
      get(target, prop, receiver) {
        if (prop === "services") return () => (reads++, target.services());
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as CatalogReader;
    const app = buildHttp({ catalog: counted, status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent });
    try {
      const bodies = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const r = await app.inject({ method: "GET", url: "/v1/catalog" });
        assert.equal(r.statusCode, 200);
        assert.match(String(r.headers["content-type"]), /application\/json/);
        bodies.add(r.body);
      }
      assert.equal(reads, 1, "one encode for 20 requests at one revision");
      assert.equal(bodies.size, 1);
      const dump = JSON.parse([...bodies][0]!) as { revision: number; services: Record<string, Array<{ id: string }>> };
      assert.equal(dump.revision, 2);
      assert.deepEqual(dump.services.orders!.map((i) => i.id), ["a", "b"]);
      memory.apply("orders", "c", 3, rec("c"));
      const r = await app.inject({ method: "GET", url: "/v1/catalog" });
      assert.equal(reads, 2, "a new revision is encoded again");
      assert.deepEqual((JSON.parse(r.body) as typeof dump).services.orders!.map((i) => i.id), ["a", "b", "c"]);
      assert.equal(r.headers["x-roster-index"], "3");
    } finally {
      await app.close();
    }
  });
});
