import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { NatsServer, waitFor } from "@roster/testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

describe("registry self-preservation (real nats-server)", () => {
  let nats: NatsServer;
  let reg: Registry;
  const agents: FakeAgent[] = [];
  const stops: Array<() => void> = [];

  before(async () => {
    nats = await NatsServer.start();
    reg = await startRegistry(nats.url, { deregisterAfter: "500ms" });
  });
  after(async () => {
    for (const stop of stops) stop();
    for (const a of agents) await a.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
  });

  it("self-preservation - a mass silence marks everything agent-lost but expires nothing; recovery restores", async () => {
    for (const h of ["sp-1", "sp-2", "sp-3", "sp-4"]) {
      const a = await FakeAgent.connect(nats.url, h, 1, 100);
      agents.push(a);
      await a.register([inst(`${h}-i`, { service: "sp" })]);
    }
    await waitFor(() => reg.memory.service("sp").instances.length === 4, { what: "registered" });
    // All four go silent (a partition): 4 of 4 > 0.5 and >= 3.
    await waitFor(async () => ((await getJson(`${reg.url}/v1/status`)).body as { selfPreservation: boolean }).selfPreservation, { what: "self-preservation on" });
    await waitFor(() => reg.memory.service("sp").instances.every((i) => i.reason === "agent-lost"), { what: "all agent-lost" });
    await sleep(1500); // three times deregisterAfter
    assert.equal(reg.memory.service("sp").instances.length, 4, "nothing expired during the mass silence");
    // The partition heals: agents answer the resync with their registration.
    for (const a of agents) {
      await a.heartbeat();
      await a.register();
      stops.push(a.beat());
    }
    await waitFor(() => reg.memory.service("sp").instances.every((i) => i.status === "passing" && i.reason === undefined), { what: "restored" });
    await waitFor(() => !reg.status().selfPreservation, { what: "self-preservation off" });
  });
});
