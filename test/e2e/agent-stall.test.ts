// A host back from silence costs a heartbeat, not a registration (docs/architecture.md): real
// nats-server, registry and agent processes, two real instances. The agent is stopped (SIGSTOP)
// past the registry's silence limit, so its instances turn critical/agent-lost; once it continues
// (SIGCONT) its first heartbeat carries the digest it had before, and the registry puts the records
// back as they were without asking it for a register. Then an instance dies while the agent is
// stopped: the catalog must end as the agent reports it. (Which first message asks for a register
// is unit-tested: registry/test/unit/catalog.test.ts.)
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ResyncMessage, decode, resyncSubject } from "roster-schemas";
import { ChildProc, NatsServer, freePort, killAll, spawnNode, waitFor } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const AGENT = join(root, "agent", "bin", "roster-agent.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const DEMO = join(root, "examples", "demo-service.mjs");
const HOST = "stall-e2e";
const BEAT_MS = 300;

interface Instance {
  id: string;
  status: string;
  reason?: string;
}

describe("agent stalled past the silence limit (real processes)", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: ChildProc;
  let agent: ChildProc;
  let nc: NatsConnection;
  let httpUrl: string;
  const demos: ChildProc[] = [];
  const resyncs: ResyncMessage[] = [];

  const instances = async (): Promise<Instance[]> => {
    const r = await fetch(`${httpUrl}/v1/services/orders/instances`);
    return r.status === 200 ? ((await r.json()) as Instance[]) : [];
  };
  const revived = async (): Promise<number> => {
    const s = (await (await fetch(`${httpUrl}/v1/status`)).json()) as { ignored: { revived: number } };
    return s.ignored.revived;
  };
  const stalled = async (during?: () => Promise<void>): Promise<void> => {
    process.kill(agent.pid, "SIGSTOP");
    try {
      await during?.();
      await waitFor(async () => (await instances()).every((i) => i.status === "critical" && i.reason === "agent-lost"), {
        timeoutMs: 10_000,
        what: "the stopped agent's instances agent-lost",
      });
    } finally {
      process.kill(agent.pid, "SIGCONT");
    }
  };

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-stall-e2e-"));
    const ports = [await freePort(), await freePort()];
    const httpPort = await freePort();
    httpUrl = `http://127.0.0.1:${httpPort}`;
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${httpPort}`]);
    const config = join(dir, "agent.yaml");
    await writeFile(
      config,
      [
        `host: { id: ${HOST} }`,
        `heartbeat: { interval: ${BEAT_MS}ms }`,
        "services:",
        ...ports.map((p, i) => `  - { name: orders, id: orders-${i}, port: ${p}, address: 127.0.0.1, checks: [{ type: http, path: /health, interval: 200ms, timeout: 150ms }] }`),
        "",
      ].join("\n"),
    );
    for (const p of ports) demos.push(spawnNode(DEMO, [String(p), "orders"]));
    nc = await connect({ servers: nats.url });
    nc.subscribe(resyncSubject(HOST), {
      callback: (_e, m) => {
        const r = decode(ResyncMessage, m.data);
        if (r.ok) resyncs.push(r.value);
      },
    });
    await nc.flush();
    agent = spawnNode(AGENT, ["--config", config, "--nats", nats.url, "--api", "127.0.0.1:0"]);
    await waitFor(async () => (await instances()).filter((i) => i.status === "passing").length === 2, { timeoutMs: 20_000, what: "2 passing instances" });
  });

  after(async () => {
    await nc?.close().catch(() => undefined);
    await killAll([agent, registry, ...demos]);
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("agent stall - nothing changed while it was stopped: its records come back as they were, no register asked", async () => {
    await sleep(3 * BEAT_MS); // past the registry's start-up resync ("registry-start" is not what this test is about)
    const before = resyncs.length;
    const revivedBefore = await revived();
    await stalled();
    await waitFor(async () => (await instances()).every((i) => i.status === "passing" && i.reason === undefined), {
      timeoutMs: 5000,
      what: "both instances passing again",
    });
    assert.equal(await revived(), revivedBefore + 1, "revived once");
    await sleep(3 * BEAT_MS); // a resync would have been sent with the first heartbeat
    assert.deepEqual(resyncs.slice(before), [], "no resync asked of the agent");
  });

  it("agent stall - an instance died while the agent was stopped: the catalog ends as the agent reports it", async () => {
    // The agent's first beat after SIGCONT may still carry the old digest (its check of the dead
    // instance has not failed yet): then the records come back and the health flip follows; or the
    // flip comes first and a register is asked. Either way the dead instance must end critical as
    // its agent says (not agent-lost), the other passing.
    await stalled(async () => {
      demos[1]!.kill("SIGKILL");
      await demos[1]!.exited;
    });
    await waitFor(async () => {
      const byId = new Map((await instances()).map((i) => [i.id, i]));
      return byId.get("orders-0")?.status === "passing" && byId.get("orders-1")?.status === "critical" && byId.get("orders-1")?.reason === undefined;
    }, { timeoutMs: 10_000, what: "orders-0 passing, orders-1 critical as its agent reports (not agent-lost)" });
  });
});
