// The gateway's catalog through NATS trouble, with the real registry: restarts, gaps, an
// unreachable server at start (last-known-good file), a caller-owned connection.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { NatsServer, freePort, waitFor } from "roster-testkit";
import { CatalogDelta, catalogSubject, encode } from "roster-schemas";
import type { Registry } from "roster-registry";
import { createGateway } from "../../src/index.js";
import { FakeAgent, FakeRegistry, Upstream, makeInstance, registration, silent, startRegistry } from "./helpers.js";

describe("gateway and NATS", () => {
  let nats: NatsServer;
  let registry: Registry;
  let dir: string;
  const cleanups: Array<() => Promise<void>> = [];
  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url);
    dir = await mkdtemp(join(tmpdir(), "roster-gw-"));
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await registry.close();
    await nats.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function stack(service: string, count: number) {
    const ups = await Promise.all(Array.from({ length: count }, (_, i) => Upstream.start(`${service}-${i}`)));
    cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    const agent = await FakeAgent.connect(nats.url, `host-${service}`);
    cleanups.push(() => agent.close());
    await agent.register(ups.map((u) => registration(service, u.name, u.port)));
    return { ups, agent };
  }

  test("gateway - deltas from the registry apply in order; an induced gap triggers a resync", async () => {
    const { ups, agent } = await stack("gapsvc", 2);
    const gw = await createGateway({ nats: nats.url, services: ["gapsvc"], logger: silent });
    cleanups.push(() => gw.close());
    await waitFor(() => gw.instances("gapsvc").length === 2, { timeoutMs: 5000, what: "2 instances" });
    const revisions: number[] = [];
    gw.on("change", (s: string, rev: number) => s === "gapsvc" && revisions.push(rev));
    await agent.health("gapsvc", ups[0]!.name, "warning");
    await agent.health("gapsvc", ups[1]!.name, "warning");
    await agent.health("gapsvc", ups[0]!.name, "passing");
    await waitFor(() => revisions.length >= 3, { timeoutMs: 5000, what: "3 changes" });
    assert.deepEqual([...revisions].sort((a, b) => a - b), revisions, "in order");
    const statuses = () => gw.instances("gapsvc").map((i) => `${i.id}:${i.status}`).sort();
    assert.deepEqual(statuses(), [`${ups[0]!.name}:passing`, `${ups[1]!.name}:warning`]);
    // A forged delta whose prevRevision skips one: the gateway must not trust it, and resyncs
    // to the registry's truth.
    const resyncsBefore = gw.mirror.stats.resyncs;
    const nc = await connect({ servers: nats.url });
    const forged = { ...gw.instances("gapsvc")[0]!, status: "critical" as const };
    nc.publish(
      catalogSubject("gapsvc"),
      encode(CatalogDelta, { v: 1, kind: "delta", op: "put", service: "gapsvc", instanceId: forged.id, revision: gw.revision("gapsvc") + 100, prevRevision: gw.revision("gapsvc") + 99, instance: forged }),
    );
    await nc.flush();
    await nc.close();
    await waitFor(() => gw.mirror.stats.resyncs > resyncsBefore && gw.mirror.stats.gaps >= 1, { timeoutMs: 5000, what: "resync" });
    await waitFor(() => !gw.instances("gapsvc").some((i) => i.status === "critical"), { timeoutMs: 5000, what: "truth restored" });
  });

  test("gateway - nats-server down: requests still succeed; restarted: the mirror recovers and new changes arrive after", async () => {
    const { ups, agent } = await stack("restart", 2);
    const gw = await createGateway({ nats: nats.url, services: ["restart"], logger: silent });
    cleanups.push(() => gw.close());
    await waitFor(() => gw.instances("restart").length === 2 && !gw.isStale, { timeoutMs: 5000, what: "fresh" });
    const stale: boolean[] = [];
    gw.on("stale", (s: boolean) => stale.push(s));
    await nats.stop();
    await waitFor(() => stale.includes(true), { timeoutMs: 5000, what: "stale while NATS is down" });
    await waitFor(() => gw.staleReason === "nats-disconnected", { timeoutMs: 5000, what: `reason nats-disconnected (${gw.staleReason})` });
    // NATS down: requests keep succeeding on the known instances.
    for (let i = 0; i < 10; i++) {
      const res = await gw.request("restart");
      await res.body.dump();
      assert.equal(res.statusCode, 200);
    }
    await nats.start();
    await waitFor(() => !gw.isStale, { timeoutMs: 15_000, what: "fresh after restart" });
    await agent.health("restart", ups[1]!.name, "critical");
    await waitFor(() => gw.instances("restart").find((i) => i.id === ups[1]!.name)?.status === "critical", { timeoutMs: 10_000, what: "change after restart" });
    const res = await gw.request("restart");
    assert.equal(((await res.body.json()) as { upstream: string }).upstream, ups[0]!.name);
  });

  test("gateway - NATS unreachable at start: routes on the last-known-good file, then connects", async () => {
    const { ups } = await stack("lkgsvc", 1);
    const file = join(dir, "lkg.json");
    const first = await createGateway({ nats: nats.url, services: ["lkgsvc"], lastKnownGoodFile: file, logger: silent });
    await waitFor(() => first.instances("lkgsvc").length === 1, { timeoutMs: 5000, what: "instance" });
    await first.close(); // flushes the file
    assert.match(await readFile(file, "utf8"), /lkgsvc/);
    // A second NATS server on a port nobody listens on yet.
    const port = await freePort();
    const t0 = Date.now();
    const gw = await createGateway({ nats: `nats://127.0.0.1:${port}`, lastKnownGoodFile: file, connectTimeout: 300, logger: silent });
    cleanups.push(() => gw.close());
    assert.ok(Date.now() - t0 < 3000, "createGateway does not hang on an unreachable NATS");
    assert.equal(gw.isStale, true);
    assert.equal(gw.staleReason, "nats-unreachable");
    const res = await gw.request("lkgsvc");
    assert.equal(((await res.body.json()) as { upstream: string }).upstream, ups[0]!.name);
    // NATS comes up on that port (with a registry): the gateway connects in the background.
    const late = await NatsServer.start({ jetstream: false, args: ["-p", String(port)] });
    cleanups.push(() => late.close());
    assert.equal(late.port, port);
    const lateRegistry = await FakeRegistry.start(late.url);
    cleanups.push(() => lateRegistry.close());
    lateRegistry.put(makeInstance("lkgsvc", ups[0]!.name, ups[0]!.port));
    await waitFor(() => !gw.isStale, { timeoutMs: 10_000, what: "connected and fresh" });
    assert.equal(gw.instances("lkgsvc")[0]!.id, ups[0]!.name);
  });

  test("gateway - a caller-owned NATS connection is left open by close()", async () => {
    await stack("owned", 1);
    const nc = await connect({ servers: nats.url });
    try {
      const gw = await createGateway({ nats: nc, services: ["owned"], logger: silent });
      await waitFor(() => gw.instances("owned").length === 1, { timeoutMs: 5000, what: "instance" });
      const res = await gw.request("owned");
      await res.body.dump();
      await gw.close();
      assert.equal(nc.isClosed(), false);
    } finally {
      await nc.close();
    }
  });
});
