// The promise, end to end: real nats-server, registry and agent processes, three real instances of
// one service, and the gateway client in this process. Killing or hanging an instance in the
// middle of a stream of requests costs the callers nothing; neither does losing the registry.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createGateway, type Gateway } from "roster-gateway-client";
import { ChildProc, NatsServer, freePort, killAll, spawnNode, waitFor } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const AGENT = join(root, "agent", "bin", "roster-agent.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const DEMO = join(root, "examples", "demo-service.mjs");
const INSTANCES = 3;

interface StreamResult {
  sent: number;
  ok: number;
  failures: string[];
  byPort: Map<number, number>;
}

/** Sends requests at a steady rate (open loop, up to `inflight` at once) for `ms`. */
async function stream(gw: Gateway, ms: number, during?: () => Promise<void>): Promise<StreamResult> {
  const r: StreamResult = { sent: 0, ok: 0, failures: [], byPort: new Map() };
  const pending = new Set<Promise<void>>();
  const end = Date.now() + ms;
  const fault = during ? sleep(ms / 3).then(during) : Promise.resolve();
  while (Date.now() < end) {
    if (pending.size < 16) {
      r.sent++;
      const p = (async () => {
        try {
          const res = await gw.request("orders", { method: "GET", path: "/" });
          const body = (await res.body.json()) as { port: number };
          if (res.statusCode === 200) {
            r.ok++;
            r.byPort.set(body.port, (r.byPort.get(body.port) ?? 0) + 1);
          } else r.failures.push(`HTTP ${res.statusCode}`);
        } catch (err) {
          r.failures.push(`${(err as { code?: string }).code ?? ""} ${(err as Error).message}`);
        }
      })();
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    await sleep(2);
  }
  await fault;
  await Promise.all(pending);
  return r;
}

describe("gateway end to end", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: ChildProc;
  let agent: ChildProc;
  let gw: Gateway;
  const ports: number[] = [];
  const demos: ChildProc[] = [];

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-gw-e2e-"));
    for (let i = 0; i < INSTANCES; i++) ports.push(await freePort());
    const httpPort = await freePort();
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${httpPort}`]);
    const config = join(dir, "agent.yaml");
    await writeFile(
      config,
      [
        "host: { id: gw-e2e }",
        "heartbeat: { interval: 500ms }",
        "drain: { period: 200ms }",
        "services:",
        ...ports.map(
          (p, i) =>
            `  - { name: orders, id: orders-${i}, port: ${p}, address: 127.0.0.1, checks: [{ type: http, path: /health, interval: 500ms, timeout: 300ms }] }`,
        ),
        "",
      ].join("\n"),
    );
    for (const p of ports) demos.push(spawnNode(DEMO, [String(p), "orders"]));
    agent = spawnNode(AGENT, ["--config", config, "--nats", nats.url, "--api", "127.0.0.1:0"]);
    gw = await createGateway({ nats: nats.url, services: ["orders"], tryTimeout: 200 });
    await waitFor(() => gw.instances("orders").filter((i) => i.status === "passing").length === INSTANCES, {
      timeoutMs: 20_000,
      what: "3 passing instances in the gateway's mirror",
    });
  });

  after(async () => {
    await gw?.close();
    await killAll([agent, registry, ...demos]);
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("gateway e2e - requests spread over the three instances", async () => {
    const r = await stream(gw, 1000);
    assert.deepEqual(r.failures, []);
    assert.equal(r.byPort.size, INSTANCES, JSON.stringify([...r.byPort]));
  });

  it("gateway e2e - kill -9 of an instance mid-stream costs zero failed requests", async () => {
    const victim = demos[0]!;
    const r = await stream(gw, 3000, async () => {
      victim.kill("SIGKILL");
    });
    assert.deepEqual(r.failures, [], `${r.failures.length} of ${r.sent} failed`);
    assert.ok(r.ok > 100, `only ${r.ok} requests`);
    // The agent's check reached the gateway through the registry: the instance is critical there.
    await waitFor(() => gw.instances("orders").find((i) => i.port === ports[0])?.status === "critical", {
      timeoutMs: 10_000,
      what: "the killed instance critical in the mirror",
    });
  });

  it("gateway e2e - a hung instance (SIGSTOP) mid-stream costs zero failed requests", async () => {
    const victim = demos[1]!;
    try {
      const r = await stream(gw, 3000, async () => {
        process.kill(victim.pid, "SIGSTOP");
      });
      assert.deepEqual(r.failures, [], `${r.failures.length} of ${r.sent} failed`);
    } finally {
      process.kill(victim.pid, "SIGCONT");
    }
  });

  it("gateway e2e - registry killed: requests keep succeeding on the known instances", async () => {
    registry.kill("SIGKILL");
    await registry.exited;
    await waitFor(() => gw.isStale, { timeoutMs: 10_000, what: "the gateway to notice the registry is gone" });
    const r = await stream(gw, 1000);
    assert.deepEqual(r.failures, []);
    assert.ok(r.ok > 50);
  });
});
