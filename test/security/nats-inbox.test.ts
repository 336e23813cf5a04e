// Attack 6 of "Secure by default", replayed against real processes: a real nats-server with the
// users and permissions scripts/nats-users.mjs generates, a real roster-registry and roster-agent,
// and the real gateway client. The old permissions let every agent and gateway user subscribe to
// all of `_INBOX.>`: an agent user received a gateway's snapshot reply and the registry's
// JetStream acks. Now each user has its own inbox prefix and may subscribe to that alone.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { connect } from "@nats-io/transport-node";
import { createGateway, type Gateway } from "roster-gateway-client";
import { Snapshot, decode, natsAuthFromEnv, natsConnectOptions, snapshotSubject } from "roster-schemas";
import { connectAs, startSecuredNats, waitFor, type ChildProc, type SecuredNats } from "roster-testkit";
import { instancesOf, startAgentProc, startRegistryProc, type RegistryProc } from "./registry-support.js";

/** Connects as a generated user with its env file's settings (its own inbox prefix included), as an operator would. */
const connectWithEnv = async (nats: SecuredNats, user: string) => connectAs(nats, user, natsAuthFromEnv(await nats.env(user)));

describe("security: reply inboxes per NATS user (attack 6, real processes)", () => {
  let nats: SecuredNats;
  let dir: string;
  let registry: RegistryProc;
  let agent: ChildProc | undefined;
  let gw: Gateway | undefined;
  const closers: Array<() => Promise<unknown>> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roster-sec-inbox-"));
    nats = await startSecuredNats({ hosts: ["host-a", "host-b"], gateways: 1 });
    // The registry's JetStream and KV calls go through its own inbox prefix (from its env file).
    registry = await startRegistryProc(dir, nats.url, {}, await nats.env("registry"));
  });
  after(async () => {
    await gw?.close();
    for (const c of closers.reverse()) await c().catch(() => undefined);
    agent?.kill("SIGKILL");
    await registry?.stop();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("nats-inbox - an agent user cannot read a gateway's snapshot reply nor the registry's JetStream acks", async () => {
    const spy = await connectWithEnv(nats, "agent-host-b");
    closers.push(() => spy.nc.close());
    const stolen: string[] = [];
    for (const subject of ["_INBOX.>", "_INBOX.gateway-1.>", "_INBOX.registry.>"]) spy.nc.subscribe(subject, { callback: (e, m) => void (e ? undefined : stolen.push(m.subject)) });
    await spy.nc.flush();
    // Traffic the spy wants: a real agent registers (the registry writes KV: acks to its inbox) and a
    // gateway user asks for a snapshot (the reply goes to the gateway's inbox).
    agent = await startAgentProc(dir, nats.url, "host-a", [{ name: "orders", id: "orders-1", port: 8080, address: "127.0.0.2" }], await nats.env("agent-host-a"));
    await waitFor(async () => (await instancesOf(registry.base, "orders")).some((i) => i.id === "orders-1"), { timeoutMs: 15_000, what: "orders-1 written to KV" });
    const g = await connectWithEnv(nats, "gateway-1");
    closers.push(() => g.nc.close());
    const reply = await g.nc.request(snapshotSubject("orders"), new Uint8Array(0), { timeout: 5000 });
    const snap = decode(Snapshot, reply.data);
    assert.ok(snap.ok && snap.value.instances.some((i) => i.id === "orders-1"), "the gateway got its own reply");
    assert.ok(reply.subject.startsWith("_INBOX.gateway-1."), `reply on ${reply.subject}`);
    await sleep(500);
    assert.deepEqual(stolen, [], "the agent user received replies addressed to others");
    await waitFor(() => spy.violations.length >= 3, { timeoutMs: 5000, what: "three refused subscriptions" });
    for (const subject of ["_INBOX.>", "_INBOX.gateway-1.>", "_INBOX.registry.>"]) {
      assert.ok(spy.violations.some((v) => /subscription/i.test(v) && v.includes(`"${subject}"`)), `no violation for ${subject}: ${spy.violations.join(" | ")}`);
    }
  });

  it("nats-inbox - an agent or gateway user cannot forge the registry's write acks: publishing into the registry's inbox is refused", async () => {
    // The registry counts a catalog write stored when an ack arrives on its inbox (`_INBOX.registry.<nuid>.<seq>`,
    // registry/src/adapters/store/stream-writer.ts): a forged ack would hide a write JetStream never took.
    for (const user of ["agent-host-b", "gateway-1"]) {
      const u = await connectWithEnv(nats, user);
      closers.push(() => u.nc.close());
      u.nc.publish("_INBOX.registry.forged.1", JSON.stringify({ stream: "KV_roster_catalog", seq: 1 }));
      await u.nc.flush();
      await waitFor(() => u.violations.some((v) => /publish/i.test(v) && v.includes("_INBOX.registry.forged.1")), { timeoutMs: 5000, what: `${user}'s refused publish` });
    }
  });

  it("nats-inbox - a client without its inbox prefix gets no reply; every Roster client works with its own", async () => {
    // Without the prefix (the old default `_INBOX.`), the server refuses the reply subscription.
    const env = await nats.env("gateway-1");
    const { ROSTER_NATS_INBOX_PREFIX: _prefix, ...withoutPrefix } = env;
    const bare = await connect({ ...natsConnectOptions(nats.url, natsAuthFromEnv(withoutPrefix)), maxReconnectAttempts: 0 });
    closers.push(() => bare.close());
    await assert.rejects(bare.request(snapshotSubject("orders"), new Uint8Array(0), { timeout: 1500 }));
    // The real gateway client, configured from the same env file as an operator would: it mirrors.
    gw = await createGateway({ nats: nats.url, natsAuth: natsAuthFromEnv(env), services: ["orders"] });
    await waitFor(() => gw!.instances("orders").some((i) => i.id === "orders-1"), { timeoutMs: 15_000, what: "the gateway's mirror of orders" });
    // The registry (KV through its prefix) keeps writing: a new registration reaches the catalog.
    await waitFor(async () => (await instancesOf(registry.base, "orders")).length === 1, { timeoutMs: 5000 });
  });
});
