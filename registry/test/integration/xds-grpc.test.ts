import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, repoRoot, spawnNode, waitFor } from "roster-testkit";
import type { CatalogChange } from "../../src/adapters/store/catalog-memory.js";
import type { Registry } from "../../src/app.js";
import { startRegistry } from "./helpers.js";
import { CallLog, XDS_CLIENT, XDS_PY_CLIENT, startEchoServer, writeBootstrap, type EchoServer } from "./xds-helpers.js";

// Clients no one here wrote: @grpc/grpc-js-xds in its own process with a bootstrap file, balancing
// real unary calls over gRPC servers registered by a real roster-agent process whose gRPC health
// checks flip them.
const AGENT_BIN = join(repoRoot, "agent/bin/roster-agent.js");
const CHECK_INTERVAL_MS = 200;

describe("xDS - proxyless gRPC (@grpc/grpc-js-xds) over a real agent", () => {
  let nats: NatsServer;
  let registry: Registry;
  let servers: EchoServer[] = [];
  let agent: ChildProc;
  let client: CallLog;
  let bootstrap = "";
  let tmp = "";
  let cleanupBootstrap = async () => {};
  const changes: Array<CatalogChange & { seenAt: number }> = [];

  before(async () => {
    nats = await NatsServer.start();
    const xdsPort = await freePort();
    registry = await startRegistry(nats.url, { xds: { listen: `127.0.0.1:${xdsPort}` } });
    registry.memory.onChange((c) => changes.push({ ...c, seenAt: Date.now() }));
    servers = await Promise.all(["a", "b", "c"].map((n) => startEchoServer(`echo-${n}`)));
    tmp = await mkdtemp(join(tmpdir(), "roster-xds-agent-"));
    const cfg = join(tmp, "agent.yaml");
    await writeFile(
      cfg,
      `host: { id: xds-host, zone: z1 }
heartbeat: { interval: 200ms }
drain: { period: 0ms }
services:
${servers
  .map(
    (s) => `  - name: greeter
    id: ${s.name}
    port: ${s.port}
    address: 127.0.0.1
    checks:
      - { type: grpc, service: greeter, interval: ${CHECK_INTERVAL_MS}ms, timeout: 500ms, failuresBeforeCritical: 1 }
`,
  )
  .join("")}`,
    );
    agent = spawnNode(AGENT_BIN, ["--config", cfg, "--nats", nats.url, "--api", `127.0.0.1:${await freePort()}`]);
    await agent.waitForOutput('"agent started"', 60_000);
    await waitFor(() => registry.memory.service("greeter").instances.filter((i) => i.status === "passing").length === 3, { timeoutMs: 10_000, what: "3 passing greeter instances" });
    const boot = await writeBootstrap(registry.xds!.port);
    cleanupBootstrap = boot.cleanup;
    bootstrap = boot.file;
    client = CallLog.spawnNode(XDS_CLIENT, ["greeter", "5"], { GRPC_XDS_BOOTSTRAP: boot.file });
  });

  after(async () => {
    client?.proc.kill("SIGKILL");
    await agent?.stop();
    await registry?.close();
    await Promise.all(servers.map((s) => s.close()));
    await nats?.close();
    await cleanupBootstrap();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("xDS - balances unary calls over every passing instance the agent registered", async () => {
    await waitFor(() => client.counts(0).size === 3, { timeoutMs: 60_000, what: "calls to all 3 servers" }).catch((err: Error) => {
      throw new Error(`${err.message}; the client said:\n${client.proc.output.slice(-3000)}`);
    });
    const from = Date.now();
    await waitFor(() => [...client.counts(from).values()].reduce((a, b) => a + b, 0) >= 150, { timeoutMs: 10_000, what: "150 calls" });
    const counts = client.counts(from);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    for (const s of servers) assert.ok((counts.get(s.name) ?? 0) > total / 6, `${s.name} got ${counts.get(s.name) ?? 0} of ${total} calls: ${JSON.stringify([...counts])}`);
    assert.equal(registry.xds!.stats.nacks, 0);
  });

  it("xDS - stops sending to an instance within a second of its check failing, resumes when it passes", async () => {
    const b = servers[1]!;
    const flippedAt = Date.now();
    const critical = () => changes.find((c) => c.id === b.name && c.record?.status === "critical" && c.seenAt >= flippedAt);
    b.setHealth("NOT_SERVING");
    await waitFor(() => critical() !== undefined, { timeoutMs: 5000, what: "echo-b critical in the catalog" });
    const failedAt = critical()!.seenAt;
    // Calls keep flowing to the others for 1.5 s; none may reach echo-b later than 1 s after the flip.
    await waitFor(() => Date.now() > failedAt + 1500, { timeoutMs: 3000 });
    const last = client.lastCallTo(b.name);
    assert.ok(last < failedAt + 1000, `last call to echo-b ${last - failedAt} ms after its check failed`);
    const others = client.counts(failedAt + 1000);
    assert.ok((others.get("echo-a") ?? 0) >= 3 && (others.get("echo-c") ?? 0) >= 3, `calls go on to a and c: ${JSON.stringify([...others])}`);
    console.log(`# echo-b: last call ${last - failedAt} ms after the catalog said critical`);

    b.setHealth("SERVING");
    await waitFor(() => changes.some((c) => c.id === b.name && c.record?.status === "passing" && c.seenAt > failedAt), { timeoutMs: 5000, what: "echo-b passing again" });
    const passedAt = changes.filter((c) => c.id === b.name && c.record?.status === "passing").at(-1)!.seenAt;
    await waitFor(() => client.firstCallTo(b.name, passedAt) !== undefined, { timeoutMs: 3000, what: "calls to echo-b again" });
    const back = client.firstCallTo(b.name, passedAt)!;
    assert.ok(back - passedAt < 1000, `first call to echo-b ${back - passedAt} ms after it passed`);
    console.log(`# echo-b: first call ${back - passedAt} ms after the catalog said passing`);
    assert.equal(registry.xds!.stats.nacks, 0);
  });

  it("xDS - a second client in another language: python3-grpcio (C-core) balances and follows a flip", async () => {
    const py = new CallLog(new ChildProc("/usr/bin/python3", [XDS_PY_CLIENT, "greeter", "5"], { env: { ...process.env, GRPC_XDS_BOOTSTRAP: bootstrap } }));
    try {
      await waitFor(() => py.counts(0).size === 3, { timeoutMs: 60_000, what: "python calls to all 3 servers" }).catch((err: Error) => {
        throw new Error(`${err.message}; it said:\n${py.proc.output.slice(-3000)}`);
      });
      const a = servers[0]!;
      const flippedAt = Date.now();
      a.setHealth("NOT_SERVING");
      await waitFor(() => changes.some((c) => c.id === a.name && c.record?.status === "critical" && c.seenAt >= flippedAt), { timeoutMs: 5000, what: "echo-a critical" });
      const failedAt = changes.find((c) => c.id === a.name && c.record?.status === "critical" && c.seenAt >= flippedAt)!.seenAt;
      await waitFor(() => Date.now() > failedAt + 1500, { timeoutMs: 3000 });
      const last = py.lastCallTo(a.name);
      assert.ok(last < failedAt + 1000, `python: last call to echo-a ${last - failedAt} ms after its check failed`);
      console.log(`# python: last call to echo-a ${last - failedAt} ms after the catalog said critical`);
      a.setHealth("SERVING");
      await waitFor(() => py.firstCallTo(a.name, failedAt + 1500) !== undefined, { timeoutMs: 5000, what: "python calls echo-a again" });
    } finally {
      py.proc.kill("SIGKILL");
    }
  });
});
