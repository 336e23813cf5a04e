// A registry shedding bulk work answers snapshot requests `snapshot-busy` with a retry-after: the
// client asks again after it (with jitter), does not count a failure, does not grow its page
// timeout, and syncs once the registry answers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { CatalogFollower } from "../../src/adapters/mirror.js";
import { FakeRegistry, makeInstance, silent } from "./helpers.js";

describe("snapshot busy", () => {
  let nats: NatsServer;
  let reg: FakeRegistry;
  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    reg = await FakeRegistry.start(nats.url);
  });
  after(async () => {
    await reg?.close();
    await nats?.close();
  });

  test("snapshot busy - three 'retry later' answers: asked again after the retry-after, synced, no failure counted", { timeout: 15_000 }, async () => {
    reg.put(makeInstance("busy", "a", 9001));
    reg.put(makeInstance("busy", "b", 9002));
    reg.busyAnswers = 3;
    reg.busyRetryAfterMs = 150;
    const nc = await connect({ servers: nats.url });
    const mirror = new CatalogFollower({ services: ["busy"], presenceIntervalMs: 200, snapshotRequestTimeoutMs: 500, logger: silent });
    try {
      const before = reg.snapshotRequests;
      const t0 = performance.now();
      mirror.attach(nc);
      await waitFor(() => mirror.view("busy")?.instances.length === 2, { timeoutMs: 10_000, what: "synced after the busy answers" });
      const took = performance.now() - t0;
      assert.equal(mirror.stats.snapshotRetryLater, 3);
      assert.equal(mirror.stats.snapshotFailures, 0, "a busy answer is not a failure");
      assert.equal(reg.snapshotRequests - before, 4, "three busy, then the page");
      assert.ok(took >= 3 * 150, `waited the retry-after each time (${took.toFixed(0)} ms)`);
      assert.equal(mirror.snapshotRequestTimeoutMs, 500, "the page timeout did not grow");
    } finally {
      await mirror.close();
      await nc.close();
    }
  });
});
