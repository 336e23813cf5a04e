import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { catalogSubject } from "roster-schemas";
import { CatalogMirror } from "../../src/adapters/mirror.js";
import { SnapshotTimeoutError } from "../../src/errors.js";
import { FakeRegistry, makeInstance } from "./helpers.js";

describe("mirror", () => {
  let nats: NatsServer;
  let dir: string;
  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    dir = await mkdtemp(join(tmpdir(), "roster-mirror-"));
  });
  after(async () => {
    await nats.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(opts: ConstructorParameters<typeof CatalogMirror>[0] = {}) {
    const reg = await FakeRegistry.start(nats.url);
    const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const mirror = new CatalogMirror({ presenceIntervalMs: 200, ...opts });
    mirror.attach(nc);
    const cleanup = async () => {
      await mirror.close();
      await nc.close().catch(() => {});
      await reg.close();
    };
    return { reg, nc, mirror, cleanup };
  }

  test("mirror - first use waits for the snapshot, then applies deltas in order", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      reg.put(makeInstance("orders", "o1", 1001));
      reg.put(makeInstance("orders", "o2", 1002));
      const view = await mirror.waitReady("orders");
      assert.equal(view.instances.length, 2);
      assert.equal(view.known, true);
      assert.equal(mirror.revision("orders"), 2);
      const seen: number[] = [];
      mirror.on("change", (s: string, rev: number) => s === "orders" && seen.push(rev));
      reg.put(makeInstance("orders", "o3", 1003));
      reg.remove("orders", "o1");
      reg.put(makeInstance("orders", "o2", 1002, { status: "critical" }));
      await waitFor(() => mirror.revision("orders") === 5, { timeoutMs: 5000, what: "revision 5" });
      assert.deepEqual(seen, [3, 4, 5]);
      const ids = mirror.view("orders")!.instances.map((i) => `${i.id}:${i.status}`).sort();
      assert.deepEqual(ids, ["o2:critical", "o3:passing"]);
      assert.equal(mirror.stats.gaps, 0);
    } finally {
      await cleanup();
    }
  });

  test("mirror - unknown service resolves with known=false and follows it when it appears", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      const view = await mirror.waitReady("later");
      assert.equal(view.known, false);
      assert.equal(view.instances.length, 0);
      reg.put(makeInstance("later", "l1", 2001));
      await waitFor(() => mirror.view("later")?.instances.length === 1, { timeoutMs: 5000, what: "later instance" });
    } finally {
      await cleanup();
    }
  });

  test("mirror - a delta with a wrong prevRevision triggers a resync", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      reg.put(makeInstance("pay", "p1", 1001));
      await mirror.waitReady("pay");
      const before = reg.snapshotRequests;
      // A change the mirror never hears about, then one that reveals the gap.
      reg.put(makeInstance("pay", "p2", 1002), { publish: false });
      reg.put(makeInstance("pay", "p3", 1003));
      await waitFor(() => mirror.view("pay")?.instances.length === 3, { timeoutMs: 5000, what: "resynced view" });
      assert.ok(reg.snapshotRequests > before, "a snapshot was requested again");
      assert.ok(mirror.stats.gaps >= 1);
      assert.equal(mirror.revision("pay"), reg.catalog.get("pay")!.rev);
      // A delta published with an explicitly wrong prevRevision does the same.
      const gapsBefore = mirror.stats.gaps;
      reg.put(makeInstance("pay", "p4", 1004), { prevRevision: 1 });
      await waitFor(() => mirror.view("pay")?.instances.length === 4, { timeoutMs: 5000, what: "p4" });
      assert.ok(mirror.stats.gaps > gapsBefore);
    } finally {
      await cleanup();
    }
  });

  test("mirror - concurrent gaps coalesce into few snapshot requests", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      reg.put(makeInstance("burst", "b0", 1000));
      await mirror.waitReady("burst");
      const before = reg.snapshotRequests;
      for (let i = 1; i <= 20; i++) reg.put(makeInstance("burst", `b${i}`, 1000 + i), { prevRevision: 99_999 });
      await waitFor(() => mirror.view("burst")?.instances.length === 21, { timeoutMs: 5000, what: "all 21" });
      assert.ok(reg.snapshotRequests - before < 10, `snapshot requests: ${reg.snapshotRequests - before}`);
    } finally {
      await cleanup();
    }
  });

  test("mirror - bad messages are dropped and counted, never thrown", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      reg.put(makeInstance("bad", "x1", 1001));
      await mirror.waitReady("bad");
      reg.publishRaw(catalogSubject("bad"), "not json{");
      reg.publishRaw(catalogSubject("bad"), JSON.stringify({ v: 1, kind: "delta", op: "put", service: "bad" }));
      reg.publishRaw(catalogSubject("bad"), "x".repeat(300 * 1024));
      reg.publishRaw("roster.v1.registry.presence", "{}");
      const good = makeInstance("bad", "x2", 1002);
      reg.put(good);
      await waitFor(() => mirror.view("bad")?.instances.length === 2, { timeoutMs: 5000, what: "x2" });
      const dropped = mirror.stats.dropped;
      assert.equal(dropped["delta:not-json"], 1);
      assert.equal(dropped["delta:invalid"], 1);
      assert.equal(dropped["delta:too-large"], 1);
      assert.equal(dropped["presence:invalid"], 1);
    } finally {
      await cleanup();
    }
  });

  test("mirror - first use fails with ROSTER_SNAPSHOT_TIMEOUT when nobody answers, bounded", async () => {
    const { reg, mirror, cleanup } = await setup({ snapshotTimeoutMs: 300, snapshotRequestTimeoutMs: 100 });
    try {
      reg.answerSnapshots = false;
      const t0 = Date.now();
      await assert.rejects(mirror.waitReady("nobody"), (err: unknown) => err instanceof SnapshotTimeoutError && err.code === "ROSTER_SNAPSHOT_TIMEOUT");
      assert.ok(Date.now() - t0 < 2000);
      // It keeps trying in the background and succeeds once the registry answers.
      reg.answerSnapshots = true;
      reg.put(makeInstance("nobody", "n1", 1001), { publish: false });
      const view = await mirror.waitReady("nobody", 5000);
      assert.equal(view.instances.length, 1);
    } finally {
      await cleanup();
    }
  });

  test("mirror - presence lost makes it stale but serving; presence back resyncs and clears", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      reg.put(makeInstance("st", "s1", 1001));
      await mirror.waitReady("st");
      await waitFor(() => !mirror.isStale, { timeoutMs: 5000, what: "fresh" });
      const events: Array<[boolean, string | undefined]> = [];
      mirror.on("stale", (s: boolean, r?: string) => events.push([s, r]));
      reg.stopPresence();
      await waitFor(() => mirror.isStale, { timeoutMs: 5000, what: "stale" });
      assert.equal(mirror.staleReason, "presence-lost");
      assert.equal(mirror.view("st")!.instances.length, 1, "still serving");
      // A change missed while the registry was silent is picked up by the resync.
      reg.put(makeInstance("st", "s2", 1002), { publish: false });
      reg.startPresence();
      await waitFor(() => !mirror.isStale, { timeoutMs: 5000, what: "fresh again" });
      assert.equal(mirror.view("st")!.instances.length, 2);
      // (Under heavy load presence can also flap before the stop: only the first and last matter.)
      assert.deepEqual(events[0], [true, "presence-lost"]);
      assert.deepEqual(events.at(-1), [false, undefined]);
    } finally {
      await cleanup();
    }
  });

  test("mirror - nats-server restart: stale while down, recovers and gets new changes after", async () => {
    const { reg, mirror, cleanup } = await setup();
    try {
      reg.put(makeInstance("rs", "r1", 1001));
      await mirror.waitReady("rs");
      await nats.stop();
      await waitFor(() => mirror.isStale, { timeoutMs: 5000, what: "stale" });
      assert.equal(mirror.view("rs")!.instances.length, 1);
      await nats.start();
      await waitFor(() => !mirror.isStale, { timeoutMs: 10_000, what: "fresh after restart" });
      reg.put(makeInstance("rs", "r2", 1002));
      await waitFor(() => mirror.view("rs")!.instances.length === 2, { timeoutMs: 5000, what: "new change after restart" });
    } finally {
      await cleanup();
    }
  });

  test("mirror - last-known-good file is written atomically and loaded without NATS", async () => {
    const file = join(dir, "lkg", "catalog.json");
    const { reg, mirror, cleanup } = await setup({ lastKnownGoodFile: file, lastKnownGoodDebounceMs: 50 });
    try {
      reg.put(makeInstance("lkg", "k1", 1001));
      reg.put(makeInstance("lkg", "k2", 1002));
      await mirror.waitReady("lkg");
      await waitFor(async () => (await readFile(file, "utf8").catch(() => "")).includes("k2"), { timeoutMs: 5000, what: "file" });
    } finally {
      await cleanup();
    }
    const offline = new CatalogMirror({ lastKnownGoodFile: file });
    try {
      assert.equal(offline.isStale, true);
      assert.equal(await offline.loadLastKnownGood(), 1);
      const view = await offline.waitReady("lkg", 100);
      assert.equal(view.fromLastKnownGood, true);
      assert.deepEqual(view.instances.map((i) => i.id).sort(), ["k1", "k2"]);
    } finally {
      await offline.close();
    }
    // A corrupt file is ignored, not thrown.
    await writeFile(file, "{ nope");
    const corrupt = new CatalogMirror({ lastKnownGoodFile: file });
    assert.equal(await corrupt.loadLastKnownGood(), 0);
    await corrupt.close();
  });
});

