// HA without a manual: bucket replicas picked from the cluster, the lease on by default, and a
// restarted registry that recognises its own lease. Real nats-server(s), real registry processes.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
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
      const reg = await startRegistry(url, { lease: { enabled: true } });
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
    const reg = await startRegistry(nats.url, { lease: { enabled: true } });
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
    const dir = await mkdtemp(join(tmpdir(), "roster-ha-"));
    await writeFile(join(dir, "registry.json"), JSON.stringify({ lease: { enabled: true } }));
    const args = ["--nats", nats.url, "--http", `127.0.0.1:${port}`, "--config", join(dir, "registry.json")];
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
      await rm(dir, { recursive: true, force: true });
    }
  });
});
