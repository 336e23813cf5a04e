import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ChildProc, freePort, NatsServer, spawnNode, waitFor } from "roster-testkit";
import { AGENT_BIN, DEMO_SERVICE, httpJson, tempConfig, Wire } from "./helpers.js";

// The agent as a real process, via its bin, against a real nats-server and a real demo service.
const HOST = "proc-host";
const HEARTBEAT_MS = 200;
const HTTP_INTERVAL_MS = 300;
const FAILURES = 2;
const TTL_MS = 1000;
const DRAIN_MS = 1000;

describe("roster-agent process", () => {
  let nats: NatsServer;
  let wire: Wire;
  let demo: ChildProc;
  let agent: ChildProc;
  let api = "";
  let cleanup: () => Promise<void> = async () => {};

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    wire = await Wire.watch(nats.url, HOST);
    const demoPort = await freePort();
    demo = spawnNode(DEMO_SERVICE, [String(demoPort), "orders"]);
    await demo.waitForOutput("listening");
    const cfg = await tempConfig(
      "agent.yaml",
      `host: { id: ${HOST}, zone: z1 }
heartbeat: { interval: ${HEARTBEAT_MS}ms }
drain: { period: ${DRAIN_MS}ms }
services:
  - name: orders
    id: orders-1
    port: ${demoPort}
    address: 127.0.0.1
    checks:
      - { type: http, path: /health, interval: ${HTTP_INTERVAL_MS}ms, timeout: 200ms, failuresBeforeCritical: ${FAILURES} }
  - name: jobs
    id: jobs-1
    port: 1
    address: 127.0.0.1
    checks:
      - { type: ttl, ttl: ${TTL_MS}ms }
`,
    );
    cleanup = cfg.cleanup;
    const apiPort = await freePort();
    api = `http://127.0.0.1:${apiPort}`;
    agent = spawnNode(AGENT_BIN, ["--config", cfg.file, "--nats", nats.url, "--api", `127.0.0.1:${apiPort}`]);
    await agent.waitForOutput('"agent started"');
  });

  after(async () => {
    agent?.kill("SIGKILL");
    demo?.kill("SIGKILL");
    await wire?.close();
    await nats?.close();
    await cleanup();
  });

  it("process - start: a register with every instance, then heartbeats every interval with increasing seq", async () => {
    const reg = await waitFor(() => wire.of("register")[0], { timeoutMs: 10_000, what: "first register" });
    assert.deepEqual(reg.instances.map((i) => i.id).sort(), ["jobs-1", "orders-1"]);
    assert.equal(reg.zone, "z1");
    assert.equal(reg.heartbeatIntervalMs, HEARTBEAT_MS);
    await waitFor(() => wire.of("heartbeat").length >= 5, { timeoutMs: 10_000, what: "5 heartbeats" });
    const hbs = wire.of("heartbeat");
    for (let i = 1; i < hbs.length; i++) {
      assert.ok(hbs[i]!.seq > hbs[i - 1]!.seq, "seq increases");
      assert.equal(hbs[i]!.epoch, reg.epoch, "one epoch");
    }
    const gaps = hbs.slice(1).map((h, i) => h.at - hbs[i]!.at);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    assert.ok(mean > HEARTBEAT_MS / 2 && mean < HEARTBEAT_MS * 4, `mean heartbeat gap ${mean}ms`);
    assert.equal(hbs.at(-1)!.instanceCount, 2);
    // Every message of the epoch shares one sequence.
    const seqs = wire.seen.map((s) => s.msg.seq);
    assert.equal(new Set(seqs).size, seqs.length);
  });

  it("process - the demo service's http check passes", async () => {
    const view = await waitFor(
      async () => {
        const r = await httpJson("GET", `${api}/v1/agent/instances/orders-1`);
        return r.json.status === "passing" ? r.json : null;
      },
      { timeoutMs: 10_000, what: "orders-1 passing" },
    );
    assert.equal((view.checks as Array<{ output: string }>)[0]?.output, "HTTP 200");
  });

  it("process - ttl: a pass report → passing at once; no report → critical after ttl", async () => {
    const t0 = performance.now();
    const r = await httpJson("PUT", `${api}/v1/agent/instances/jobs-1/checks/ttl-0/pass`, { note: "batch ok" });
    assert.equal(r.status, 200);
    const pass = await waitFor(() => wire.of("health", t0).find((m) => m.instanceId === "jobs-1" && m.check.status === "passing"), { timeoutMs: 5000, what: "ttl passing" });
    assert.equal(pass.check.output, "batch ok");
    const crit = await waitFor(() => wire.of("health", t0).find((m) => m.instanceId === "jobs-1" && m.check.status === "critical"), { timeoutMs: 10_000, what: "ttl critical" });
    const after = crit.at - pass.at;
    assert.ok(after >= TTL_MS * 0.8 && after < TTL_MS + 4000, `critical ${after}ms after the report (ttl ${TTL_MS}ms)`);
    assert.match(crit.check.output ?? "", /TTL expired/);
    assert.equal(crit.instanceStatus, "critical");
  });

  it("process - maintenance on → a register with the instance draining", async () => {
    const t0 = performance.now();
    const r = await httpJson("PUT", `${api}/v1/agent/instances/jobs-1/maintenance`, { enable: true, reason: "test" });
    assert.equal(r.status, 200);
    const reg = await waitFor(() => wire.of("register", t0)[0], { timeoutMs: 5000, what: "register after maintenance" });
    assert.equal(reg.instances.find((i) => i.id === "jobs-1")?.status, "draining");
    assert.equal(reg.instances.find((i) => i.id === "orders-1")?.status, "passing");
  });

  it("process - kill -9 of the service → a critical health message within interval × failures + one interval", async () => {
    const t0 = performance.now();
    demo.kill("SIGKILL");
    await demo.exited;
    const h = await waitFor(() => wire.of("health", t0).find((m) => m.instanceId === "orders-1" && m.check.status === "critical"), { timeoutMs: 10_000, what: "orders-1 critical" });
    const took = h.at - t0;
    const bound = HTTP_INTERVAL_MS * FAILURES + HTTP_INTERVAL_MS;
    // The bound plus a generous allowance for a loaded 2-core machine.
    assert.ok(took < bound + 2000, `critical after ${Math.round(took)}ms (bound ${bound}ms)`);
    assert.equal(h.instanceStatus, "critical");
    assert.match(h.check.output ?? "", /ECONNREFUSED|ECONNRESET|closed|socket/i);
  });

  it("process - SIGTERM: a register with everything draining, a deregister after the drain period, exit 0", async () => {
    const t0 = performance.now();
    agent.kill("SIGTERM");
    const drain = await waitFor(() => wire.of("register", t0).find((m) => m.instances.every((i) => i.status === "draining")), { timeoutMs: 5000, what: "draining register" });
    assert.equal(drain.instances.length, 2);
    const dereg = await waitFor(() => wire.of("deregister", t0)[0], { timeoutMs: 10_000, what: "deregister" });
    assert.equal(dereg.reason, "shutdown");
    assert.deepEqual(dereg.instances.map((i) => i.instanceId).sort(), ["jobs-1", "orders-1"]);
    const waited = dereg.at - drain.at;
    assert.ok(waited >= DRAIN_MS * 0.8, `deregister ${waited}ms after draining (drain period ${DRAIN_MS}ms)`);
    const exit = await agent.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(dereg.seq > drain.seq);
  });
});
