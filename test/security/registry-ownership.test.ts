// Attack 3 of "Secure by default", replayed against real processes: a real nats-server with the
// generated per-host users, a real roster-registry and two real roster-agent processes. Host B
// registers the instance id host A owns (another address): on the old "last registration wins"
// the catalog flipped between the two and both agents were asked to resync every few seconds.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { startSecuredNats, waitFor, type ChildProc, type SecuredNats } from "roster-testkit";
import { instancesOf, startAgentProc, startRegistryProc, statusOf, type RegistryProc } from "./registry-support.js";

describe("security: instance ownership (attack 3, real processes)", () => {
  let nats: SecuredNats;
  let dir: string;
  let registry: RegistryProc;
  let agentA: ChildProc | undefined;
  let agentB: ChildProc | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roster-sec-own-"));
    nats = await startSecuredNats({ hosts: ["host-a", "host-b"], gateways: 0 });
    registry = await startRegistryProc(dir, nats.url, { deregisterAfter: "3s" }, await nats.env("registry"));
    agentA = await startAgentProc(dir, nats.url, "host-a", [{ name: "orders", id: "orders-1", port: 8080, address: "127.0.0.2" }], await nats.env("agent-host-a"));
    await waitFor(async () => (await instancesOf(registry.base, "orders")).some((i) => i.id === "orders-1" && i.host === "host-a"), { timeoutMs: 15_000, what: "host-a's orders-1" });
  });
  after(async () => {
    for (const p of [agentA, agentB]) p?.kill("SIGKILL");
    await registry?.stop();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("ownership - another host registering an id a live host owns is refused and counted; no flip, no resync storm", async () => {
    agentB = await startAgentProc(
      dir,
      nats.url,
      "host-b",
      [
        { name: "orders", id: "orders-1", port: 9090, address: "127.0.0.3" },
        { name: "orders", id: "orders-2", port: 9091, address: "127.0.0.3" },
      ],
      await nats.env("agent-host-b"),
    );
    // The legitimate part of host-b's registration applies.
    await waitFor(async () => (await instancesOf(registry.base, "orders")).some((i) => i.id === "orders-2" && i.host === "host-b"), { timeoutMs: 15_000, what: "host-b's orders-2" });
    await waitFor(async () => ((await statusOf(registry.base)).drops.byReason.conflict ?? 0) >= 1, { timeoutMs: 5000, what: "a conflict drop" });
    const resyncsBefore = (await statusOf(registry.base)).resyncsPublished;
    // Three seconds (15 heartbeats of each agent): the owner's record never moves.
    const seen = new Set<string>();
    for (const t0 = Date.now(); Date.now() - t0 < 3000; await sleep(100)) {
      const one = (await instancesOf(registry.base, "orders")).find((i) => i.id === "orders-1");
      seen.add(`${one?.host}@${one?.address}:${one?.port}`);
    }
    assert.deepEqual([...seen], ["host-a@127.0.0.2:8080"]);
    const resyncs = (await statusOf(registry.base)).resyncsPublished - resyncsBefore;
    assert.ok(resyncs === 0, `${resyncs} resync requests in 3 s: the conflict turned into a resync loop`);
    // The loser was told (its agent logs the refused ids).
    await agentB.waitForOutput("owned by another host", 5000);
  });

  it("ownership - the owner's shutdown hands the id to the other host (the legitimate move)", async () => {
    await agentA!.stop();
    await waitFor(
      async () => (await instancesOf(registry.base, "orders")).some((i) => i.id === "orders-1" && i.host === "host-b" && i.address === "127.0.0.3" && i.port === 9090),
      { timeoutMs: 10_000, what: "orders-1 moved to host-b after host-a shut down" },
    );
  });
});
