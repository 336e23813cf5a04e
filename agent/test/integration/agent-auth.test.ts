// The agent process with credentials: it logs in to a nats-server that has the generated users
// (nkey seed file from ROSTER_NATS_NKEY_SEED_FILE), publishes for its own host, and its local API
// asks for ROSTER_AGENT_TOKEN on writes (401 without or with a wrong one; reads stay open).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { natsConnectOptions } from "roster-schemas";
import { ChildProc, freePort, spawnNode, startSecuredNats, waitFor, type SecuredNats } from "roster-testkit";
import { AGENT_BIN, tempConfig } from "./helpers.js";

const TOKEN = "agent-token-0123456789";

async function call(method: string, url: string, token?: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown>; challenge: string | null }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, challenge: res.headers.get("www-authenticate") };
}

describe("agent with NATS credentials and an API token (real process)", () => {
  let nats: SecuredNats;
  let watcher: NatsConnection;
  let agent: ChildProc;
  let cleanup: () => Promise<void>;
  let base = "";
  const subjects: string[] = [];

  before(async () => {
    nats = await startSecuredNats({ hosts: ["host-a"], gateways: 0 });
    // The registry's user may subscribe to every agent subject.
    watcher = await connect(natsConnectOptions(nats.url, { nkeySeedFile: nats.seedFile("registry") }));
    watcher.subscribe("roster.v1.agent.>", { callback: (_e, m) => void subjects.push(m.subject) });
    await watcher.flush();
    const apiPort = await freePort();
    const cfg = await tempConfig("agent.yaml", "host: { id: host-a }\nheartbeat: { interval: 200ms }\ndrain: { period: 0 }\n");
    cleanup = cfg.cleanup;
    // The URL carries a fake password: it must never show up in the agent's log.
    const url = nats.url.replace("nats://", "nats://nobody:hunter2@");
    agent = spawnNode(AGENT_BIN, ["--config", cfg.file, "--nats", url, "--api", `127.0.0.1:${apiPort}`], {
      env: { ...process.env, ROSTER_NATS_NKEY_SEED_FILE: nats.seedFile("agent-host-a"), ROSTER_AGENT_TOKEN: TOKEN },
    });
    base = `http://127.0.0.1:${apiPort}`;
    await agent.waitForOutput("agent started");
  });

  after(async () => {
    await agent?.stop();
    await watcher?.close();
    await nats?.close();
    await cleanup?.();
  });

  it("agent-auth - logs in with its nkey and publishes for its host", async () => {
    await waitFor(() => subjects.includes("roster.v1.agent.host-a.register") && subjects.includes("roster.v1.agent.host-a.heartbeat"), { timeoutMs: 5000, what: "register and heartbeat" });
    const health = await call("GET", `${base}/healthz`);
    assert.equal(health.json.natsConnected, true);
    assert.doesNotMatch(agent.output, /hunter2/);
    assert.doesNotMatch(agent.output, /SU[A-Z2-7]{56}/, "the seed leaked into the log");
  });

  it("agent-auth - an unreadable seed file or a short token exits 1 naming it", async () => {
    const cfg = await tempConfig("agent.yaml", "host: { id: host-a }\n");
    try {
      const p = spawnNode(AGENT_BIN, ["--config", cfg.file, "--nats", nats.url, "--api", "127.0.0.1:0"], { env: { ...process.env, ROSTER_NATS_NKEY_SEED_FILE: "/nonexistent/a.nk" } });
      assert.equal((await p.exited).code, 1);
      assert.match(p.output, /nats\.nkeySeedFile: cannot read \/nonexistent\/a\.nk: ENOENT/);
      const q = spawnNode(AGENT_BIN, ["--config", cfg.file, "--nats", nats.url, "--api", "127.0.0.1:0"], { env: { ...process.env, ROSTER_AGENT_TOKEN: "short" } });
      assert.equal((await q.exited).code, 1);
      assert.match(q.output, /ROSTER_AGENT_TOKEN: a token must be at least 16 characters/);
    } finally {
      await cfg.cleanup();
    }
  });

  it("agent-auth - API writes need the token; reads stay open", async () => {
    const svc = { name: "orders", port: 18777, address: "127.0.0.1" };
    const none = await call("PUT", `${base}/v1/agent/instances`, undefined, svc);
    assert.equal(none.status, 401);
    assert.equal(none.json.code, "ROSTER_UNAUTHORIZED");
    assert.match(none.challenge ?? "", /^Bearer/);
    assert.equal((await call("PUT", `${base}/v1/agent/instances`, "wrong-token-0123456789", svc)).status, 401);
    assert.equal((await call("DELETE", `${base}/v1/agent/instances/x`)).status, 401);
    const ok = await call("PUT", `${base}/v1/agent/instances`, TOKEN, svc);
    assert.equal(ok.status, 200);
    const list = await call("GET", `${base}/v1/agent/instances`);
    assert.equal(list.status, 200);
    assert.equal((list.json.instances as unknown[]).length, 1);
  });
});
