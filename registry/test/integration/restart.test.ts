import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ResyncMessage, decode, resyncSubject } from "roster-schemas";
import { NatsServer, freePort, spawnNode, waitFor, type ChildProc } from "roster-testkit";
import { FakeAgent, collectDeltas, getJson, inst, type Inst } from "./helpers.js";

const BIN = fileURLToPath(new URL("../../../bin/roster-registry.js", import.meta.url));

describe("registry process restart (real child process)", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let agent: FakeAgent;
  let child: ChildProc | null = null;
  let dir: string;
  let port: number;
  let stopBeat = () => {};
  const base = () => `http://127.0.0.1:${port}`;

  const spawnRegistry = async () => {
    child = spawnNode(BIN, ["--nats", nats.url, "--http", `127.0.0.1:${port}`, "--config", join(dir, "registry.json")]);
    await child.waitForOutput("registry ready", 15_000);
    return child;
  };

  before(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
    dir = await mkdtemp(join(tmpdir(), "roster-registry-test-"));
    port = await freePort();
    await writeFile(join(dir, "registry.json"), JSON.stringify({ presenceInterval: "200ms", deregisterAfter: "30s", tickInterval: "50ms" }));
    agent = await FakeAgent.connect(nats.url, "host-r", 1, 300);
  });

  after(async () => {
    stopBeat();
    child?.kill("SIGKILL");
    await agent?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("restart - kill -9 then restart: catalog intact, revisions keep increasing, deleted service still known", async () => {
    const first = await spawnRegistry();
    await agent.register([inst("r1", { port: 8001 }), inst("r2", { port: 8002 }), inst("p1", { service: "payments", port: 7001 })]);
    await waitFor(async () => ((await getJson(`${base()}/v1/services/orders/instances`)).body as Inst[] | undefined)?.length === 2, { what: "orders registered" });
    await agent.health("r2", "critical");
    await agent.deregister(["p1"], "payments");
    await waitFor(async () => {
      const r = await getJson(`${base()}/v1/services/payments/instances`);
      const o = (await getJson(`${base()}/v1/services/orders/instances`)).body as Inst[];
      return r.status === 200 && (r.body as Inst[]).length === 0 && o.find((i) => i.id === "r2")?.status === "critical";
    }, { what: "payments emptied and r2 critical" });
    stopBeat = agent.beat();
    const before = await getJson(`${base()}/v1/services/orders/instances`);
    const revBefore = ((await getJson(`${base()}/v1/status`)).body as { revision: number }).revision;

    first.kill("SIGKILL");
    const exit = await first.exited;
    assert.equal(exit.signal, "SIGKILL");

    const resyncs: string[] = [];
    const rs = nc.subscribe(resyncSubject("host-r"), { callback: (_e, m) => { const r = decode(ResyncMessage, m.data); if (r.ok) resyncs.push(r.value.reason); } });
    await nc.flush();
    await spawnRegistry();
    await waitFor(() => resyncs.includes("registry-start"), { what: "registry-start resync to the known host" });
    rs.unsubscribe();
    const after1 = await getJson(`${base()}/v1/services/orders/instances`);
    assert.equal(after1.status, 200);
    assert.deepEqual(after1.body, before.body, "catalog intact after kill -9");
    assert.equal(after1.headers.get("x-roster-index"), before.headers.get("x-roster-index"));
    const payments = await getJson(`${base()}/v1/services/payments/instances`);
    assert.equal(payments.status, 200, "a service whose instances were all deleted is still known");
    assert.deepEqual(payments.body, []);
    const st = (await getJson(`${base()}/v1/status`)).body as { revision: number; hosts: number };
    assert.equal(st.revision, revBefore);
    assert.equal(st.hosts, 1);

    const { deltas, sub } = collectDeltas(nc, "orders");
    await nc.flush();
    await agent.health("r2", "passing");
    await waitFor(() => deltas.length === 1, { what: "a delta after restart" });
    assert.ok(deltas[0]!.revision > revBefore, "revisions keep increasing");
    assert.equal(deltas[0]!.prevRevision, Number(before.headers.get("x-roster-index")), "prevRevision chains across the restart");
    sub.unsubscribe();

    // Steady heartbeats across the restart: nothing is rewritten.
    const rev = ((await getJson(`${base()}/v1/status`)).body as { revision: number }).revision;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(((await getJson(`${base()}/v1/status`)).body as { revision: number }).revision, rev);
  });

  it("restart - SIGTERM exits 0 after a clean shutdown", async () => {
    assert.ok(child?.alive);
    const r = await child!.stop(10_000);
    assert.equal(r.code, 0, child!.output.slice(-2000));
    assert.match(child!.output, /registry stopped/);
  });

  it("restart - NATS unreachable at start: HTTP up, readyz 503, ready once NATS appears", async () => {
    const deadPort = await freePort();
    const p = await freePort();
    const c = spawnNode(BIN, ["--nats", `nats://127.0.0.1:${deadPort}`, "--http", `127.0.0.1:${p}`]);
    try {
      await c.waitForOutput("HTTP listening", 10_000);
      assert.equal((await getJson(`http://127.0.0.1:${p}/healthz`)).status, 200);
      const rz = await getJson(`http://127.0.0.1:${p}/readyz`);
      assert.equal(rz.status, 503);
      const early = await getJson(`http://127.0.0.1:${p}/v1/services/orders/instances`);
      assert.equal(early.status, 503, "not 404 before the catalog is loaded");
      assert.equal((early.body as { code: string }).code, "ROSTER_NOT_READY");
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(c.alive, "never crashes while NATS is unreachable");
    } finally {
      const r = await c.stop(15_000);
      assert.equal(r.code, 0, c.output.slice(-2000));
    }
  });

  it("restart - SIGTERM during a NATS outage still exits 0, bounded", async () => {
    const c = await spawnRegistry();
    await agent.register([inst("r1", { port: 8001 }), inst("r2", { port: 8002 })]);
    await waitFor(async () => ((await getJson(`${base()}/v1/services/orders/instances`)).body as Array<{ checks: unknown[] }>).every((i) => i.checks.length === 0), { what: "register applied" });
    await nats.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await getJson(`${base()}/v1/services/orders/instances`)).status, 200, "serving from memory");
    const t0 = Date.now();
    const r = await c.stop(25_000);
    assert.equal(r.code, 0, c.output.slice(-2000));
    assert.ok(Date.now() - t0 < 20_000);
    await nats.start();
  });
});
