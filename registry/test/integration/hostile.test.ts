import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AGENT_MESSAGE_KINDS, RegisterMessage, agentSubject, encode } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

type Status = { revision: number; instances: number; drops: { total: number; byReason: Record<string, number>; byKind: Record<string, number> } };

describe("registry hostile input (real nats-server)", () => {
  let nats: NatsServer;
  let reg: Registry;
  let nc: NatsConnection;
  let agent: FakeAgent;

  before(async () => {
    nats = await NatsServer.start();
    reg = await startRegistry(nats.url);
    nc = await connect({ servers: nats.url });
    // 60 s heartbeat (the registry's maxHeartbeatInterval): this agent never beats, and with the
    // default 200 ms it went silent mid-test under load (agent-lost moved the revision).
    agent = await FakeAgent.connect(nats.url, "good-host", 1, 60_000);
    await agent.register([inst("g1")]);
    await waitFor(() => reg.memory.instanceCount === 1, { what: "baseline instance" });
  });

  after(async () => {
    await agent?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
  });

  it("hostile - malformed, oversized, not-JSON, host-mismatch and hostile-subject messages are counted drops", async () => {
    const baseline = (await getJson(`${reg.url}/v1/status`)).body as Status;
    const valid = (hostId: string) =>
      encode(RegisterMessage, { v: 1, kind: "register", hostId, epoch: 1, seq: 1000, sentAt: 0, heartbeatIntervalMs: 200, instances: [inst("evil")] });
    let expected = 0;
    const te = new TextEncoder();
    for (const kind of AGENT_MESSAGE_KINDS) {
      const subject = agentSubject("good-host", kind);
      nc.publish(subject, te.encode("{not json")); // not-json
      nc.publish(subject, te.encode(JSON.stringify({ v: 1, kind, hostId: "good-host" }))); // invalid
      nc.publish(subject, te.encode(JSON.stringify({ v: 99, kind, hostId: "good-host", epoch: -1 }))); // invalid
      nc.publish(subject, te.encode("null")); // invalid
      nc.publish(subject, te.encode(JSON.stringify("x".repeat(300 * 1024)))); // too-large
      nc.publish(subject, new Uint8Array([0xff, 0xfe, 0x00, 0x01])); // not-json
      expected += 6;
    }
    // A valid register whose payload host differs from the subject's host token.
    nc.publish(agentSubject("good-host", "register"), valid("other-host"));
    // A valid register payload on the heartbeat subject: kind mismatch is invalid.
    nc.publish(agentSubject("good-host", "heartbeat"), valid("good-host"));
    // Hostile subjects under the wildcard.
    nc.publish("roster.v1.agent.good-host.nope", valid("good-host"));
    nc.publish("roster.v1.agent.-bad.register", valid("good-host"));
    nc.publish("roster.v1.agent.a%b.register", valid("good-host"));
    expected += 5;
    await nc.flush();

    const st = await waitFor(async () => {
      const s = (await getJson(`${reg.url}/v1/status`)).body as Status;
      return s.drops.total - baseline.drops.total >= expected ? s : null;
    }, { what: `${expected} counted drops` });
    assert.equal(st.drops.total - baseline.drops.total, expected);
    assert.equal(st.drops.byReason["not-json"], 8);
    assert.equal(st.drops.byReason["too-large"], 4);
    assert.equal(st.drops.byReason["invalid"], 13);
    assert.equal(st.drops.byReason["host-mismatch"], 1);
    assert.equal(st.drops.byReason["bad-subject"], 3);
    assert.equal(st.drops.byKind["unknown"], 3);
    assert.ok((st.drops.byKind["register"] ?? 0) >= 7);
    // Alive and unchanged.
    assert.equal((await getJson(`${reg.url}/healthz`)).status, 200);
    assert.equal(st.revision, baseline.revision, "catalog unchanged");
    assert.equal(st.instances, 1);
    assert.equal(reg.memory.get("orders", "evil"), undefined);
  });

  it("hostile - a flood of garbage does not stop valid traffic", async () => {
    const te = new TextEncoder();
    for (let i = 0; i < 2000; i++) nc.publish(agentSubject("good-host", "health"), te.encode(`{"garbage":${i}}`));
    await agent.health("g1", "critical");
    await waitFor(() => reg.memory.get("orders", "g1")?.status === "critical", { what: "valid health applied after garbage" });
  });
});
