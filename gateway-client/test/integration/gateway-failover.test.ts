// The gateway against the real registry (in-process), a fake agent on the real wire, and
// real node:http upstreams.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "roster-registry";
import { createGateway, NoHealthyUpstreamError, type Gateway } from "../../src/index.js";
import { FakeAgent, Upstream, registration, silent, startRegistry } from "./helpers.js";

describe("gateway with the real registry", () => {
  let nats: NatsServer;
  let registry: Registry | null = null;
  const cleanups: Array<() => Promise<void>> = [];
  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url);
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await registry?.close();
    await nats.close();
  });

  async function upstreams(n: number, prefix: string): Promise<Upstream[]> {
    const ups = await Promise.all(Array.from({ length: n }, (_, i) => Upstream.start(`${prefix}${i}`)));
    cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    return ups;
  }

  async function agentFor(service: string, ups: Upstream[], host: string): Promise<FakeAgent> {
    const agent = await FakeAgent.connect(nats.url, host);
    cleanups.push(() => agent.close());
    await agent.register(ups.map((u) => registration(service, u.name, u.port)));
    return agent;
  }

  async function gateway(services: string[], over: Parameters<typeof createGateway>[0] extends infer O ? Partial<O> : never = {}): Promise<Gateway> {
    const gw = await createGateway({ nats: nats.url, services, logger: silent, ...over });
    cleanups.push(() => gw.close());
    return gw;
  }

  test("gateway - an instance killed in the middle of a stream of idempotent requests costs zero failed requests", async () => {
    const ups = await upstreams(3, "kill");
    await agentFor("orders", ups, "host-kill");
    const gw = await gateway(["orders"]);
    await waitFor(() => gw.instances("orders").length === 3, { timeoutMs: 5000, what: "3 instances" });
    let ok = 0;
    const failures: unknown[] = [];
    const byUpstream = new Map<string, number>();
    let killed = false;
    const worker = async (): Promise<void> => {
      for (let i = 0; i < 150; i++) {
        try {
          const res = await gw.request("orders", { path: `/item/${i}` });
          const body = (await res.body.json()) as { upstream: string };
          assert.equal(res.statusCode, 200);
          byUpstream.set(body.upstream, (byUpstream.get(body.upstream) ?? 0) + 1);
          ok++;
        } catch (err) {
          failures.push(err);
        }
        if (!killed && ok >= 100) {
          killed = true;
          await ups[0]!.kill();
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.deepEqual(failures, [], `failed requests: ${failures.map(String).join("; ")}`);
    assert.equal(ok, 8 * 150);
    assert.ok(killed);
    const stats = gw.stats("orders")!;
    assert.ok(stats.endpoints.some((e) => e.id === "kill0" && (e.ejectedUntil > 0 || e.failures > 0)), "the killed instance saw failures");
  });

  test("gateway - a health transition to critical moves traffic away within milliseconds, no failures", async () => {
    const ups = await upstreams(2, "crit");
    const agent = await agentFor("billing", ups, "host-crit");
    const gw = await gateway(["billing"]);
    await waitFor(() => gw.instances("billing").length === 2, { timeoutMs: 5000, what: "2 instances" });
    const rev = gw.revision("billing");
    await agent.health("billing", "crit0", "critical");
    await waitFor(() => gw.revision("billing") > rev && gw.instances("billing").find((i) => i.id === "crit0")?.status === "critical", { timeoutMs: 5000, what: "critical seen" });
    const hitsBefore = ups[0]!.hits;
    for (let i = 0; i < 20; i++) {
      const res = await gw.request("billing", { path: "/" });
      await res.body.dump();
      assert.equal(res.statusCode, 200);
    }
    assert.equal(ups[0]!.hits, hitsBefore, "no request went to the critical instance");
  });

  test("gateway - NoHealthyUpstreamError only when nothing can serve, with its reasons", async () => {
    const ups = await upstreams(2, "none");
    const agent = await agentFor("ledger", ups, "host-none");
    const gw = await gateway(["ledger"], { balancerOptions: { panicThreshold: 0 } });
    await waitFor(() => gw.instances("ledger").length === 2, { timeoutMs: 5000, what: "2 instances" });
    // One critical: the other still serves.
    await agent.health("ledger", "none0", "critical");
    await waitFor(() => gw.instances("ledger").find((i) => i.id === "none0")?.status === "critical", { timeoutMs: 5000, what: "none0 critical" });
    const res = await gw.request("ledger");
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    // Both critical: nothing can serve.
    await agent.health("ledger", "none1", "critical");
    await waitFor(() => gw.instances("ledger").every((i) => i.status === "critical"), { timeoutMs: 5000, what: "all critical" });
    await assert.rejects(gw.request("ledger"), (err: unknown) => {
      assert.ok(err instanceof NoHealthyUpstreamError);
      assert.equal(err.code, "ROSTER_NO_HEALTHY_UPSTREAM");
      assert.equal(err.service, "ledger");
      assert.equal(err.reasons.known, 2);
      assert.equal(err.reasons.critical, 2);
      assert.equal(err.revision, gw.revision("ledger"));
      return true;
    });
    // Unknown service: a distinct error.
    await assert.rejects(gw.request("no-such-service"), { code: "ROSTER_UNKNOWN_SERVICE" });
    await assert.rejects(gw.request("bad.name"), { code: "ROSTER_INVALID_OPTIONS" });
  });

  test("gateway - registry stopped: requests still succeed on known instances and `stale` is emitted", async () => {
    const ups = await upstreams(2, "stale");
    await agentFor("catalog", ups, "host-stale");
    const gw = await gateway(["catalog"]);
    await waitFor(() => gw.instances("catalog").length === 2 && !gw.isStale, { timeoutMs: 5000, what: "fresh with 2 instances" });
    const staleEvents: Array<[boolean, string | undefined]> = [];
    gw.on("stale", (s: boolean, r?: string) => staleEvents.push([s, r]));
    await registry!.close();
    registry = null;
    await waitFor(() => gw.isStale, { timeoutMs: 5000, what: "stale" });
    assert.deepEqual(staleEvents[0], [true, "presence-lost"]);
    for (let i = 0; i < 20; i++) {
      const res = await gw.request("catalog");
      await res.body.dump();
      assert.equal(res.statusCode, 200);
    }
    // Registry back: fresh again.
    registry = await startRegistry(nats.url);
    await waitFor(() => !gw.isStale, { timeoutMs: 10_000, what: "fresh again" });
  });
});
