// Attack 2 of the "secure by default" issue, replayed against real processes: SSRF and port
// scanning through checks registered on the agent's local API (a `url` or `host`/`port` elsewhere,
// a Host or metadata header, another method, a link-local or metadata address), with the verdict
// read back from the registry's catalog. An "internal" HTTP server stands for the service an
// attacker wants to reach: it must never see a request. Next to it, the legitimate path: an
// API-registered http/tcp check of the instance's own port, and the config setting that allows more.
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { NatsServer, type ChildProc } from "roster-testkit";
import { catalogInstances, cleanEnv, killAll, raw, startAgent, startRegistry, tempDir, waitForInstance } from "./agent-support.js";

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as AddressInfo).port };
}

const COMMON = "heartbeat: { interval: 200ms }\ndrain: { period: 0 }\n";

describe("security - agent API: check targets (SSRF)", () => {
  let nats: NatsServer;
  let cleanup: () => Promise<void>;
  let dir: string;
  let registry: { proc: ChildProc; url: string };
  let agent: { proc: ChildProc; api: string };
  let open: { proc: ChildProc; api: string };
  let internal: { server: Server; port: number };
  let own: { server: Server; port: number };
  const internalSeen: IncomingHttpHeaders[] = [];

  before(async () => {
    const t = await tempDir();
    cleanup = t.cleanup;
    internal = await listen((req, res) => {
      internalSeen.push(req.headers);
      res.end("secret");
    });
    own = await listen((_req, res) => res.end("ok"));
    nats = await NatsServer.start();
    registry = await startRegistry(["--nats", nats.url, "--http", "127.0.0.1:0"]);
    dir = t.dir;
    agent = await startAgent(t.dir, `host: { id: sec-ssrf }\n${COMMON}`, ["--nats", nats.url, "--api", "127.0.0.1:0"], cleanEnv({ HOME: t.dir }));
  });

  after(async () => {
    await killAll(agent?.proc, open?.proc, registry?.proc);
    await nats?.close();
    await new Promise((r) => internal?.server.close(r));
    await new Promise((r) => own?.server.close(r));
    await cleanup?.();
  });

  it("security - attack 2: checks aimed elsewhere than the instance's own address and port are refused with ROSTER_CHECK_TARGET_REFUSED and never probe", async () => {
    const base = { address: "127.0.0.1", port: own.port };
    const attacks: Array<[string, Record<string, unknown>]> = [
      ["url elsewhere", { ...base, checks: [{ type: "http", url: `http://127.0.0.1:${internal.port}/secret`, interval: "100ms" }] }],
      ["url with userinfo", { ...base, checks: [{ type: "http", url: `http://u:p@127.0.0.1:${own.port}/`, interval: "100ms" }] }],
      ["Host header", { ...base, checks: [{ type: "http", headers: { Host: "metadata.google.internal" }, interval: "100ms" }] }],
      ["metadata header", { ...base, checks: [{ type: "http", headers: { "Metadata-Flavor": "Google" }, interval: "100ms" }] }],
      ["POST", { ...base, checks: [{ type: "http", method: "POST", interval: "100ms" }] }],
      ["tcp port scan", { ...base, checks: [{ type: "tcp", port: internal.port, interval: "100ms" }] }],
      ["tcp other port on loopback", { ...base, checks: [{ type: "tcp", host: "localhost", port: internal.port, interval: "100ms" }] }],
      ["metadata address", { address: "169.254.169.254", port: 80, checks: [{ type: "http", path: "/latest/meta-data/", interval: "100ms" }] }],
      ["link-local v6", { address: "fe80::1", port: 80, checks: [{ type: "tcp", interval: "100ms" }] }],
      ["metadata name", { address: "metadata.google.internal", port: 80, checks: [{ type: "http", interval: "100ms" }] }],
    ];
    for (const [what, body] of attacks) {
      const r = await raw("PUT", `${agent.api}/v1/agent/instances`, { body: { name: "probe", id: "probe-1", ...body } });
      assert.equal(r.status, 403, `${what}: ${r.text}`);
      assert.equal(r.json.code, "ROSTER_CHECK_TARGET_REFUSED", what);
      assert.match(String(r.json.message), /api\.checkTargets/, `${what}: the message names the setting`);
    }
    await sleep(500);
    assert.equal(internalSeen.length, 0, "the internal server was probed");
    assert.deepEqual(await catalogInstances(registry.url, "probe"), [], "a refused registration reached the catalog");
  });

  it("security - legit: API-registered http and tcp checks of the instance's own address and port pass", async () => {
    const path = await raw("PUT", `${agent.api}/v1/agent/instances`, { body: { name: "web", id: "web-1", address: "127.0.0.1", port: own.port, checks: [{ type: "http", path: "/health", interval: "200ms" }, { type: "tcp", interval: "200ms" }] } });
    assert.equal(path.status, 200, path.text);
    // A full URL is fine when it names the instance's own address and port (what `roster register --check-http` sends).
    const url = await raw("PUT", `${agent.api}/v1/agent/instances`, { body: { name: "web", id: "web-2", address: "127.0.0.1", port: own.port, checks: [{ type: "http", url: `http://127.0.0.1:${own.port}/ready`, method: "HEAD", interval: "200ms" }, { type: "tcp", host: "127.0.0.1", port: own.port, interval: "200ms" }] } });
    assert.equal(url.status, 200, url.text);
    for (const id of ["web-1", "web-2"]) {
      const inst = await waitForInstance(registry.url, "web", (i) => i.id === id && i.status === "passing", `${id} passing in the catalog`);
      assert.ok(inst.checks?.some((c) => c.output === "HTTP 200"), JSON.stringify(inst.checks));
    }
    assert.equal(internalSeen.length, 0);
  });

  it("security - legit: with api.checkTargets any in the agent's config, the operator may aim API checks anywhere", async () => {
    open = await startAgent(dir, `host: { id: sec-open }\n${COMMON}api: { checkTargets: any }\n`, ["--nats", nats.url, "--api", "127.0.0.1:0"], cleanEnv({ HOME: dir }), "open.yaml");
    const r = await raw("PUT", `${open.api}/v1/agent/instances`, { body: { name: "elsewhere", address: "127.0.0.1", port: own.port, checks: [{ type: "http", url: `http://127.0.0.1:${internal.port}/status`, headers: { "x-probe": "1" }, interval: "200ms" }] } });
    assert.equal(r.status, 200, r.text);
    await waitForInstance(registry.url, "elsewhere", (i) => i.status === "passing", "the allowed check passing");
    assert.ok(internalSeen.length > 0 && internalSeen.every((h) => h["x-probe"] === "1"));
  });
});
