import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { createBucket } from "roster-runtime";
import { CATALOG_BUCKET, CatalogDelta, type CatalogInstance } from "roster-schemas";
import { NatsServer, pauseProcess, waitFor } from "roster-testkit";
import { CatalogMemory } from "../../src/adapters/store/catalog-memory.js";
import { KvCatalog } from "../../src/adapters/store/kv-catalog.js";
import { StreamWriter, plainAckSeq } from "../../src/adapters/store/stream-writer.js";
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

  it("kv - writes ordered per service: revisions and prevRevision chain, memory holds each change when its delta arrives", async () => {
    const memory = new CatalogMemory();
    const seen: CatalogDelta[] = [];
    const store = await KvCatalog.open(nc, memory, {
      replicas: 1, retryForMs: 5000, logger: silent,
      onWritten: (d) => {
        // written (acked): memory holds this change or a later one
        assert.ok(memory.service(d.service).revision >= d.revision);
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

  it("kv - another writer's message between ours is never silently overwritten: detected, counted, every mirror told (new epoch), then written on top", async () => {
    const memory = new CatalogMemory();
    let historyChanged = 0;
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent, onHistoryChanged: () => historyChanged++ });
    await store.load();
    store.enqueue("orders", "i0", rec("i0", { port: 1 }));
    assert.ok(await store.flush(5000));
    const kv = await new Kvm(nc).open(CATALOG_BUCKET);
    const other = await kv.put("orders.i0", JSON.stringify(rec("i0", { port: 99 })));
    store.enqueue("orders", "i0", rec("i0", { port: 2 }));
    assert.ok(await store.flush(5000));
    assert.ok(store.stats.conflicts >= 1, `conflicts ${store.stats.conflicts}`);
    // The delta of the refused write announced a revision the other writer's message took.
    assert.equal(historyChanged, 1);
    const e = await kv.get("orders.i0");
    assert.ok(e && e.revision > other);
    assert.equal(e.json<CatalogInstance>().port, 2);
    assert.equal(memory.get("orders", "i0")?.port, 2);
    assert.equal(memory.service("orders").revision, e.revision);
  });

  it("kv - writes are pipelined: many in flight, and every delta's revision is the one the KV gave its record", async () => {
    const memory = new CatalogMemory();
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 5000, logger: silent });
    await store.load();
    const services = Array.from({ length: 5 }, (_, i) => `pipe${i}`);
    const subs = services.map((s) => collectDeltas(nc, s));
    await nc.flush();
    for (let round = 0; round < 2; round++) for (const s of services) for (let i = 0; i < 300; i++) store.enqueue(s, `p${i}`, rec(`p${i}`, { service: s, weight: round + 1 }));
    assert.ok(await store.flush(20_000));
    assert.ok(store.stats.peakInFlight > 10, `at most ${store.stats.peakInFlight} writes in flight`);
    const kv = await new Kvm(nc).open(CATALOG_BUCKET);
    for (const [n, s] of services.entries()) {
      const { deltas, sub } = subs[n]!;
      await waitFor(() => deltas.length >= 300, { what: `deltas of ${s}` });
      sub.unsubscribe();
      let prev = deltas[0]!.prevRevision;
      const lastRev = new Map<string, number>();
      for (const d of deltas) {
        assert.equal(d.prevRevision, prev, `${s}: chain`);
        prev = d.revision;
        lastRev.set(d.instanceId, d.revision);
      }
      for (const [id, revision] of lastRev) assert.equal((await kv.get(`${s}.${id}`))?.revision, revision, `${s}.${id}`);
    }
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
      const disconnected = (async () => {
        for await (const st of conn.status()) if (st.type === "disconnect") return;
      })();
      await nats.stop("SIGKILL");
      await disconnected;
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
  /** Memory (what the deltas announced) equals the KV read afresh (records and each service's revision). */
  async function assertMemoryIsKv(conn: NatsConnection, memory: CatalogMemory, services: string[], perService: number): Promise<void> {
    const fresh = new CatalogMemory();
    await (await KvCatalog.open(conn, fresh, { replicas: 1, retryForMs: 5000, logger: silent })).load();
    for (const s of services) {
      const view = memory.service(s);
      const kv = fresh.service(s);
      assert.equal(view.instances.length, perService, s);
      const byId = (xs: readonly CatalogInstance[]) => [...xs].sort((a, b) => a.id.localeCompare(b.id));
      assert.deepEqual(byId(view.instances), byId(kv.instances), `${s}: records`);
      // The service's revision (its last delta's) is the one the KV gave its newest record.
      assert.equal(view.revision, kv.revision, `${s}: memory's revision is the KV's`);
    }
  }

  it("kv - nats-server paused under a storm of pipelined writes: acks that never came are found stored and counted, nothing is written twice", async () => {
    const memory = new CatalogMemory();
    let historyChanged = 0;
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 30_000, ackTimeoutMs: 200, logger: silent, onHistoryChanged: () => historyChanged++ });
    await store.load();
    const services = Array.from({ length: 4 }, (_, i) => `paused${i}`);
    for (let i = 0; i < 12_000; i++) store.enqueue(services[i % 4]!, `s${i}`, rec(`s${i}`, { service: services[i % 4]! }));
    await waitFor(() => store.stats.writes >= 200, { what: "200 writes acked", intervalMs: 5 });
    process.kill(nats.pid!, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 800));
    process.kill(nats.pid!, "SIGCONT");
    assert.ok(await store.flush(30_000), "every write settled");
    assert.equal(store.stats.writes, 12_000);
    assert.deepEqual([store.stats.failures, historyChanged, store.stats.conflicts], [0, 0, 0]);
    await assertMemoryIsKv(nc, memory, services, 3000);
  });

  it("kv - the catalog stream deleted under a storm and recreated past the last confirmed revision: the refused writes are replayed with the revisions their deltas announced", async () => {
    const memory = new CatalogMemory();
    let historyChanged = 0;
    const errors: unknown[] = [];
    const store = await KvCatalog.open(nc, memory, { replicas: 1, retryForMs: 30_000, logger: silent, onHistoryChanged: () => historyChanged++, onError: (e) => errors.push(e) });
    await store.load();
    const services = Array.from({ length: 4 }, (_, i) => `lost${i}`);
    const jsm = await jetstreamManager(nc);
    const stream = `KV_${CATALOG_BUCKET}`;
    for (let i = 0; i < 400; i++) store.enqueue(services[i % 4]!, `s${i}`, rec(`s${i}`, { service: services[i % 4]! }));
    assert.ok(await store.flush(10_000));
    // Deleted in the middle of a stream of writes: those sent after it are refused (no stream).
    const deleted = jsm.streams.delete(stream);
    for (let i = 400; i < 4000; i++) store.enqueue(services[i % 4]!, `s${i}`, rec(`s${i}`, { service: services[i % 4]! }));
    await deleted;
    await waitFor(() => errors.length > 0, { what: "a refused write" });
    // What the store guard does (guard.ts): recreate the bucket, its sequence moved past the last confirmed revision.
    await createBucket(nc, CATALOG_BUCKET, { replicas: 1, history: 1, logger: silent });
    await jsm.streams.purge(stream, { seq: store.confirmedRevision + 1 });
    store.storeRecreated();
    assert.ok(await store.flush(30_000), "every write settled");
    assert.equal(historyChanged, 0, "every announced revision came true");
    assert.ok(store.stats.replayed > 0, "writes were replayed");
    assert.equal(store.stats.failures, 0);
    // The records written before the deletion are gone with the stream (the app rewrites them); every later one is there.
    const kv = await new Kvm(nc).open(CATALOG_BUCKET);
    const first = (await jsm.streams.info(stream)).state.first_seq;
    for (const s of services) {
      for (const inst of memory.service(s).instances) {
        const e = await kv.get(`${s}.${inst.id}`);
        if (e) assert.deepEqual(e.json<CatalogInstance>(), inst);
      }
    }
    assert.ok(first > 400, `first sequence ${first}`);
  });

  it("kv - writes sent but never answered for retryForMs are given up: the app is told (reconcile, new epoch) and gets the keys to rewrite", async () => {
    const memory = new CatalogMemory();
    let historyChanged = 0;
    const failed: unknown[] = [];
    const store = await KvCatalog.open(nc, memory, {
      replicas: 1, retryForMs: 1000, ackTimeoutMs: 500, logger: silent,
      onHistoryChanged: () => historyChanged++, onWriteFailed: (e) => failed.push(e),
    });
    await store.load();
    store.enqueue("gaveup", "g0", rec("g0", { service: "gaveup" }));
    assert.ok(await store.flush(5000));
    // Stopped for sure before the write goes out: one that nats-server still took and acked would never be given up.
    await pauseProcess(nats.pid!);
    try {
      store.enqueue("gaveup", "g1", rec("g1", { service: "gaveup" }));
      await waitFor(() => failed.length > 0, { what: "given up", timeoutMs: 15_000 });
    } finally {
      process.kill(nats.pid!, "SIGCONT");
    }
    assert.equal(historyChanged, 1, "its delta announced a revision that may not come true: every mirror resyncs");
    assert.ok(store.stats.failures >= 1);
    assert.ok(store.takeUnconfirmed().has("gaveup.g1"));
    assert.deepEqual([...store.takeUnconfirmed()], [], "handed over once");
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

  it("kv - the stream writer's own header bytes reach JetStream: a write at a wrong expected sequence is refused as such, a delete is stored as one", async () => {
    // stream-writer.ts encodes the write headers itself (one MsgHdrs whose encode() hands out the bytes).
    await createBucket(nc, "hdrs", { replicas: 1 });
    const writer = new StreamWriter(nc, { stream: "KV_hdrs", ackTimeoutMs: 5000, maxInFlight: 16 });
    try {
      const last = await writer.sync();
      const put = writer.send("$KV.hdrs.a", new TextEncoder().encode("1"), "put", null);
      const del = writer.send("$KV.hdrs.a", new Uint8Array(0), "del", null);
      await writer.drained();
      assert.equal(writer.failed, false);
      assert.deepEqual([put.seq, del.seq, writer.confirmed], [last + 1, last + 2, last + 2]);
      // This nats-server's acks are the plain shape the writer reads without JSON.parse.
      const ack = await nc.request("$KV.hdrs.z", new TextEncoder().encode("3"));
      assert.equal(plainAckSeq(ack.data), last + 3, new TextDecoder().decode(ack.data));
      await writer.sync();
      assert.ok(await writer.isStored(del), "stored with KV-Operation: DEL");
      const kv = await new Kvm(nc).open("hdrs");
      await kv.put("b", "foreign"); // the writer's expectation is now wrong
      const refused = writer.send("$KV.hdrs.c", new TextEncoder().encode("2"), "put", null);
      await writer.drained();
      assert.equal(writer.failed, true);
      assert.ok(refused.error instanceof JetStreamApiError && refused.error.code === JetStreamApiCodes.StreamWrongLastSequence, String(refused.error));
    } finally {
      writer.close();
    }
  });
});
