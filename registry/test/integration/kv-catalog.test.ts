import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { CATALOG_BUCKET, CatalogDelta, type CatalogInstance } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { KvCatalog } from "../../src/adapters/kv-catalog.js";
import { collectDeltas, silent } from "./helpers.js";

function rec(id: string, over: Partial<CatalogInstance> = {}): CatalogInstance {
  return {
    id, service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100,
    status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2, ...over,
  };
}

describe("registry KV catalog store (real JetStream KV)", () => {
  let nats: NatsServer;
  let nc: NatsConnection;

  before(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close().catch(() => undefined);
    await nats?.close();
  });

  it("kv - writes serialised per service: revisions and prevRevision chain, memory updated before the delta", async () => {
    const memory = new CatalogMemory();
    const seen: CatalogDelta[] = [];
    const store = await KvCatalog.open(nc, memory, {
      replicas: 1, retryForMs: 5000, logger: silent,
      onWritten: (d) => {
        // memory already holds this change when the delta goes out
        assert.equal(memory.service(d.service).revision, d.revision);
        seen.push(d);
      },
    });
    assert.deepEqual(await store.load(), []);
    const { deltas, sub } = collectDeltas(nc, "orders");
    await nc.flush();
    for (let i = 0; i < 20; i++) store.enqueue("orders", `i${i}`, rec(`i${i}`));
    store.enqueue("payments", "p1", rec("p1", { service: "payments" }));
    assert.ok(await store.flush(10_000));
    store.enqueue("orders", "i3", null);
    assert.ok(await store.flush(10_000));
    await waitFor(() => deltas.length === 21, { what: "21 orders deltas" });
    let prev = 0;
    for (const d of deltas) {
      assert.equal(d.prevRevision, prev);
      assert.ok(d.revision > prev);
      prev = d.revision;
    }
    assert.equal(deltas.at(-1)!.op, "delete");
    assert.equal(memory.service("orders").instances.length, 19);
    assert.equal(seen.length, 22);
    sub.unsubscribe();
  });

  it("kv - writes to one key are coalesced while it waits: only the latest intent is written", async () => {
    const memory = new CatalogMemory();
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent });
    await store.load();
    const before = store.stats.writes;
    store.enqueue("coalesce", "c0", rec("c0", { service: "coalesce" }));
    for (let p = 1; p <= 50; p++) store.enqueue("coalesce", "c1", rec("c1", { service: "coalesce", port: p }));
    await store.flush(5000);
    assert.ok(store.stats.writes - before <= 3, `wrote ${store.stats.writes - before}`);
    assert.equal(memory.get("coalesce", "c1")?.port, 50);
  });

  it("kv - a restart loads live records and delete markers (service still known with its last revision)", async () => {
    const memory = new CatalogMemory();
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent });
    const records = await store.load();
    assert.equal(records.length, 22);
    const orders = memory.service("orders");
    assert.equal(orders.instances.length, 19);
    assert.equal(orders.known, true);
    store.enqueue("payments", "p1", null);
    await store.flush(5000);
    const m2 = new CatalogMemory();
    const s2 = await KvCatalog.open(nc, m2, { replicas: 1, retryForMs: 5000, logger: silent });
    await s2.load();
    const pay = m2.service("payments");
    assert.deepEqual([pay.known, pay.instances.length], [true, 0]);
    assert.equal(pay.revision, memory.service("payments").revision);
    assert.equal(m2.revision, memory.revision);
  });

  it("kv - a second writer is never silently overwritten: the conflict is detected, counted, then resolved on top", async () => {
    const memory = new CatalogMemory();
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent });
    await store.load();
    const kv = await new Kvm(nc).open(CATALOG_BUCKET);
    const other = await kv.put("orders.i0", JSON.stringify(rec("i0", { port: 1 })));
    store.enqueue("orders", "i0", rec("i0", { port: 2 }));
    await store.flush(5000);
    assert.equal(store.stats.conflicts, 1);
    const e = await kv.get("orders.i0");
    assert.ok(e && e.revision > other);
    assert.equal(e.json<CatalogInstance>().port, 2);
  });

  it("kv - corrupt records in the bucket are skipped and counted at load", async () => {
    const kv = await new Kvm(nc).open(CATALOG_BUCKET);
    await kv.put("orders.bad", "{not json");
    await kv.put("orders.mismatch", JSON.stringify(rec("other")));
    const memory = new CatalogMemory();
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent });
    const records = await store.load();
    assert.equal(store.stats.corruptRecords, 2);
    assert.ok(records.every((r) => r.id !== "bad" && r.id !== "other"));
  });

  it("kv - a write during a NATS outage is retried until the server is back", async () => {
    const conn = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const memory = new CatalogMemory();
      const store = await KvCatalog.open(conn, memory, { replicas: 1, retryForMs: 20_000, logger: silent });
      await store.load();
      await nats.stop("SIGKILL");
      store.enqueue("outage", "o1", rec("o1", { service: "outage" }));
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(memory.get("outage", "o1"), undefined, "not confirmed while the server is down");
      await nats.start();
      assert.ok(await store.flush(20_000));
      assert.equal(memory.get("outage", "o1")?.id, "o1");
      assert.equal(store.stats.failures, 0);
      const kv = await new Kvm(conn).open(CATALOG_BUCKET);
      assert.equal((await kv.get("outage.o1"))?.json<CatalogInstance>().id, "o1");
    } finally {
      await conn.close();
      if (!nats.running) await nats.start();
    }
  });
  it("kv - merged intents count once in stats.pending, which is back to 0 when the queue drains", async () => {
    const memory = new CatalogMemory();
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent });
    await store.load();
    // 5 keys, each changed 40 times before its write: at most 5 writes wait at any time.
    for (let round = 0; round < 40; round++) for (let k = 0; k < 5; k++) store.enqueue("merged", `m${k}`, rec(`m${k}`, { service: "merged", weight: round + 1 }));
    assert.ok(store.stats.pending <= 5, `pending ${store.stats.pending}`);
    assert.ok(await store.flush(10_000));
    assert.equal(store.stats.pending, 0);
    assert.deepEqual(memory.service("merged").instances.map((i) => i.weight).sort(), [40, 40, 40, 40, 40]);
  });
});
