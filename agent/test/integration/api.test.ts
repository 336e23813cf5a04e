import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NatsServer, waitFor } from "roster-testkit";
import { pino } from "pino";
import { encode, ResyncMessage, resyncSubject } from "roster-schemas";
import { build, type Agent } from "../../src/app.js";
import type { AgentConfig } from "../../src/config.js";
import { AGENT_ERROR_CODES } from "../../src/errors.js";
import { httpJson, Wire } from "./helpers.js";

const HOST = "api-host";

function config(): AgentConfig {
  return { host: { id: HOST }, heartbeatIntervalMs: 200, drainPeriodMs: 0, api: { host: "127.0.0.1", port: 0 }, services: [] };
}

describe("local API", () => {
  let nats: NatsServer;
  let wire: Wire;
  let agent: Agent;
  let base = "";

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    wire = await Wire.watch(nats.url, HOST);
    agent = build(config(), { logger: pino({ level: "silent" }), nats: nats.url });
    base = (await agent.start()).apiUrl;
    await waitFor(() => agent.link.isConnected, { timeoutMs: 5000, what: "agent connected" });
  });

  after(async () => {
    await agent?.close();
    await wire?.close();
    await nats?.close();
  });

  it("api - healthz reports the host, epoch and NATS state", async () => {
    const r = await httpJson("GET", `${base}/healthz`);
    assert.equal(r.status, 200);
    assert.equal(r.json.status, "ok");
    assert.equal(r.json.hostId, HOST);
    assert.equal(r.json.natsConnected, true);
  });

  it("api - PUT registers an instance and a register goes out at once", async () => {
    const t0 = performance.now();
    const r = await httpJson("PUT", `${base}/v1/agent/instances`, { name: "orders", port: 18999, address: "127.0.0.1", tags: ["a"], checks: [{ type: "ttl", ttl: "5s" }] });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { id: `${HOST}-18999`, replaced: false });
    const reg = await waitFor(() => wire.of("register", t0).find((m) => m.instances.some((i) => i.id === `${HOST}-18999`)), { timeoutMs: 3000, what: "register" });
    assert.equal(reg.instances[0]?.status, "critical", "a ttl check starts critical");
    const list = await httpJson("GET", `${base}/v1/agent/instances`);
    const instances = list.json.instances as Array<{ id: string; status: string; checks: unknown[] }>;
    assert.equal(instances.length, 1);
    assert.equal(instances[0]?.checks.length, 1);
    const one = await httpJson("GET", `${base}/v1/agent/instances/${HOST}-18999`);
    assert.equal(one.json.service, "orders");
  });

  it("api - ttl pass makes the check passing (health message), fail critical; note is the output", async () => {
    const id = `${HOST}-18999`;
    const t0 = performance.now();
    assert.equal((await httpJson("PUT", `${base}/v1/agent/instances/${id}/checks/ttl-0/pass`, { note: "all good" })).status, 200);
    const h = await waitFor(() => wire.of("health", t0).find((m) => m.check.status === "passing"), { timeoutMs: 3000, what: "health passing" });
    assert.equal(h.check.output, "all good");
    assert.equal(h.instanceStatus, "passing");
    const emptyJson = await fetch(`${base}/v1/agent/instances/${id}/checks/ttl-0/fail`, { method: "PUT", headers: { "content-type": "application/json" } });
    assert.equal(emptyJson.status, 200, "an empty JSON body is no body");
    await waitFor(() => wire.of("health", t0).find((m) => m.check.status === "critical"), { timeoutMs: 3000, what: "health critical" });
  });

  it("api - maintenance on publishes a register with draining; off restores", async () => {
    const id = `${HOST}-18999`;
    const t0 = performance.now();
    const on = await httpJson("PUT", `${base}/v1/agent/instances/${id}/maintenance`, { enable: true, reason: "deploy" });
    assert.equal(on.status, 200);
    await waitFor(() => wire.of("register", t0).find((m) => m.instances[0]?.status === "draining"), { timeoutMs: 3000, what: "register draining" });
    const t1 = performance.now();
    await httpJson("PUT", `${base}/v1/agent/instances/${id}/maintenance`, { enable: false });
    await waitFor(() => wire.of("register", t1).find((m) => m.instances[0]?.status !== "draining"), { timeoutMs: 3000, what: "register not draining" });
  });

  it("api - bad input is a 4xx JSON error with a ROSTER_ code and the field", async () => {
    const cases: Array<[string, string, unknown, number, string, RegExp?]> = [
      ["PUT", "/v1/agent/instances", { name: "bad.name", port: 1 }, 400, "ROSTER_BAD_REQUEST", /name: /],
      ["PUT", "/v1/agent/instances", { name: "x", port: 1, checks: [{ type: "http", interval: "often" }] }, 400, "ROSTER_BAD_REQUEST", /checks\[0\]\.interval: expected a duration like "1s"/],
      ["PUT", "/v1/agent/instances", "{not json", 400, "ROSTER_BAD_REQUEST", /not valid JSON/],
      ["PUT", "/v1/agent/instances", "", 400, "ROSTER_BAD_REQUEST", /invalid instance/],
      ["PUT", "/v1/agent/instances", { name: "other", id: `${HOST}-18999`, port: 2 }, 409, "ROSTER_CONFLICT"],
      ["DELETE", "/v1/agent/instances/nope", undefined, 404, "ROSTER_NOT_FOUND"],
      ["PUT", "/v1/agent/instances/nope/maintenance", { enable: true }, 404, "ROSTER_NOT_FOUND"],
      ["PUT", `/v1/agent/instances/${HOST}-18999/maintenance`, { reason: "x" }, 400, "ROSTER_BAD_REQUEST", /enable/],
      ["PUT", `/v1/agent/instances/${HOST}-18999/checks/ttl-0/maybe`, undefined, 400, "ROSTER_BAD_REQUEST", /verdict/],
      ["PUT", `/v1/agent/instances/${HOST}-18999/checks/nope/pass`, undefined, 404, "ROSTER_NOT_FOUND"],
      ["GET", "/v1/nothing", undefined, 404, "ROSTER_NOT_FOUND"],
    ];
    for (const [method, path, body, status, code, re] of cases) {
      const r = await httpJson(method, `${base}${path}`, body);
      assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, code, `${method} ${path}`);
      assert.equal(typeof r.json.message, "string");
      if (re) assert.match(String(r.json.message), re, `${method} ${path}`);
      assert.ok(code in AGENT_ERROR_CODES);
    }
  });

  it("api - a report for a non-ttl check is ROSTER_NOT_TTL", async () => {
    const r = await httpJson("PUT", `${base}/v1/agent/instances`, { name: "web", id: "web-a", port: 1, checks: [{ type: "tcp", interval: "10s" }] });
    assert.equal(r.status, 200);
    const bad = await httpJson("PUT", `${base}/v1/agent/instances/web-a/checks/tcp-0/pass`);
    assert.equal(bad.status, 409);
    assert.equal(bad.json.code, "ROSTER_NOT_TTL");
  });

  it("api - a resync request republishes the register; an invalid one is dropped and counted", async () => {
    const t0 = performance.now();
    wire.nc.publish(resyncSubject(HOST), encode(ResyncMessage, { v: 1, kind: "resync", hostId: HOST, reason: "digest-mismatch" }));
    await waitFor(() => wire.of("register", t0).length > 0, { timeoutMs: 3000, what: "register after resync" });
    const before = agent.link.snapshot().droppedInvalidResync;
    wire.nc.publish(resyncSubject(HOST), new TextEncoder().encode("{nope"));
    wire.nc.publish(resyncSubject(HOST), encode(ResyncMessage, { v: 1, kind: "resync", hostId: "other", reason: "digest-mismatch" }));
    await waitFor(() => agent.link.snapshot().droppedInvalidResync === before + 2, { timeoutMs: 3000, what: "two dropped resyncs" });
  });

  it("api - DELETE deregisters (reason api) and republishes the set", async () => {
    const t0 = performance.now();
    const r = await httpJson("DELETE", `${base}/v1/agent/instances/web-a`);
    assert.equal(r.status, 200);
    const d = await waitFor(() => wire.of("deregister", t0)[0], { timeoutMs: 3000, what: "deregister" });
    assert.equal(d.reason, "api");
    assert.deepEqual(d.instances, [{ service: "web", instanceId: "web-a" }]);
    await waitFor(() => wire.of("register", t0).find((m) => !m.instances.some((i) => i.id === "web-a")), { timeoutMs: 3000, what: "register without web-a" });
  });

  it("api - heartbeats flow with increasing seq and the current digest", async () => {
    const t0 = performance.now();
    await waitFor(() => wire.of("heartbeat", t0).length >= 3, { timeoutMs: 5000, what: "3 heartbeats" });
    const hbs = wire.of("heartbeat", t0);
    for (let i = 1; i < hbs.length; i++) assert.ok(hbs[i]!.seq > hbs[i - 1]!.seq);
    assert.equal(hbs.at(-1)!.digest, agent.host.digest());
    assert.equal(hbs.at(-1)!.heartbeatIntervalMs, 200);
    assert.equal(wire.invalid, 0, "every message on the wire is valid");
  });
});

describe("agent without NATS", () => {
  it("nats - the agent starts and checks while NATS is down, then registers when it comes up", async () => {
    const nats = await NatsServer.start({ jetstream: false });
    const url = nats.url;
    await nats.stop();
    const agent = build(
      { ...config(), host: { id: "late-host" }, services: [{ id: "i1", service: "s", address: "127.0.0.1", port: 1, tags: [], meta: {}, weight: 100, checks: [] }] },
      { logger: pino({ level: "silent" }), nats: url },
    );
    let wire: Wire | undefined;
    try {
      const { apiUrl } = await agent.start();
      const h = await httpJson("GET", `${apiUrl}/healthz`);
      assert.equal(h.json.natsConnected, false);
      await new Promise((r) => setTimeout(r, 500));
      await nats.start();
      wire = await Wire.watch(url, "late-host");
      const reg = await waitFor(() => wire!.of("register")[0], { timeoutMs: 10_000, what: "register after NATS came up" });
      assert.deepEqual(reg.instances.map((i) => i.id), ["i1"]);
      await waitFor(() => wire!.of("heartbeat").length > 0, { timeoutMs: 5000, what: "heartbeat" });
    } finally {
      await agent.close();
      await wire?.close();
      await nats.close();
    }
  });
});
