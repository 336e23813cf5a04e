import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry, type Inst } from "./helpers.js";

describe("registry across a nats-server restart", () => {
  let nats: NatsServer;
  let reg: Registry;
  let agent: FakeAgent;
  let stopBeat = () => {};

  before(async () => {
    nats = await NatsServer.start();
    reg = await startRegistry(nats.url);
    agent = await FakeAgent.connect(nats.url, "host-n", 1, 400);
  });

  after(async () => {
    stopBeat();
    await agent?.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
  });

  it("nats restart - keeps serving from memory, reconnects, no agent-lost from its own outage, converges", async () => {
    await agent.register([inst("n1"), inst("n2", { port: 8081 })]);
    stopBeat = agent.beat();
    await waitFor(() => reg.memory.instanceCount === 2, { what: "registered" });

    await nats.stop("SIGKILL");
    await waitFor(() => !reg.status().natsConnected, { what: "registry notices the outage" });
    const during = await getJson(`${reg.url}/v1/services/orders/instances`);
    assert.equal(during.status, 200, "HTTP keeps serving from memory");
    assert.equal((during.body as Inst[]).length, 2);
    assert.equal((await getJson(`${reg.url}/readyz`)).status, 503);
    await sleep(2000); // well past 3 × 400 ms of agent silence

    await nats.start();
    await waitFor(() => reg.status().natsConnected, { what: "registry reconnects", timeoutMs: 15_000 });
    assert.ok((reg.status().reconnects as number) >= 1);
    // The agent republishes after its own reconnect (a real agent registers on every reconnect).
    await waitFor(() => !agent.nc.isClosed() && agent.nc.info !== undefined, { what: "agent reconnected" });
    await sleep(300);
    for (const i of reg.memory.all()) assert.notEqual(i.reason, "agent-lost", "the registry's own outage never marks hosts lost");
    await agent.register([inst("n1"), inst("n2", { port: 8081 }), inst("n3", { port: 8082 })]);
    await waitFor(async () => ((await getJson(`${reg.url}/v1/services/orders/instances`)).body as Inst[]).length === 3, {
      what: "converged after the agent republished",
      timeoutMs: 20_000,
    });
    await agent.health("n1", "critical");
    await waitFor(() => reg.memory.get("orders", "n1")?.status === "critical", { what: "health applied after restart", timeoutMs: 10_000 });
    assert.equal((await getJson(`${reg.url}/readyz`)).status, 200);
  });

  it("nats restart - a change decided while NATS is down is held, not announced, and written once KV is back", async () => {
    const r2 = await startRegistry(nats.url, { kvWriteRetryFor: "300ms", lease: { enabled: false } });
    const a2 = await FakeAgent.connect(nats.url, "host-m", 1, 5000);
    try {
      await a2.register([inst("m1", { service: "recon" })]);
      await waitFor(() => r2.memory.get("recon", "m1") !== undefined, { what: "registered" });
      await nats.stop("SIGKILL");
      await waitFor(() => !r2.status().natsConnected, { what: "disconnected" });
      // A change decided while KV is unreachable: handed in exactly as ingest would.
      r2.handle({ v: 1, kind: "health", hostId: "host-m", epoch: 1, seq: 100, sentAt: 0, service: "recon", instanceId: "m1",
        check: { id: "http-0", type: "http", status: "critical", since: 0 }, instanceStatus: "critical" });
      await new Promise((r) => setTimeout(r, 1000)); // > kvWriteRetryFor: held, not given up
      assert.equal(r2.memory.get("recon", "m1")?.status, "passing", "nothing announced while KV is unreachable");
      await nats.start();
      await waitFor(() => r2.memory.get("recon", "m1")?.status === "critical", { what: "written", timeoutMs: 15_000 });
      assert.equal((r2.status().kv as { failures: number }).failures, 0);
    } finally {
      await a2.close().catch(() => undefined);
      await r2.close();
    }
  });
});
