// A writer that stops while a renewal of its lease is in flight still releases the lease, so a
// standby (or the next registry) takes over at once instead of after a ttl. Real nats-server.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { KvLease, LEASE_BUCKET, LEASE_KEY } from "../../src/adapters/store/lease-kv.js";
import { silent } from "./helpers.js";

describe("registry lease release", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  before(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.close();
  });

  it("lease - close() during an in-flight renewal deletes the key (the standby need not wait a ttl)", async () => {
    const kv = await new Kvm(nc).open(LEASE_BUCKET);
    for (let round = 0; round < 3; round++) {
      // Renewals every (ttl - margin) / 2 = 100 ms, so one is soon in flight.
      const lease = await KvLease.open(nc, { registryId: `r-${round}`, replicas: 1, ttlMs: 300, marginMs: 100, logger: silent, onEvent: () => undefined });
      lease.start();
      await waitFor(() => lease.state.role === "leader" && lease.canWrite(), { what: "lease held" });
      // Catch the moment a renewal's compare-and-set has been sent and not yet answered.
      const inFlight = () => (lease as unknown as { casInFlight: Promise<void> | null }).casInFlight !== null;
      for (const until = Date.now() + 5_000; !inFlight() && Date.now() < until; ) await nextTurn();
      assert.ok(inFlight(), "a renewal was caught in flight");
      await lease.close(true);
      const e = await kv.get(LEASE_KEY);
      assert.ok(!e || e.operation !== "PUT", `round ${round}: the lease key is released (found ${e?.operation} by ${e ? new TextDecoder().decode(e.value) : ""})`);
    }
  });
});
