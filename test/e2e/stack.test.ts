// End to end: real nats-server, real registry and agent processes (their bins), real demo
// services, real signals. Each step is one of the core issue's promises.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, spawnNode, waitFor } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const AGENT = join(root, "agent", "bin", "roster-agent.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const DEMO = join(root, "examples", "demo-service.mjs");

const HEARTBEAT_MS = 200;
const CHECK_INTERVAL_MS = 200;
const FAILURES = 2;
const DEREGISTER_AFTER_MS = 1500;

interface Instance {
  id: string;
  service: string;
  host: string;
  status: string;
  reason?: string;
  port: number;
}

describe("stack", () => {
  let nats: NatsServer;
  let dir: string;
  let httpPort: number;
  let registry: ChildProc | undefined;
  let agent: ChildProc | undefined;
  const demos = new Map<string, ChildProc>();
  const ports: Record<string, number> = {};
  let agentConfig: string;
  let registryConfig: string;

  const base = () => `http://127.0.0.1:${httpPort}`;

  async function instances(service: string): Promise<{ status: number; index: number; body: Instance[] }> {
    const res = await fetch(`${base()}/v1/services/${service}/instances`);
    const body = res.status === 200 ? ((await res.json()) as Instance[]) : [];
    return { status: res.status, index: Number(res.headers.get("x-roster-index") ?? 0), body };
  }

  async function statusOf(service: string): Promise<string | undefined> {
    const r = await instances(service).catch(() => null);
    return r?.body[0]?.status;
  }

  function startDemo(service: string): ChildProc {
    const proc = spawnNode(DEMO, [String(ports[service]), service]);
    demos.set(service, proc);
    return proc;
  }

  function startRegistry(): ChildProc {
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${httpPort}`, "--config", registryConfig]);
    return registry;
  }

  /**
   * The first start listens on port 0 and the port is read from its log: a port from freePort()
   * can be taken by another test file's process before the registry binds it (seen once: the
   * registry exited with EADDRINUSE and the test talked to another file's registry). Restarts
   * reuse that port.
   */
  async function startRegistryOnAnyPort(): Promise<void> {
    httpPort = 0;
    const proc = startRegistry();
    await proc.waitForOutput(/"msg":"HTTP listening"/, 15_000);
    const m = /"url":"http:\/\/127\.0\.0\.1:(\d+)"[^\n]*"msg":"HTTP listening"/.exec(proc.output);
    assert.ok(m, `no HTTP listening line in the registry's output:\n${proc.output.slice(-2000)}`);
    httpPort = Number(m[1]);
  }

  function startAgent(): ChildProc {
    agent = spawnNode(AGENT, ["--config", agentConfig, "--nats", nats.url, "--api", `127.0.0.1:0`]);
    return agent;
  }

  async function readyz(): Promise<boolean> {
    const res = await fetch(`${base()}/readyz`).catch(() => null);
    return res?.status === 200;
  }

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-e2e-"));
    ports.orders = await freePort();
    ports.payments = await freePort();
    registryConfig = join(dir, "registry.json");
    await writeFile(
      registryConfig,
      JSON.stringify({ deregisterAfter: DEREGISTER_AFTER_MS, tickInterval: "50ms", presenceInterval: "200ms" }),
    );
    agentConfig = join(dir, "agent.yaml");
    const check = `{ type: http, path: /health, interval: ${CHECK_INTERVAL_MS}ms, timeout: 150ms, failuresBeforeCritical: ${FAILURES} }`;
    await writeFile(
      agentConfig,
      [
        "host: { id: e2e-host, zone: zone-a }",
        `heartbeat: { interval: ${HEARTBEAT_MS}ms }`,
        "drain: { period: 500ms }",
        "services:",
        `  - { name: orders, id: orders-1, port: ${ports.orders}, address: 127.0.0.1, checks: [${check}] }`,
        `  - { name: payments, id: payments-1, port: ${ports.payments}, address: 127.0.0.1, checks: [${check}] }`,
        "",
      ].join("\n"),
    );
    startDemo("orders");
    startDemo("payments");
    await startRegistryOnAnyPort();
    await waitFor(readyz, { timeoutMs: 15_000, what: "registry /readyz" });
    startAgent();
  });

  after(async () => {
    for (const p of [agent, registry, ...demos.values()]) p?.kill("SIGKILL");
    await Promise.all([agent, registry, ...demos.values()].map((p) => p?.exited));
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("stack - a registered service becomes passing", async () => {
    await waitFor(async () => (await statusOf("orders")) === "passing" && (await statusOf("payments")) === "passing", {
      timeoutMs: 15_000,
      what: "both services passing",
    });
    const r = await instances("orders");
    assert.equal(r.body.length, 1);
    assert.equal(r.body[0]!.host, "e2e-host");
    assert.ok(r.index > 0);
  });

  it("stack - kill -9 of a service makes it critical within interval x failures + one interval", async () => {
    const started = Date.now();
    demos.get("orders")!.kill("SIGKILL");
    await waitFor(async () => (await statusOf("orders")) === "critical", { timeoutMs: 10_000, what: "orders critical" });
    const elapsed = Date.now() - started;
    const bound = CHECK_INTERVAL_MS * FAILURES + CHECK_INTERVAL_MS;
    // The bound is the design figure; allow scheduling slack on a shared 2-core machine.
    assert.ok(elapsed < bound + 2000, `took ${elapsed}ms, bound ${bound}ms`);
    assert.equal(await statusOf("payments"), "passing");
    startDemo("orders");
    await waitFor(async () => (await statusOf("orders")) === "passing", { timeoutMs: 10_000, what: "orders passing again" });
  });

  it("stack - kill -9 and restart of the registry keeps the catalog and the revisions increase", async () => {
    const before = await instances("orders");
    registry!.kill("SIGKILL");
    await registry!.exited;
    startRegistry();
    await waitFor(readyz, { timeoutMs: 15_000, what: "registry ready again" });
    const afterRestart = await instances("orders");
    assert.deepEqual(
      afterRestart.body.map((i) => [i.id, i.status]),
      before.body.map((i) => [i.id, i.status]),
    );
    assert.ok(afterRestart.index >= before.index);
    // A change after the restart gets a higher revision than anything before it.
    demos.get("payments")!.kill("SIGKILL");
    await waitFor(async () => (await statusOf("payments")) === "critical", { timeoutMs: 10_000, what: "payments critical" });
    const changed = await instances("payments");
    assert.ok(changed.index > before.index, `${changed.index} > ${before.index}`);
    startDemo("payments");
    await waitFor(async () => (await statusOf("payments")) === "passing", { timeoutMs: 10_000, what: "payments passing" });
  });

  it("stack - a nats-server restart: everything reconnects and converges", async () => {
    await nats.restart();
    // Proof of convergence: a failure after the restart still reaches the HTTP API.
    await waitFor(readyz, { timeoutMs: 15_000, what: "registry ready after NATS restart" });
    demos.get("orders")!.kill("SIGKILL");
    await waitFor(async () => (await statusOf("orders")) === "critical", { timeoutMs: 15_000, what: "orders critical after NATS restart" });
    startDemo("orders");
    await waitFor(async () => (await statusOf("orders")) === "passing", { timeoutMs: 15_000, what: "orders passing after NATS restart" });
  });

  it("stack - kill -9 of the agent: agent-lost after the heartbeat timeout, then removed", async () => {
    const started = Date.now();
    agent!.kill("SIGKILL");
    await agent!.exited;
    await waitFor(
      async () => {
        const r = await instances("orders");
        return r.body[0]?.status === "critical" && r.body[0]?.reason === "agent-lost";
      },
      { timeoutMs: 10_000, what: "orders agent-lost" },
    );
    const lostAfter = Date.now() - started;
    assert.ok(lostAfter >= HEARTBEAT_MS * 2, `lost too early: ${lostAfter}ms`);
    await waitFor(async () => (await instances("orders")).body.length === 0, { timeoutMs: 10_000, what: "orders removed" });
    const gone = await instances("orders");
    assert.equal(gone.status, 200, "a known service with no instances answers [] not 404");
  });

  it("stack - SIGTERM of the agent: draining, then removed, exit 0", async () => {
    startAgent();
    await waitFor(async () => (await statusOf("orders")) === "passing", { timeoutMs: 15_000, what: "orders back" });
    agent!.kill("SIGTERM");
    await waitFor(async () => (await statusOf("orders")) === "draining", { timeoutMs: 5000, intervalMs: 10, what: "draining" });
    await waitFor(async () => (await instances("orders")).body.length === 0, { timeoutMs: 10_000, what: "removed" });
    const exit = await agent!.exited;
    assert.equal(exit.code, 0, agent!.output.slice(-2000));
  });

  it("stack - the registry shuts down cleanly on SIGTERM", async () => {
    const exit = await registry!.stop();
    assert.equal(exit.code, 0, registry!.output.slice(-2000));
  });
});
