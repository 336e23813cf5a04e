// A service too large for one NATS message: the registry serves its snapshot in pages and the
// mirror reassembles it (real nats-server, real registry, fake agents on the real wire).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "roster-registry";
import { createGateway } from "../../src/index.js";
import { FakeAgent, registration, silent, startRegistry } from "./helpers.js";

const HOSTS = 3;
const PER_HOST = 400;

describe("mirror paging", () => {
  let nats: NatsServer;
  let registry: Registry;
  const agents: FakeAgent[] = [];
  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url);
  });
  after(async () => {
    for (const a of agents) await a.close();
    await registry.close();
    await nats.close();
  });

  test("mirror paging - a 1,200-instance service (~1 MB) arrives whole through a paged snapshot", { timeout: 60_000 }, async () => {
    for (let h = 0; h < HOSTS; h++) {
      const agent = await FakeAgent.connect(nats.url, `big-host-${h}`, 1000);
      agents.push(agent);
      await agent.register(
        Array.from({ length: PER_HOST }, (_, i) =>
          registration("big", `b-${h}-${i}`, 10_000 + i, { meta: { blob: "m".repeat(500) } }),
        ),
      );
    }
    const total = HOSTS * PER_HOST;
    await waitFor(
      async () => {
        const res = await fetch(`${registry.url}/v1/services/big/instances`);
        return res.ok && ((await res.json()) as unknown[]).length === total;
      },
      { timeoutMs: 30_000, what: `${total} instances in the registry` },
    );
    const gw = await createGateway({ nats: nats.url, services: ["big"], logger: silent });
    try {
      await waitFor(() => gw.instances("big").length === total, { timeoutMs: 10_000, what: "the whole service in the mirror" });
      assert.ok(gw.mirror.stats.snapshotPages > 1, `pages: ${gw.mirror.stats.snapshotPages}`);
      assert.equal(new Set(gw.instances("big").map((i) => i.id)).size, total);
      assert.ok(gw.revision("big") > 0);
    } finally {
      await gw.close();
    }
  });
});
