// Attack 4 of "Secure by default", replayed against real processes (nats-server, roster-registry,
// roster-agent, the roster CLI): a register in host-a's name with epoch 2^53−1 and a one-hour
// heartbeat interval used to replace host-a's instances, and after the real agent restarted
// everything it sent was dropped as stale-epoch for hours.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NatsServer, spawnNode, waitFor, type ChildProc } from "roster-testkit";
import { CLI_BIN, forgeRegister, instance, instancesOf, startAgentProc, startRegistryProc, statusOf, type RegistryProc } from "./registry-support.js";

const READ = "read-token-0123456789abcdef";
const WRITE = "write-token-0123456789abcdef";
const AS_READ = { authorization: `Bearer ${READ}` };

describe("security: epoch bounds and host reset (attack 4, real processes)", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: RegistryProc;
  let agent: ChildProc | undefined;
  let forger: NatsConnection;
  const real = () => instancesOf(registry.base, "orders", AS_READ).then((l) => l.find((i) => i.id === "orders-1"));
  const startAgent = async () => {
    agent = await startAgentProc(dir, nats.url, "host-a", [{ name: "orders", id: "orders-1", port: 8080, address: "127.0.0.2" }]);
    await waitFor(async () => (await real())?.address === "127.0.0.2", { timeoutMs: 15_000, what: "the real agent's orders-1" });
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roster-sec-epoch-"));
    nats = await NatsServer.start();
    registry = await startRegistryProc(dir, nats.url, {}, { ROSTER_HTTP_READ_TOKEN: READ, ROSTER_HTTP_WRITE_TOKEN: WRITE });
    // Anyone in the NATS account (no per-host users here) can publish in host-a's name.
    forger = await connect({ servers: nats.url });
    await startAgent();
  });
  after(async () => {
    agent?.kill("SIGKILL");
    await forger?.close();
    await registry?.stop();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("epoch - a forged far-future epoch with a 1 h interval is refused (future-epoch); the real agent's restart is accepted", async () => {
    await forgeRegister(forger, "host-a", { epoch: Number.MAX_SAFE_INTEGER, heartbeatIntervalMs: 3_600_000, instances: [instance("orders-1", "10.6.6.6")] });
    await waitFor(async () => ((await statusOf(registry.base, AS_READ)).drops.byReason["future-epoch"] ?? 0) >= 1, { timeoutMs: 5000, what: "a future-epoch drop" });
    assert.equal((await real())?.address, "127.0.0.2", "the forged register replaced the real instance");
    // The real agent restarts (a new boot epoch): it is accepted at once, not locked out for hours.
    await agent!.stop();
    await waitFor(async () => (await real()) === undefined, { timeoutMs: 10_000, what: "orders-1 gone after the agent's shutdown" });
    await startAgent();
  });

  it("epoch - a forged current epoch announcing a 1 h heartbeat interval is refused (bad-interval)", async () => {
    const before = (await statusOf(registry.base, AS_READ)).drops.byReason["bad-interval"] ?? 0;
    await forgeRegister(forger, "host-a", { epoch: Date.now(), heartbeatIntervalMs: 3_600_000, instances: [instance("orders-1", "10.6.6.6")] });
    await waitFor(async () => ((await statusOf(registry.base, AS_READ)).drops.byReason["bad-interval"] ?? 0) > before, { timeoutMs: 5000, what: "a bad-interval drop" });
    await sleep(300);
    assert.equal((await real())?.address, "127.0.0.2");
  });

  it("reset - POST /v1/hosts/:host/reset: anonymous 401, read token 403, unknown host 404", async () => {
    const url = `${registry.base}/v1/hosts/host-a/reset`;
    const anon = await fetch(url, { method: "POST" });
    assert.equal(anon.status, 401);
    assert.equal(((await anon.json()) as { code: string }).code, "ROSTER_UNAUTHORIZED");
    const read = await fetch(url, { method: "POST", headers: AS_READ });
    assert.equal(read.status, 403);
    assert.equal(((await read.json()) as { code: string }).code, "ROSTER_FORBIDDEN");
    const unknown = await fetch(`${registry.base}/v1/hosts/nobody/reset`, { method: "POST", headers: { authorization: `Bearer ${WRITE}` } });
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, "ROSTER_HOST_NOT_FOUND");
    assert.equal((await real())?.address, "127.0.0.2", "a refused reset changed nothing");
  });

  it("reset - after a forged epoch within the skew locks the real agent out, `roster host reset` (write token) lets it back in", async () => {
    // Within the skew bound the forgery is accepted: the real agent's messages are now stale.
    await forgeRegister(forger, "host-a", { epoch: Date.now() + 60_000, seq: 1e9, heartbeatIntervalMs: 1000, instances: [instance("orders-1", "10.6.6.6")] });
    await waitFor(async () => (await real())?.address === "10.6.6.6", { timeoutMs: 5000, what: "the forged register applied" });
    await waitFor(async () => ((await statusOf(registry.base, AS_READ)).drops.byReason["stale-epoch"] ?? 0) >= 1, { timeoutMs: 5000, what: "the real agent's heartbeats refused as stale-epoch" });
    const cli = (token: string) => spawnNode(CLI_BIN, ["host", "reset", "host-a", "--registry", registry.base], { env: { ...process.env, ROSTER_TOKEN: token } });
    const denied = cli(READ);
    assert.equal((await denied.exited).code, 1);
    assert.match(denied.output, /ROSTER_FORBIDDEN/);
    const ok = cli(WRITE);
    assert.equal((await ok.exited).code, 0, ok.output);
    assert.match(ok.output, /host host-a reset/);
    // The registry asked the real agent for its registration: the forged record is replaced.
    await waitFor(async () => (await real())?.address === "127.0.0.2", { timeoutMs: 10_000, what: "the real agent back after the reset" });
  });
});
