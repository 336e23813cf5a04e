import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { PRESENCE_SUBJECT, PresenceMessage, decode } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import { pino } from "pino";
import { build, type Registry } from "../../src/app.js";
import { parseConfig } from "../../src/config.js";
import { FakeAgent, getJson, inst } from "./helpers.js";

type Status = { selfPreservation: boolean; degraded: boolean; degradedReason?: string; degradedSince?: number };

describe("registry self-preservation (real nats-server)", () => {
  let nats: NatsServer;
  let reg: Registry;
  let nc: NatsConnection;
  const agents: FakeAgent[] = [];
  const stops: Array<() => void> = [];
  const lines: Array<Record<string, unknown>> = [];
  const presences: PresenceMessage[] = [];

  before(async () => {
    nats = await NatsServer.start();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    reg = build(
      parseConfig({
        nats: { url: nats.url, reconnectWait: 100 },
        http: { listen: "127.0.0.1:0" },
        presenceInterval: "200ms",
        tickInterval: "50ms",
        deregisterAfter: "500ms",
      }),
      { logger: pino({ level: "info" }, sink) },
    );
    await reg.start();
    await reg.whenReady();
    nc = await connect({ servers: nats.url });
    nc.subscribe(PRESENCE_SUBJECT, {
      callback: (_e, m) => {
        const r = decode(PresenceMessage, m.data);
        if (r.ok) presences.push(r.value);
      },
    });
  });
  after(async () => {
    for (const stop of stops) stop();
    for (const a of agents) await a.close().catch(() => undefined);
    await nc?.close();
    await reg?.close();
    await nats?.close();
  });

  it("self-preservation - a mass silence degrades the catalog (status, header, presence, one log line) and expires nothing; recovery clears it", async () => {
    const list = await fetch(`${reg.url}/v1/services`);
    assert.equal(list.headers.get("x-roster-degraded"), null, "not degraded before");
    await list.body?.cancel();
    for (const h of ["sp-1", "sp-2", "sp-3", "sp-4"]) {
      const a = await FakeAgent.connect(nats.url, h, 1, 100);
      agents.push(a);
      await a.register([inst(`${h}-i`, { service: "sp" })]);
    }
    await waitFor(() => reg.memory.service("sp").instances.length === 4, { what: "registered" });
    // All four go silent (a partition): 4 of 4 > 0.3 and >= 3, within one window.
    const st = await waitFor(async () => {
      const s = (await getJson(`${reg.url}/v1/status`)).body as Status;
      return s.degraded ? s : null;
    }, { what: "degraded" });
    assert.equal(st.selfPreservation, true);
    assert.equal(st.degradedReason, "mass-silence");
    assert.ok(typeof st.degradedSince === "number" && st.degradedSince <= Date.now());
    const degradedList = await fetch(`${reg.url}/v1/services/sp/instances`);
    assert.equal(degradedList.headers.get("x-roster-degraded"), "1");
    await degradedList.body?.cancel();
    const services = await fetch(`${reg.url}/v1/services`);
    assert.equal(services.headers.get("x-roster-degraded"), "1");
    await services.body?.cancel();
    await waitFor(() => presences.some((p) => p.degraded?.reason === "mass-silence" && p.degraded.since === st.degradedSince), { what: "presence says degraded" });
    await waitFor(() => reg.memory.service("sp").instances.every((i) => i.reason === "agent-lost"), { what: "all agent-lost" });
    await sleep(1500); // three times deregisterAfter
    assert.equal(reg.memory.service("sp").instances.length, 4, "nothing expired during the mass silence");
    const entered = lines.filter((l) => typeof l.msg === "string" && l.msg.startsWith("catalog degraded"));
    assert.equal(entered.length, 1, "one line on entry");
    assert.deepEqual(
      { hosts: entered[0]!.hosts, threshold: entered[0]!.threshold, windowMs: entered[0]!.windowMs, reason: entered[0]!.reason },
      { hosts: 4, threshold: 0.3, windowMs: 15_000, reason: "mass-silence" },
    );
    // It trips at minHosts (3) silent: the fourth host, registered last, may still be inside its
    // timeout at that moment when the machine is loaded (seen in full runs on Node 22 and 24).
    assert.ok([3, 4].includes(entered[0]!.silentHosts as number), `silentHosts ${String(entered[0]!.silentHosts)}`);
    // The partition heals: agents answer the resync with their registration.
    for (const a of agents) {
      await a.heartbeat();
      await a.register();
      stops.push(a.beat());
    }
    await waitFor(() => reg.memory.service("sp").instances.every((i) => i.status === "passing" && i.reason === undefined), { what: "restored" });
    await waitFor(() => !reg.status().degraded && !reg.status().selfPreservation, { what: "degraded off" });
    const exited = lines.filter((l) => typeof l.msg === "string" && l.msg.startsWith("catalog no longer degraded"));
    // (exactly one per episode; a loaded machine may delay a heartbeat into a second short episode)
    assert.ok(exited.length >= 1, "a line on exit");
    assert.ok((exited[0]!.silentHosts as number) < 3, "left once fewer than minHosts of them were still silent");
    assert.equal(typeof exited[0]!.durationMs, "number");
    const n = presences.length;
    await waitFor(() => presences.length > n + 1, { what: "fresh presence" });
    assert.equal(presences.at(-1)!.degraded, undefined, "presence no longer says degraded");
    const cleared = await fetch(`${reg.url}/v1/services/sp/instances`);
    assert.equal(cleared.headers.get("x-roster-degraded"), null);
    await cleared.body?.cancel();
  });
});
