// The gateway client on a nats-server with Roster's generated users: it dials with its own
// nkey (natsAuth), through a comma-separated server list, mirrors the catalog and routes; its
// user cannot write the catalog (registry/test/integration/nats-permissions.test.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { RegisterMessage, agentSubject, encode, natsConnectOptions } from "roster-schemas";
import { build, parseConfig, type Registry } from "roster-registry";
import { freePort, startSecuredNats, waitFor, type SecuredNats } from "roster-testkit";
import { InvalidOptionsError, createGateway, natsAuthFromEnv } from "../../src/index.js";
import { Upstream, registration, silent } from "./helpers.js";

describe("gateway with NATS credentials", () => {
  let nats: SecuredNats;
  let registry: Registry;
  let up: Upstream;
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    nats = await startSecuredNats({ hosts: ["host-a"], gateways: 1 });
    registry = build(parseConfig({ nats: { url: nats.url, reconnectWait: 100, nkeySeedFile: nats.seedFile("registry") }, http: { listen: "127.0.0.1:0" } }), { logger: silent });
    await registry.start();
    await registry.whenReady();
    up = await Upstream.start("authsvc-0");
    const nc = await connect(natsConnectOptions(nats.url, { nkeySeedFile: nats.seedFile("agent-host-a") }));
    cleanups.push(() => nc.close());
    nc.publish(
      agentSubject("host-a", "register"),
      encode(RegisterMessage, { v: 1, kind: "register", hostId: "host-a", epoch: 1, seq: 1, sentAt: Date.now(), heartbeatIntervalMs: 5000, instances: [registration("authsvc", up.name, up.port)] }),
    );
    await nc.flush();
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await up?.close();
    await registry?.close();
    await nats?.close();
  });

  test("gateway-auth - dials with its nkey through a comma-separated list, mirrors and routes", async () => {
    const dead = `nats://127.0.0.1:${await freePort()}`;
    const env = natsAuthFromEnv({ ROSTER_NATS_NKEY_SEED_FILE: nats.seedFile("gateway-1") });
    const gw = await createGateway({ nats: `${dead},${nats.url}`, natsAuth: env, services: ["authsvc"], logger: silent, connectTimeout: 5000 });
    cleanups.push(() => gw.close());
    await waitFor(() => gw.instances("authsvc").length === 1, { timeoutMs: 5000, what: "the mirrored instance" });
    const res = await gw.request("authsvc", { path: "/" });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  });

  test("gateway-auth - without credentials it cannot mirror anything", async () => {
    const gw = await createGateway({ nats: nats.url, services: ["authsvc"], logger: silent, connectTimeout: 300, snapshotTimeout: 200 });
    cleanups.push(() => gw.close());
    assert.equal(gw.instances("authsvc").length, 0);
  });

  test("gateway-auth - a bad natsAuth names the field", async () => {
    await assert.rejects(
      createGateway({ nats: nats.url, natsAuth: { user: "u" }, logger: silent }),
      (e: unknown) => e instanceof InvalidOptionsError && e.issues.includes("natsAuth.password: user needs password or passwordFile"),
    );
    await assert.rejects(
      createGateway({ nats: nats.url, natsAuth: { nkeySeedFile: "/nonexistent/seed" }, logger: silent }),
      (e: unknown) => e instanceof InvalidOptionsError && /^natsAuth\.nkeySeedFile: cannot read/.test(e.issues[0] ?? ""),
    );
  });
});
