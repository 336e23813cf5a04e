import assert from "node:assert/strict";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { ChildProc, freePort, NatsServer, spawnNode, waitFor } from "roster-testkit";
import { AGENT_BIN, tempConfig, Wire } from "./helpers.js";

/**
 * A TCP relay in front of nats-server for the agent only, so the test decides when the agent
 * may reconnect: after the test's own subscriber is back, and no message can slip by unseen.
 */
class Gate {
  open = true;
  private readonly sockets = new Set<Socket>();
  private constructor(
    readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: () => number): Promise<Gate> {
    const ref: { gate?: Gate } = {};
    const server = createServer((client) => {
      const gate = ref.gate;
      if (!gate?.open) return void client.destroy();
      const upstream = createConnection({ host: "127.0.0.1", port: target() });
      for (const s of [client, upstream]) {
        gate.sockets.add(s);
        s.on("close", () => gate.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const addr = server.address();
    ref.gate = new Gate(server, typeof addr === "object" && addr ? addr.port : 0);
    return ref.gate;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

describe("roster-agent outages", () => {
  let nats: NatsServer;
  let gate: Gate;
  let wire: Wire;
  let agent: ChildProc;
  let cleanup: () => Promise<void> = async () => {};

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    gate = await Gate.start(() => nats.port);
    wire = await Wire.watch(nats.url, "outage-host");
    const cfg = await tempConfig(
      "agent.json",
      JSON.stringify({
        host: { id: "outage-host" },
        heartbeat: { interval: "200ms" },
        drain: { period: "0s" },
        services: [{ name: "svc", id: "svc-1", port: 1, address: "127.0.0.1" }],
      }),
    );
    cleanup = cfg.cleanup;
    const apiPort = await freePort();
    agent = spawnNode(AGENT_BIN, ["--config", cfg.file, "--api", `127.0.0.1:${apiPort}`], { env: { ...process.env, ROSTER_NATS_URL: `nats://127.0.0.1:${gate.port}` } });
    await agent.waitForOutput('"agent started"');
  });

  after(async () => {
    agent?.kill("SIGKILL");
    await wire?.close();
    await gate?.close();
    await nats?.close();
    await cleanup();
  });

  it("outage - nats-server stopped then restarted: the agent survives and republishes a register", async () => {
    const first = await waitFor(() => wire.of("register")[0], { timeoutMs: 10_000, what: "first register (ROSTER_NATS_URL honoured)" });
    gate.open = false;
    await nats.stop();
    await new Promise((r) => setTimeout(r, 1000)); // the agent keeps running, disconnected
    assert.ok(agent.alive, `agent died while NATS was down:\n${agent.output.slice(-2000)}`);
    await nats.start();
    await waitFor(async () => {
      await wire.nc.flush();
      return true;
    }, { timeoutMs: 10_000, what: "test subscriber reconnected" });
    const t0 = performance.now();
    gate.open = true;
    const reg = await waitFor(() => wire.of("register", t0)[0], { timeoutMs: 15_000, what: `register after reconnect; agent output:\n${agent.output.slice(-1500)}` });
    assert.equal(reg.epoch, first.epoch, "same epoch: a reconnect is not a restart");
    assert.ok(reg.seq > first.seq);
    assert.deepEqual(reg.instances.map((i) => i.id), ["svc-1"]);
    await waitFor(() => wire.of("heartbeat", reg.at).length >= 2, { timeoutMs: 5000, what: "heartbeats after reconnect" });
    assert.match(agent.output, /"nats disconnected/);
    assert.match(agent.output, /"nats reconnected"|"nats connected"/);
    assert.ok(agent.alive);
  });

  it("outage - SIGTERM with a zero drain period still deregisters and exits 0", async () => {
    const t0 = performance.now();
    agent.kill("SIGTERM");
    const d = await waitFor(() => wire.of("deregister", t0)[0], { timeoutMs: 10_000, what: "deregister" });
    assert.equal(d.reason, "shutdown");
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
  });
});

describe("roster-agent second signal", () => {
  it("signals - a second SIGTERM during the drain wait skips the rest of it", async () => {
    const nats = await NatsServer.start({ jetstream: false });
    const wire = await Wire.watch(nats.url, "sig-host");
    const cfg = await tempConfig("agent.yaml", "host: { id: sig-host }\ndrain: { period: 60s }\nservices:\n  - { name: svc, id: svc-1, port: 1, address: 127.0.0.1 }\n");
    const agent = spawnNode(AGENT_BIN, ["--config", cfg.file, "--nats", nats.url, "--api", "127.0.0.1:0"], { env: { ...process.env, ROSTER_NATS_URL: "nats://127.0.0.1:1" } });
    try {
      await waitFor(() => wire.of("register")[0], { timeoutMs: 10_000, what: "register (--nats wins over ROSTER_NATS_URL)" });
      const t0 = performance.now();
      agent.kill("SIGTERM");
      await waitFor(() => wire.of("register", t0).find((m) => m.instances[0]?.status === "draining"), { timeoutMs: 5000, what: "draining register" });
      agent.kill("SIGTERM");
      const exit = await agent.exited;
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(performance.now() - t0 < 30_000, "did not wait the 60s drain period");
      assert.equal(wire.of("deregister", t0)[0]?.reason, "shutdown");
      assert.match(agent.output, /skipping the rest of the drain wait/);
    } finally {
      agent.kill("SIGKILL");
      await wire.close();
      await nats.close();
      await cfg.cleanup();
    }
  });
});

describe("roster-agent bad config", () => {
  it("config - a bad config exits 1 with the field path and no stack trace", async () => {
    const cfg = await tempConfig("bad.yaml", "services:\n  - name: a\n    port: 1\n  - name: b\n    port: 2\n    checks:\n      - { type: http, interval: soon }\n");
    try {
      const p = spawnNode(AGENT_BIN, ["--config", cfg.file, "--nats", "nats://127.0.0.1:1"]);
      const exit = await p.exited;
      assert.equal(exit.code, 1, p.output);
      assert.match(p.output, /services\[1\]\.checks\[0\]\.interval: expected a duration like "1s"/);
      assert.match(p.output, /ROSTER_CONFIG_INVALID/);
      assert.doesNotMatch(p.output, /\n\s+at /, "no stack trace");
    } finally {
      await cfg.cleanup();
    }
  });

  it("config - a missing file and a bad flag exit 1 with a message", async () => {
    const missing = spawnNode(AGENT_BIN, ["--config", "/nonexistent/agent.yaml"]);
    assert.equal((await missing.exited).code, 1);
    assert.match(missing.output, /ROSTER_CONFIG_READ/);
    assert.match(missing.output, /ENOENT/);
    const flag = spawnNode(AGENT_BIN, ["--nope"]);
    assert.equal((await flag.exited).code, 1);
    assert.match(flag.output, /usage: roster-agent/);
    assert.doesNotMatch(flag.output, /\n\s+at /);
  });
});
