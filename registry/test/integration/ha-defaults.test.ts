// HA without a manual: bucket replicas picked from the cluster, the lease on by default, and a
// restarted registry that recognises its own lease. Real nats-server(s), real registry processes.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { CATALOG_BUCKET } from "roster-schemas";
import { NatsCluster, NatsServer, freePort, repoRoot, spawnNode, waitFor } from "roster-testkit";
import { LEASE_BUCKET } from "../../src/adapters/store/lease-kv.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

const REGISTRY = join(repoRoot, "registry", "bin", "roster-registry.js");

async function bucketReplicas(url: string): Promise<number[]> {
  const nc = await connect({ servers: url });
  try {
    const kvm = new Kvm(nc);
    return [(await (await kvm.open(CATALOG_BUCKET)).status()).replicas, (await (await kvm.open(LEASE_BUCKET)).status()).replicas];
  } finally {
    await nc.close();
  }
}

/** The time (ms, from the JSON log) of the first line with this msg after `from` characters of output. */
function logTime(output: string, msg: string, from = 0): number | null {
  for (const line of output.slice(from).split("\n")) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      return (JSON.parse(line) as { time: number }).time;
    } catch {
      // a partial line
    }
  }
  return null;
}

describe("registry HA defaults", () => {
  for (const size of [3, 2]) {
    it(`ha - on a ${size}-node NATS cluster the buckets are created R${size} without a kvReplicas setting`, async () => {
      const cluster = await NatsCluster.start({ size });
      const url = cluster.urls.join(",");
      const reg = await startRegistry(url);
      try {
        await waitFor(() => reg.status().role === "leader", { timeoutMs: 15_000, what: "leader" });
        assert.deepEqual(await bucketReplicas(url), [size, size]);
      } finally {
        await reg.close();
        await cluster.close();
      }
    });
  }

  it("ha - on a single server the buckets are R1", async () => {
    await using nats = await NatsServer.start();
    const reg = await startRegistry(nats.url);
    try {
      await waitFor(() => reg.status().role === "leader", { timeoutMs: 15_000, what: "leader" });
      assert.deepEqual(await bucketReplicas(nats.url), [1, 1]);
      assert.equal((reg.status().lease as { role: string } | null)?.role, "leader");
    } finally {
      await reg.close();
    }
  });

  it("ha - a registry restarted after kill -9 on its port recognises its own lease and writes within a second", async () => {
    await using nats = await NatsServer.start();
    const port = await freePort();
    // No config at all: the lease is on by default.
    const args = ["--nats", nats.url, "--http", `127.0.0.1:${port}`];
    const first = spawnNode(REGISTRY, args);
    const agent = await FakeAgent.connect(nats.url, "host-r", 1, 500);
    const stopBeat = agent.beat();
    try {
      await first.waitForOutput(/"msg":"took over as the catalog writer"/, 20_000);
      await agent.register([inst("r1")]);
      await waitFor(async () => ((await getJson(`http://127.0.0.1:${port}/v1/services/orders/instances`).catch(() => null))?.status ?? 0) === 200, {
        what: "first registry wrote",
        timeoutMs: 10_000,
      });
      first.kill("SIGKILL");
      await first.exited;
      const second = spawnNode(REGISTRY, args);
      try {
        await second.waitForOutput(/"msg":"took over as the catalog writer"/, 20_000);
        const connected = logTime(second.output, "connected to NATS");
        const elected = logTime(second.output, "lease elected");
        assert.ok(connected !== null && elected !== null, second.output.slice(-2000));
        // Without its own id in the key it would wait a full ttl (3 s) of silence first.
        assert.ok(elected - connected < 1000, `lease taken ${elected - connected} ms after connecting`);
        await agent.register([inst("r1"), inst("r2", { port: 8081 })]);
        await waitFor(async () => {
          const r = await getJson(`http://127.0.0.1:${port}/v1/services/orders/instances`).catch(() => null);
          return Array.isArray(r?.body) && r.body.length === 2;
        }, { what: "the restarted registry writes", timeoutMs: 30_000 });
      } finally {
        second.kill("SIGKILL");
        await second.exited;
      }
    } finally {
      // A failure before the kill -9 must not leave the first registry running.
      if (first.alive) {
        first.kill("SIGKILL");
        await first.exited;
      }
      stopBeat();
      await agent.close();
    }
  });

  it("ha - with the defaults, kill -9 of the writer: a standby takes over within the ttl (3 s) and a read interval, and writes", async () => {
    await using nats = await NatsServer.start();
    const [portA, portB] = [await freePort(), await freePort()];
    const a = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${portA}`]);
    let b: ReturnType<typeof spawnNode> | null = null;
    const agent = await FakeAgent.connect(nats.url, "host-k", 1, 500);
    const stopBeat = agent.beat();
    try {
      await a.waitForOutput(/"msg":"took over as the catalog writer"/, 20_000);
      b = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${portB}`]);
      await b.waitForOutput(/"msg":"registry ready"/, 20_000);
      const standby = b;
      assert.equal(((await getJson(`http://127.0.0.1:${portB}/v1/status`)).body as { role: string }).role, "standby");
      await agent.register([inst("k1")]);
      await waitFor(async () => {
        const r = await getJson(`http://127.0.0.1:${portB}/v1/services/orders/instances`).catch(() => null);
        return Array.isArray(r?.body) && r.body.length === 1;
      }, { what: "the standby mirrors the writer", timeoutMs: 10_000 });
      a.kill("SIGKILL");
      const killedAt = Date.now();
      await a.exited;
      await standby.waitForOutput(/"msg":"lease elected"/, 15_000);
      const elected = logTime(standby.output, "lease elected")!;
      // ttl 3 s of silence by the standby's clock, plus its read interval (ttl / 12) and the machine.
      assert.ok(elected - killedAt <= 3000 + 250 + 750, `standby elected ${elected - killedAt} ms after the kill`);
      await standby.waitForOutput(/"msg":"took over as the catalog writer"/, 15_000);
      await agent.register([inst("k1"), inst("k2", { port: 8081 })]);
      await waitFor(async () => {
        const r = await getJson(`http://127.0.0.1:${portB}/v1/services/orders/instances`).catch(() => null);
        return Array.isArray(r?.body) && r.body.length === 2;
      }, { what: "the new writer writes", timeoutMs: 15_000 });
    } finally {
      for (const p of [a, b]) {
        if (p?.alive) {
          p.kill("SIGKILL");
          await p.exited;
        }
      }
      stopBeat();
      await agent.close();
    }
  });

  it("ha - a writer flooded by a registration storm keeps its lease (renewals on their own connection; its own late renew is not a rival)", async () => {
    await using nats = await NatsServer.start();
    // A short ttl makes the lease as sensitive as it gets: renew every 350 ms, each bounded by 350 ms.
    const reg = await startRegistry(nats.url, { lease: { ttl: "1s", margin: "300ms" } });
    const HOSTS = 100;
    const PER_HOST = 200;
    const agents = await Promise.all(Array.from({ length: HOSTS }, (_, h) => FakeAgent.connect(nats.url, `storm-${h}`, 1, 5000)));
    try {
      await waitFor(() => reg.status().role === "leader", { timeoutMs: 15_000, what: "leader" });
      // Every host registers at once: 20,000 catalog writes queued behind each other.
      await Promise.all(agents.map((a, h) => a.register(Array.from({ length: PER_HOST }, (_, i) => inst(`s${h}-${i}`, { service: `svc-${i % 20}`, port: 1000 + i })))));
      type Status = { role: string; takeovers: number; kv: { fenced: number } | null; lease: { counters: { lost: number; acquired: number; suspended: number } } | null };
      const status = () => reg.status() as unknown as Status;
      // Ends early on a loss: a lost lease drops the queued writes, and the storm never completes.
      const outcome = await waitFor(() => (status().lease?.counters.lost ? "lost" : reg.memory.instanceCount === HOSTS * PER_HOST ? "written" : null), {
        timeoutMs: 180_000,
        intervalMs: 200,
        what: `${HOSTS * PER_HOST} instances written`,
      });
      const s = status();
      assert.equal(outcome, "written", JSON.stringify(s.lease));
      assert.equal(s.role, "leader");
      assert.equal(s.lease?.counters.lost, 0, JSON.stringify(s.lease));
      assert.equal(s.lease?.counters.acquired, 1, "never elected again");
      assert.equal(s.takeovers, 1);
      assert.equal(s.kv?.fenced, 0, "no queued write dropped");
    } finally {
      await Promise.all(agents.map((a) => a.close()));
      await reg.close();
    }
  });
});
