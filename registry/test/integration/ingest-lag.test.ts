// No false agent-lost under registry lag: a real registry process whose own event loop is blocked
// for longer than the heartbeat timeout (its agents' heartbeats sit unread in its socket) must not
// declare them lost, while a host that really fell silent still is. Real nats-server, real registry
// process (a preloaded hook blocks its event loop on SIGUSR2, as CPU starvation or a long GC would).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { connect } from "@nats-io/transport-node";
import { CATALOG_WILDCARD, CatalogDelta, decode } from "roster-schemas";
import { ChildProc, NatsServer, freePort, repoRoot, waitFor } from "roster-testkit";
import { FakeAgent, getJson, inst } from "./helpers.js";

const REGISTRY = join(repoRoot, "registry", "bin", "roster-registry.js");
const BLOCK_MS = 2000;
const HEARTBEAT_MS = 200;

describe("registry ingest lag", () => {
  for (const bulkConnection of [false, true]) {
    it(`ingest-lag - a registry whose event loop stalls past the heartbeat timeout declares no live host lost; a silent one still is${bulkConnection ? " (heartbeats on the bulk connection)" : ""}`, async () => {
      await using nats = await NatsServer.start();
      const port = await freePort();
      const dir = await mkdtemp(join(tmpdir(), "roster-lag-"));
      // Blocks the whole event loop, as a starved or paused process: timers due meanwhile run
      // before the socket is read again.
      await writeFile(join(dir, "block.mjs"), `process.on("SIGUSR2", () => { const end = Date.now() + ${BLOCK_MS}; while (Date.now() < end); });\n`);
      // Silent after 3 × 200 ms: the stall is more than 3 timeouts.
      await writeFile(join(dir, "registry.json"), JSON.stringify({ heartbeatTimeoutMultiplier: 3, tickInterval: "50ms", nats: { bulkConnection } }));
      const registry = new ChildProc(process.execPath, ["--import", join(dir, "block.mjs"), REGISTRY, "--nats", nats.url, "--http", `127.0.0.1:${port}`, "--config", join(dir, "registry.json")]);
      const observer = await connect({ servers: nats.url });
      const lost = new Map<string, number>();
      observer.subscribe(CATALOG_WILDCARD, {
        callback: (_err, m) => {
          const r = decode(CatalogDelta, m.data);
          if (r.ok && r.value.op === "put" && r.value.instance.reason === "agent-lost") lost.set(r.value.instanceId, (lost.get(r.value.instanceId) ?? 0) + 1);
        },
      });
      const agents = await Promise.all(["host-live-1", "host-live-2", "host-live-3", "host-silent"].map((h) => FakeAgent.connect(nats.url, h, 1, HEARTBEAT_MS)));
      const stops: Array<() => void> = [];
      try {
        await registry.waitForOutput(/"msg":"registry ready"/, 20_000);
        for (const [i, a] of agents.entries()) {
          await a.register([inst(`i${i}`, { port: 8080 + i })]);
          stops.push(a.beat());
        }
        await waitFor(async () => {
          const r = await getJson(`http://127.0.0.1:${port}/v1/services/orders/instances`).catch(() => null);
          return Array.isArray(r?.body) && r.body.length === agents.length;
        }, { what: "all instances registered", timeoutMs: 15_000 });
        await sleep(3 * HEARTBEAT_MS);
        // The last host falls silent; then the registry's event loop stalls for 2 s.
        stops.pop()!();
        registry.kill("SIGUSR2");
        await sleep(BLOCK_MS + 1500);
        assert.ok(registry.alive, registry.output.slice(-2000));
        assert.deepEqual([...lost.keys()], ["i3"], `only the silent host is lost (agent-lost deltas per instance: ${JSON.stringify([...lost])})`);
      } finally {
        for (const s of stops) s();
        await Promise.all(agents.map((a) => a.close()));
        await observer.close();
        registry.kill("SIGKILL");
        await registry.exited;
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
