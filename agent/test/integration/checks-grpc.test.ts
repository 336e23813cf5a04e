import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { freePort } from "roster-testkit";
import type { GrpcCheckSpec } from "../../src/config.js";
import { resolveInstance } from "../../src/config.js";
import { GrpcProber } from "../../src/adapters/checks/grpc.js";

// Against a real gRPC server (grpc-js) running the gRPC team's health service implementation.
const spec = (port: number, service: string, timeoutMs = 3000): GrpcCheckSpec => ({
  id: "grpc-0", type: "grpc", intervalMs: 1000, timeoutMs, successBeforePassing: 1, failuresBeforeCritical: 2, host: "127.0.0.1", port, service, tls: false,
});

async function serve(port: number): Promise<{ server: grpc.Server; health: HealthImplementation }> {
  const server = new grpc.Server();
  const health = new HealthImplementation({ "": "SERVING", orders: "SERVING", billing: "NOT_SERVING" });
  health.addToServer(server);
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return { server, health };
}

describe("grpc check", () => {
  let port = 0;
  let srv: { server: grpc.Server; health: HealthImplementation };
  const prober = new GrpcProber();

  before(async () => {
    port = await freePort();
    srv = await serve(port);
  });
  after(() => {
    prober.close();
    srv?.server.forceShutdown();
  });

  it("grpc check - SERVING is passing, for a named service and for the server as a whole", async () => {
    assert.deepEqual(await prober.probe(spec(port, "orders")), { status: "passing", output: 'gRPC health service "orders": SERVING' });
    assert.equal((await prober.probe(spec(port, ""))).status, "passing");
  });

  it("grpc check - NOT_SERVING and an unknown service are critical", async () => {
    assert.deepEqual(await prober.probe(spec(port, "billing")), { status: "critical", output: 'gRPC health service "billing": NOT_SERVING' });
    const unknown = await prober.probe(spec(port, "nope"));
    assert.equal(unknown.status, "critical");
    assert.match(unknown.output ?? "", /NOT_FOUND/);
  });

  it("grpc check - follows the server's status as it changes", async () => {
    srv.health.setStatus("orders", "NOT_SERVING");
    assert.equal((await prober.probe(spec(port, "orders"))).status, "critical");
    srv.health.setStatus("orders", "SERVING");
    assert.equal((await prober.probe(spec(port, "orders"))).status, "passing");
  });

  it("grpc check - nothing listening is critical; a restarted server passes again within a second or so", async () => {
    const other = await freePort();
    const down = await prober.probe(spec(other, "orders", 300));
    assert.equal(down.status, "critical");
    const s2 = await serve(other);
    try {
      const t0 = Date.now();
      let r = await prober.probe(spec(other, "orders", 300));
      while (r.status !== "passing" && Date.now() - t0 < 5000) r = await prober.probe(spec(other, "orders", 300));
      assert.equal(r.status, "passing", r.output);
      assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms after the server came back`);
    } finally {
      s2.server.forceShutdown();
    }
  });

  it("grpc check - a server that does not answer in time is critical at the timeout", async () => {
    const server = new grpc.Server();
    const hang = await freePort();
    // A health service that never answers.
    const { service } = await import("grpc-health-check");
    server.addService(service, { check: () => undefined, watch: () => undefined } as unknown as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${hang}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    try {
      const t0 = Date.now();
      const r = await prober.probe(spec(hang, "orders", 300));
      assert.deepEqual(r, { status: "critical", output: "timeout after 300ms" });
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      server.forceShutdown();
    }
  });

  it("grpc check - targets the instance's own address and port unless told otherwise", () => {
    const ctx = { hostId: "h", defaultAddress: "10.0.0.9", baseDir: "/" };
    const base = { name: "orders", port: 9000, tags: [], meta: {}, weight: 100 };
    const r = resolveInstance({ ...base, checks: [{ type: "grpc", interval: 1000, successBeforePassing: 1, failuresBeforeCritical: 2, service: "orders", tls: false }] }, ctx);
    assert.ok(r.ok);
    assert.deepEqual(r.value.checks[0], { id: "grpc-0", type: "grpc", intervalMs: 1000, timeoutMs: 1000, successBeforePassing: 1, failuresBeforeCritical: 2, host: "10.0.0.9", port: 9000, service: "orders", tls: false });
  });
});
