// A catalog delta in a gateway that routes: one instance changes in its balancer (not a rebuild
// from the whole list), and what the whole-list rebuild did still happens: the endpoint's status
// and address follow, a pool nobody lists any more is closed. Every gateway of the process
// decodes a delta's bytes once (adapters/shared-decode.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { NatsServer, waitFor } from "roster-testkit";
import { createGateway, type Gateway } from "../../src/index.js";
import { catalogDeltas } from "../../src/adapters/mirror.js";
import { FakeRegistry, Upstream, makeInstance, silent } from "./helpers.js";

describe("gateway change path", () => {
  let nats: NatsServer;
  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
  });
  after(async () => {
    await nats.close();
  });

  test("gateway - deltas update a routing gateway's balancer one instance at a time, pools follow, each delta decoded once per process", async () => {
    const reg = await FakeRegistry.start(nats.url);
    const ups = await Promise.all([0, 1, 2].map((i) => Upstream.start(`u${i}`)));
    const gws: Gateway[] = [];
    try {
      ups.forEach((u, i) => reg.put(makeInstance("orders", `o${i}`, u.port)));
      for (let i = 0; i < 2; i++) gws.push(await createGateway({ nats: nats.url, services: ["orders"], balancer: "round-robin", logger: silent }));
      const [routing, idle] = gws as [Gateway, Gateway];
      const served = async (n: number) => {
        const seen = new Set<string>();
        for (let i = 0; i < n; i++) {
          const res = await routing.request("orders", { path: "/" });
          seen.add(String(res.headers["x-upstream"]));
          await res.body.dump();
        }
        return [...seen].sort();
      };
      assert.deepEqual(await served(30), ["u0", "u1", "u2"]);
      const balancerView = () => routing.stats("orders")!.endpoints.map((e) => `${e.id}:${e.status}`);
      const catalogView = () => routing.instances("orders").map((i) => `${i.id}:${i.status}`);
      const hits0 = catalogDeltas.hits;
      const settle = (revision: number) =>
        waitFor(() => gws.every((g) => g.revision("orders") === revision), { timeoutMs: 5000, what: `revision ${revision}` });

      // A health flip: that endpoint stops getting requests.
      await settle(reg.put(makeInstance("orders", "o0", ups[0]!.port, { status: "critical" })));
      assert.deepEqual(balancerView(), catalogView());
      assert.deepEqual(balancerView(), ["o0:critical", "o1:passing", "o2:passing"]);
      assert.deepEqual(await served(20), ["u1", "u2"]);

      // o1 moves to u2's port: its requests follow, and u1's pool (nobody lists it) is closed.
      await settle(reg.put(makeInstance("orders", "o1", ups[2]!.port)));
      assert.deepEqual(await served(20), ["u2"]);
      await waitFor(() => ups[1]!.sockets.size === 0, { timeoutMs: 5000, what: "u1's connections closed" });

      // A removal and an addition: the balancer keeps the catalog's order.
      await settle(reg.remove("orders", "o2"));
      await settle(reg.put(makeInstance("orders", "o3", ups[1]!.port)));
      await settle(reg.put(makeInstance("orders", "o0", ups[0]!.port)));
      assert.deepEqual(balancerView(), catalogView());
      assert.deepEqual(balancerView(), ["o0:passing", "o1:passing", "o3:passing"]);
      assert.deepEqual(await served(40), ["u0", "u1", "u2"]);
      assert.equal(idle.instances("orders").length, 3);
      // 5 deltas, each reaching 2 gateways of this process: decoded once each, reused once each.
      assert.ok(catalogDeltas.hits - hits0 >= 5, `hits ${catalogDeltas.hits - hits0}`);
      assert.equal(routing.mirror.stats.gaps + idle.mirror.stats.gaps, 0);
    } finally {
      await Promise.all(gws.map((g) => g.close()));
      await Promise.all(ups.map((u) => u.close()));
      await reg.close();
    }
  });
});
