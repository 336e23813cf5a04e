// The Consul-compatible read API, read by the `consul` npm client (a client no one here wrote)
// and by plain fetch for what the client hides (headers, status codes), on a real registry fed by
// the agent wire protocol over a real nats-server.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Consul from "consul";
import fc from "fast-check";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

type Entry = {
  Node: { ID: string; Node: string; Address: string; Datacenter: string; CreateIndex: number };
  Service: { ID: string; Service: string; Tags: string[]; Port: number; Address: string; Weights: { Passing: number; Warning: number }; Meta: Record<string, string> };
  Checks: Array<{ CheckID: string; Status: string; ServiceID: string; Type: string; Node: string }>;
};

const READ = "consul-read-token-0123456789";

describe("consul-api", () => {
  let nats: NatsServer;
  let registry: Registry;
  let agent: FakeAgent;
  let lost: FakeAgent;
  let stopBeat: () => void;
  let base: string;
  let consul: Consul;

  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url, {
      consulApi: { listen: "127.0.0.1:0", datacenter: "dc-test" },
      deregisterAfter: "10m", // o4 stays agent-lost for the whole file
      http: { listen: "127.0.0.1:0", auth: { tokens: [{ name: "reader", token: READ, scopes: ["read"] }] } },
    });
    base = registry.frontDoors.consulUrl!;
    const { port } = new URL(base);
    consul = new Consul({ host: "127.0.0.1", port: Number(port), defaults: { token: READ } });
    agent = await FakeAgent.connect(nats.url, "host-a");
    await agent.register([
      inst("o1", { address: "10.0.0.1", port: 8001, tags: ["v1", "web"], meta: { version: "1.2" }, checks: [{ id: "http-0", type: "http", status: "passing", since: 1 }] }),
      inst("o2", { address: "10.0.0.2", port: 8002, tags: ["v2"], status: "warning", checks: [{ id: "http-0", type: "http", status: "warning", since: 1, output: "slow" }] }),
      inst("o3", { address: "10.0.0.3", port: 8003, status: "draining" }),
      inst("p1", { service: "payments", address: "10.0.1.1", port: 9001, tags: ["pci"] }),
    ]);
    stopBeat = agent.beat();
    lost = await FakeAgent.connect(nats.url, "host-lost");
    await lost.register([inst("o4", { address: "10.0.0.4", port: 8004 })]);
    await waitFor(() => registry.memory.get("orders", "o4")?.reason === "agent-lost", { timeoutMs: 10_000, what: "o4 agent-lost" });
    await waitFor(() => registry.memory.get("payments", "p1") !== undefined, { timeoutMs: 10_000, what: "payments" });
  });

  after(async () => {
    stopBeat?.();
    await agent?.close();
    await lost?.close();
    await registry?.close();
    await nats?.close();
  });

  it("consul-api - the consul client lists services with their tags", async () => {
    const services = (await consul.catalog.service.list()) as Record<string, string[]>;
    assert.deepEqual(services, { orders: ["v1", "v2", "web"], payments: ["pci"] });
  });

  it("consul-api - health/service in Consul's shapes; passing=true keeps only instances whose every check passes", async () => {
    const all = (await consul.health.service({ service: "orders" })) as Entry[];
    assert.deepEqual(all.map((e) => e.Service.ID).sort(), ["o1", "o2", "o3", "o4"]);
    const o1 = all.find((e) => e.Service.ID === "o1")!;
    assert.equal(o1.Node.Node, "host-a");
    assert.equal(o1.Node.Datacenter, "dc-test");
    assert.match(o1.Node.ID, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(o1.Service.Address, "10.0.0.1");
    assert.equal(o1.Service.Port, 8001);
    assert.deepEqual(o1.Service.Tags, ["v1", "web"]);
    assert.deepEqual(o1.Service.Meta, { version: "1.2" });
    assert.deepEqual(o1.Service.Weights, { Passing: 100, Warning: 50 });
    assert.deepEqual(o1.Checks.map((c) => [c.CheckID, c.Status]), [["serfHealth", "passing"], ["service:o1", "passing"]]);
    const o2 = all.find((e) => e.Service.ID === "o2")!;
    assert.equal(o2.Checks[1]!.Status, "warning");
    // Draining is Consul's maintenance mode; agent-lost is a failed node.
    const o3 = all.find((e) => e.Service.ID === "o3")!;
    assert.ok(o3.Checks.some((c) => c.CheckID === "_service_maintenance:o3" && c.Status === "critical" && c.Type === "maintenance"));
    const o4 = all.find((e) => e.Service.ID === "o4")!;
    assert.ok(o4.Checks.some((c) => c.CheckID === "serfHealth" && c.Status === "critical"));
    const passing = (await consul.health.service({ service: "orders", passing: true })) as Entry[];
    assert.deepEqual(passing.map((e) => e.Service.ID), ["o1"]);
    const tagged = (await consul.health.service({ service: "orders", tag: "v2", dc: "dc-test", near: "_agent" } as never)) as Entry[];
    assert.deepEqual(tagged.map((e) => e.Service.ID), ["o2"]);
  });

  it("consul-api - catalog/service, status/leader, agent/self and an unknown service", async () => {
    const nodes = (await consul.catalog.service.nodes("payments")) as Array<Record<string, unknown>>;
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0]!.ServiceID, "p1");
    assert.equal(nodes[0]!.ServicePort, 9001);
    assert.equal(nodes[0]!.ServiceAddress, "10.0.1.1");
    assert.deepEqual(nodes[0]!.ServiceTags, ["pci"]);
    assert.equal(nodes[0]!.Node, "host-a");
    assert.equal(typeof nodes[0]!.ModifyIndex, "number");
    assert.match(String(await consul.status.leader()), /^127\.0\.0\.1:\d+$/);
    const leader = await getJson(`${base}/v1/status/leader`, { headers: { "X-Consul-Token": READ } });
    assert.equal(leader.body, new URL(base).host, "a JSON string, as Consul sends it");
    const self = (await consul.agent.self()) as { Config: { Datacenter: string } };
    assert.equal(self.Config.Datacenter, "dc-test");
    assert.deepEqual(await consul.health.service("nope"), []);
  });

  it("consul-api - headers: X-Consul-Index is the service's revision; KnownLeader and LastContact", async () => {
    const r = await getJson(`${base}/v1/health/service/orders`, { headers: { "X-Consul-Token": READ } });
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers.get("x-consul-index")), registry.memory.serviceRevision("orders").revision);
    assert.equal(r.headers.get("x-consul-knownleader"), "true");
    assert.equal(r.headers.get("x-consul-lastcontact"), "0");
    const p = await getJson(`${base}/v1/health/service/payments`, { headers: { "X-Consul-Token": READ } });
    assert.notEqual(p.headers.get("x-consul-index"), r.headers.get("x-consul-index"), "indexes are per service");
  });

  it("consul-api - a blocking query (consul.watch) wakes on a change and not on another service's", async () => {
    const watch = consul.watch({ method: consul.health.service, options: { service: "orders", wait: "20s" } });
    const changes: Entry[][] = [];
    watch.on("change", (data: Entry[]) => changes.push(data));
    watch.on("error", () => undefined);
    try {
      await waitFor(() => changes.length === 1, { timeoutMs: 5000, what: "first answer" });
      // Another service changing does not wake it.
      await agent.health("p1", "critical", "payments");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(changes.length, 1);
      const flipped = Date.now();
      await agent.health("o1", "critical");
      await waitFor(() => changes.length === 2, { timeoutMs: 5000, what: "watch woke" });
      assert.ok(Date.now() - flipped < 2000, `woke after ${Date.now() - flipped} ms`);
      const o1 = changes[1]!.find((e) => e.Service.ID === "o1")!;
      assert.ok(o1.Checks.some((c) => c.Status === "critical"));
    } finally {
      watch.end();
      await agent.health("o1", "passing");
      await agent.health("p1", "passing", "payments");
    }
  });

  it("consul-api - blocking: index and wait in Consul's duration format, answered at the deadline when nothing changes", async () => {
    const first = await getJson(`${base}/v1/catalog/services`, { headers: { Authorization: `Bearer ${READ}` } });
    const index = first.headers.get("x-consul-index")!;
    const t0 = Date.now();
    const r = await getJson(`${base}/v1/health/service/orders?index=${registry.memory.serviceRevision("orders").revision}&wait=400ms&token=${READ}`);
    const took = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.ok(took >= 380 && took < 2000, `took ${took} ms`);
    assert.ok(Number(index) >= 1);
    const bad = await getJson(`${base}/v1/health/service/orders?index=1&wait=forever`, { headers: { "X-Consul-Token": READ } });
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { code: string }).code, "ROSTER_BAD_REQUEST");
  });

  it("consul-api - read-only: every write answers 405 ROSTER_CONSUL_READ_ONLY; other Consul APIs 404 ROSTER_CONSUL_UNSUPPORTED", async () => {
    const writes: Array<[string, string]> = [
      ["PUT", "/v1/agent/service/register"],
      ["PUT", "/v1/agent/service/deregister/o1"],
      ["PUT", "/v1/catalog/register"],
      ["PUT", "/v1/catalog/deregister"],
      ["PUT", "/v1/kv/some/key"],
      ["DELETE", "/v1/kv/some/key"],
      ["POST", "/v1/health/service/orders"],
      ["PUT", "/v1/agent/maintenance?enable=true"],
    ];
    for (const [method, path] of writes) {
      const r = await getJson(`${base}${path}`, { method, headers: { "X-Consul-Token": READ, "content-type": "application/json" }, body: method === "DELETE" ? null : "{}" });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal((r.body as { code: string }).code, "ROSTER_CONSUL_READ_ONLY");
      assert.match((r.body as { message: string }).message, /agents/);
    }
    await assert.rejects(consul.agent.service.register({ name: "evil", port: 1 }), (e: { response?: { statusCode: number; body: { code: string } } }) => {
      assert.equal(e.response?.statusCode, 405);
      assert.equal(e.response?.body.code, "ROSTER_CONSUL_READ_ONLY");
      return true;
    });
    const kv = await getJson(`${base}/v1/kv/some/key`, { headers: { "X-Consul-Token": READ } });
    assert.equal(kv.status, 404);
    assert.equal((kv.body as { code: string }).code, "ROSTER_CONSUL_UNSUPPORTED");
    assert.equal(registry.memory.get("evil", "evil"), undefined);
  });

  it("consul-api - with tokens configured, a caller without one (or with a wrong one) is refused", async () => {
    const none = await getJson(`${base}/v1/health/service/orders`);
    assert.equal(none.status, 401);
    assert.equal((none.body as { code: string }).code, "ROSTER_UNAUTHORIZED");
    const wrong = await getJson(`${base}/v1/catalog/services`, { headers: { "X-Consul-Token": "not-the-token-0123456789" } });
    assert.equal(wrong.status, 401);
    const anon = new Consul({ host: "127.0.0.1", port: Number(new URL(base).port) });
    await assert.rejects(anon.catalog.service.list(), /401|token|unauthorized/i);
    // A write without a token is refused before it is told "read-only".
    assert.equal((await getJson(`${base}/v1/catalog/register`, { method: "PUT", body: "{}" })).status, 401);
  });

  it("consul-api - fuzzed methods, paths and query strings never answer 5xx, and no method writes", async () => {
    const before = registry.memory.revision;
    const seg = fc.oneof(
      fc.constantFrom("v1", "catalog", "health", "service", "services", "checks", "agent", "kv", "status", "leader", "self", "orders", "..", "%00", "%2e%2e", "%ff"),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    const key = fc.constantFrom("index", "wait", "passing", "tag", "filter", "token", "dc", "near", "stale", "x");
    const val = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom("-1", "99999999999999999999999", "1e9", "NaN", "0", "true", "1", "10ms"));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"), fc.array(seg, { maxLength: 5 }), fc.array(fc.tuple(key, val), { maxLength: 4 }), async (method, segs, q) => {
        const qs = q.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
        const url = `${base}/${segs.join("/")}${qs ? `?${qs}` : ""}`;
        // A valid index past the service's revision blocks (up to 5 minutes): cut it short.
        const blocks = q.some(([k, v]) => k === "index" && /^\d{1,20}$/.test(v));
        try {
          const res = await fetch(url, { method, headers: { "X-Consul-Token": READ }, signal: AbortSignal.timeout(blocks ? 300 : 5000) });
          await res.arrayBuffer();
          assert.ok(res.status < 500, `${method} ${url} → ${res.status}`);
          if (method !== "GET" && method !== "HEAD") assert.ok([400, 404, 405].includes(res.status), `${method} ${url} → ${res.status}`);
        } catch (err) {
          if (!(blocks && (err as Error).name === "TimeoutError")) throw err;
        }
      }),
      { numRuns: 300 },
    );
    assert.equal(registry.memory.revision, before, "nothing was written");
  });
});
