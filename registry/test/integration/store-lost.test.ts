// A NATS node back with an empty store (a lost volume, a replaced single node): the registry must
// notice, say it cannot write, recreate its buckets and converge to what the agents report.
// Real nats-server (restarted without JetStream, then with an empty store), real agent process,
// real demo services.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { CATALOG_BUCKET, CatalogInstance, PRESENCE_SUBJECT, decode } from "roster-schemas";
import { ChildProc, NatsServer, freePort, metricValue, repoRoot, scrape, spawnNode, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { getJson, startRegistry, type Inst } from "./helpers.js";

const AGENT = join(repoRoot, "agent", "bin", "roster-agent.js");
const DEMO = join(repoRoot, "examples", "demo-service.mjs");

describe("registry when JetStream state is lost", () => {
  let nats: NatsServer;
  let reg: Registry;
  let agent: ChildProc;
  let watcher: NatsConnection;
  let dir: string;
  const demos = new Map<string, ChildProc>();
  const ports: Record<string, number> = {};
  let presences: number[] = [];

  const statusOf = async (service: string) => {
    const r = await getJson(`${reg.url}/v1/services/${service}/instances`).catch(() => null);
    return r?.status === 200 ? (r.body as Inst[])[0]?.status : undefined;
  };

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-store-lost-"));
    ports.orders = await freePort();
    ports.payments = await freePort();
    for (const s of ["orders", "payments"]) demos.set(s, spawnNode(DEMO, [String(ports[s]), s]));
    reg = await startRegistry(nats.url, { presenceInterval: "200ms" });
    const check = "{ type: http, path: /health, interval: 200ms, timeout: 150ms, failuresBeforeCritical: 2 }";
    const agentConfig = join(dir, "agent.yaml");
    await writeFile(
      agentConfig,
      [
        "host: { id: store-host }",
        "heartbeat: { interval: 200ms }",
        "services:",
        `  - { name: orders, id: orders-1, port: ${ports.orders}, address: 127.0.0.1, checks: [${check}] }`,
        `  - { name: payments, id: payments-1, port: ${ports.payments}, address: 127.0.0.1, checks: [${check}] }`,
        "",
      ].join("\n"),
    );
    agent = spawnNode(AGENT, ["--config", agentConfig, "--nats", nats.url, "--api", "127.0.0.1:0"]);
    watcher = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    watcher.subscribe(PRESENCE_SUBJECT, { callback: () => void presences.push(Date.now()) });
  });

  after(async () => {
    for (const p of [agent, ...demos.values()]) p?.kill("SIGKILL");
    await Promise.all([agent, ...demos.values()].map((p) => p?.exited));
    await watcher?.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("store lost - noticed within seconds, writes held and said so, buckets recreated, catalog converges to the agents", async () => {
    await waitFor(async () => (await statusOf("orders")) === "passing" && (await statusOf("payments")) === "passing", { timeoutMs: 45_000, what: "both passing" });
    const revisionBefore = reg.memory.revision;
    assert.ok(revisionBefore > 0);

    // The node comes back with its volume lost and, first, without JetStream at all.
    await nats.stop("SIGKILL");
    demos.get("orders")!.kill("SIGKILL"); // dies during the outage: must not stay passing
    const back = Date.now();
    await nats.start({ wipeStore: true, jetstream: false });
    await waitFor(() => (reg.status().store as { available: boolean }).available === false, { timeoutMs: 10_000, what: "registry notices its buckets are gone" });
    const noticedMs = Date.now() - back;
    assert.ok(noticedMs < 6000, `noticed after ${noticedMs} ms`);
    assert.equal((await getJson(`${reg.url}/readyz`)).status, 503, "not ready while it cannot write");
    const status = (await getJson(`${reg.url}/v1/status`)).body as { store: { available: boolean; losses: number } };
    assert.equal(status.store.available, false);
    assert.ok(status.store.losses >= 1);
    assert.equal(metricValue(await scrape(`${reg.url}/metrics`), "roster_registry_store_available"), 0);
    await waitFor(() => watcher.info !== undefined && !watcher.isClosed(), { what: "watcher reconnected" });
    await sleep(400);
    presences = [];
    await sleep(1000); // five presence intervals
    assert.equal(presences.length, 0, "no presence while the store is lost: gateway clients go stale");
    await waitFor(async () => (await statusOf("orders")) !== undefined, { what: "HTTP still serves from memory" });

    // JetStream is back, on an empty store.
    await nats.restart("SIGKILL", { wipeStore: true, jetstream: true });
    await waitFor(() => reg.ready(), { timeoutMs: 15_000, what: "registry writes again" });
    const s2 = (await getJson(`${reg.url}/v1/status`)).body as { store: { available: boolean; recreations: number } };
    assert.equal(s2.store.available, true);
    assert.ok(s2.store.recreations >= 1);
    await waitFor(async () => (await statusOf("orders")) === "critical" && (await statusOf("payments")) === "passing", {
      timeoutMs: 15_000,
      what: "catalog converges: the killed instance critical, the live one passing",
    });

    // The recreated bucket holds the catalog, with revisions past the old ones.
    const kv = await new Kvm(watcher).open(CATALOG_BUCKET);
    await waitFor(async () => {
      const rows: CatalogInstance[] = [];
      for (const key of ["orders.orders-1", "payments.payments-1"]) {
        const e = await kv.get(key).catch(() => null);
        if (e?.operation !== "PUT") return false;
        const r = decode(CatalogInstance, e.value);
        if (!r.ok) return false;
        assert.ok(e.revision > revisionBefore, `revision ${e.revision} continues past ${revisionBefore}`);
        rows.push(r.value);
      }
      return rows[0]!.status === "critical" && rows[1]!.status === "passing";
    }, { timeoutMs: 15_000, what: "KV holds what the agent reports" });
    assert.ok(reg.memory.revision > revisionBefore);
    presences = [];
    await waitFor(() => presences.length > 0, { timeoutMs: 5000, what: "presence again" });
  });
});
