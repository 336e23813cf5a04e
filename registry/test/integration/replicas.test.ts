import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { CATALOG_BUCKET, CatalogInstance, catalogKey, decode, resyncSubject } from "roster-schemas";
import { NatsCluster, freePort, spawnNode, waitFor, type ChildProc } from "roster-testkit";
import { FakeAgent, getJson, inst, type Inst } from "./helpers.js";

const BIN = fileURLToPath(new URL("../../../bin/roster-registry.js", import.meta.url));
const TTL_MS = 2000;

interface Replica {
  name: string;
  child: ChildProc;
  url: string;
}
type Status = { role: string; leaseHolder: string | null; leaseEpoch: number; registryId: string; revision: number; kv: { writes: number; fenced: number } };

describe("registry replicas on a 3-node NATS cluster (real processes)", () => {
  let cluster: NatsCluster;
  let dir: string;
  let nc: NatsConnection;
  let kv: KV;
  let agent: FakeAgent;
  let stopBeat = () => {};
  /** A host that does not answer resyncs: what only the old leader heard of stays its own to (wrongly) write. */
  let quiet: FakeAgent | undefined;
  const replicas: Replica[] = [];

  const spawnReplica = async (name: string): Promise<Replica> => {
    const port = await freePort();
    const child = spawnNode(BIN, ["--nats", cluster.urls.join(","), "--http", `127.0.0.1:${port}`, "--config", join(dir, "registry.json")], {
      env: { ...process.env, ROSTER_LOG_LEVEL: "info" },
    });
    const r = { name, child, url: `http://127.0.0.1:${port}` };
    replicas.push(r);
    await child.waitForOutput("registry ready", 30_000);
    return r;
  };
  const status = async (r: Replica) => (await getJson(`${r.url}/v1/status`)).body as Status;
  const roles = async () => {
    const out: Record<string, string> = {};
    for (const r of replicas.filter((x) => x.child.alive)) out[r.name] = (await status(r).catch(() => ({ role: "?" }) as Status)).role;
    return out;
  };
  const instances = async (r: Replica, service = "orders") => {
    const res = await getJson(`${r.url}/v1/services/${service}/instances`);
    return res.status === 200 ? (res.body as Inst[]) : [];
  };
  const kvRecord = async (key: string) => {
    const e = await kv.get(key);
    if (!e || e.operation !== "PUT") return undefined;
    const r = decode(CatalogInstance, e.value);
    return r.ok ? { ...r.value, revision: e.revision } : undefined;
  };

  before(async () => {
    cluster = await NatsCluster.start({ size: 3 });
    dir = await mkdtemp(join(tmpdir(), "roster-replicas-"));
    await writeFile(
      join(dir, "registry.json"),
      JSON.stringify({ kvReplicas: 3, presenceInterval: "200ms", tickInterval: "50ms", lease: { enabled: true, ttl: `${TTL_MS}ms`, margin: "600ms" } }),
    );
    nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    agent = await FakeAgent.connect(cluster.urls.join(","), "host-r", 1, 500);
    // Answers resyncs as the real agent does: a new writer asks every host for its registration.
    agent.nc.subscribe(resyncSubject(agent.hostId), { callback: () => void agent.register().catch(() => undefined) });
    await agent.nc.flush();
  });

  after(async () => {
    stopBeat();
    for (const r of replicas) {
      r.child.kill("SIGCONT");
      await r.child.stop(5000);
    }
    await agent?.close().catch(() => undefined);
    await quiet?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await cluster?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("replicas - exactly one leader; the standby answers HTTP reads from its own mirror of KV", async () => {
    const a = await spawnReplica("a");
    const b = await spawnReplica("b");
    await waitFor(async () => {
      const r = await roles();
      return r.a === "leader" && r.b === "standby";
    }, { what: "a leader, b standby", timeoutMs: 15_000 });
    const sa = await status(a);
    const sb = await status(b);
    assert.equal(sb.leaseHolder, sa.registryId, "the standby names the leader");
    assert.equal(sb.leaseEpoch, sa.leaseEpoch);
    assert.equal((await getJson(`${b.url}/readyz`)).status, 200, "a standby is ready to serve reads");
    kv = await new Kvm(nc).open(CATALOG_BUCKET);

    await agent.register([inst("o-1", { port: 9001 }), inst("o-2", { port: 9002 })]);
    stopBeat = agent.beat();
    quiet = await FakeAgent.connect(cluster.urls.join(","), "host-q", 1, 5000);
    await quiet.register([inst("q-1", { service: "quiet", port: 9101 })]);
    await waitFor(async () => (await kvRecord(catalogKey("quiet", "q-1")))?.status === "passing", { what: "q-1 in KV", timeoutMs: 10_000 });
    await waitFor(async () => (await instances(b)).length === 2, { what: "the standby's HTTP view has both instances", timeoutMs: 10_000 });
    await agent.health("o-2", "critical");
    await waitFor(async () => (await instances(b)).find((i) => i.id === "o-2")?.status === "critical", { what: "the flip on the standby", timeoutMs: 10_000 });
    // The standby serves what KV holds, with the same index as the leader.
    const ra = await getJson(`${a.url}/v1/services/orders/instances`);
    const rb = await getJson(`${b.url}/v1/services/orders/instances`);
    assert.deepEqual(rb.body, ra.body);
    assert.equal(rb.headers.get("x-roster-index"), ra.headers.get("x-roster-index"));
    assert.equal((await status(b)).kv.writes, 0, "the standby wrote nothing");
  });

  it("replicas - kill -9 of the leader: the standby takes over within a few seconds; changes made meanwhile reach KV; revisions continue", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const revBefore = (await kvRecord(catalogKey("orders", "o-2")))!.revision;
    a.child.kill("SIGKILL");
    const killedAt = Date.now();
    await agent.register([...agent.instances, inst("o-3", { port: 9003 })]);
    await waitFor(async () => (await status(b)).role === "leader", { what: "b takes over", timeoutMs: 15_000, intervalMs: 50 });
    const takeoverMs = Date.now() - killedAt;
    assert.ok(takeoverMs <= TTL_MS + 3000, `takeover in ${takeoverMs} ms`);
    await agent.register([...agent.instances, inst("o-4", { port: 9004 })]);
    await waitFor(async () => (await kvRecord(catalogKey("orders", "o-3"))) && (await kvRecord(catalogKey("orders", "o-4"))), {
      what: "registrations made during and after the takeover in KV",
      timeoutMs: 15_000,
    });
    const o4 = (await kvRecord(catalogKey("orders", "o-4")))!;
    assert.ok(o4.revision > revBefore, "revisions continue upwards");
    await waitFor(async () => (await instances(b)).length === 4, { what: "the new leader's HTTP view", timeoutMs: 10_000 });
    const sb = await status(b);
    assert.ok(sb.leaseEpoch >= 2, `a new term: epoch ${sb.leaseEpoch}`);
    assert.equal(sb.leaseHolder, sb.registryId);
  });

  it("replicas - a leader paused past its ttl (SIGSTOP) loses the lease and, resumed, writes nothing", async (t) => {
    const b = replicas[1]!;
    const c = await spawnReplica("c");
    await waitFor(async () => (await status(c)).role === "standby", { what: "c standby", timeoutMs: 10_000 });
    const writesBefore = (await status(b)).kv.writes;
    b.child.kill("SIGSTOP");
    try {
      // While b is paused, the agents change o-1 and q-1: b receives it in its socket, c is not
      // leader yet. Nobody but b ever hears of q-1's flip (its host answers no resync): if b
      // wrote after SIGCONT, its CAS on q-1 would succeed.
      await agent.health("o-1", "warning");
      await quiet!.health("q-1", "critical", "quiet");
      await waitFor(async () => (await status(c)).role === "leader", { what: "c takes over from the paused b", timeoutMs: 15_000, intervalMs: 50 });
      await waitFor(async () => (await kvRecord(catalogKey("orders", "o-1")))?.status === "warning", { what: "c wrote the flip", timeoutMs: 10_000 });
      await agent.health("o-1", "passing");
      await waitFor(async () => (await kvRecord(catalogKey("orders", "o-1")))?.status === "passing", { what: "c wrote the second flip", timeoutMs: 10_000 });
    } finally {
      b.child.kill("SIGCONT");
    }
    await waitFor(async () => (await status(b)).role === "standby", { what: "b steps down", timeoutMs: 10_000, intervalMs: 50 });
    // b had the first flip (and its resync traffic) queued: give it time to (wrongly) write it.
    await new Promise((r) => setTimeout(r, 1000));
    const sb = await status(b);
    t.diagnostic(`old leader after SIGCONT: writes ${sb.kv.writes - writesBefore}, fenced ${sb.kv.fenced}`);
    assert.equal(sb.kv.writes, writesBefore, "the old leader wrote nothing after SIGCONT");
    assert.equal((await kvRecord(catalogKey("orders", "o-1")))?.status, "passing", "KV holds the new leader's last write");
    assert.equal((await kvRecord(catalogKey("quiet", "q-1")))?.status, "passing", "the old leader's late decision never reached KV");
    assert.match(b.child.output, /lease (suspended|lost)/);
    const sc = await status(c);
    assert.equal(sb.leaseHolder, sc.registryId);
    await waitFor(async () => (await instances(b)).find((i) => i.id === "o-1")?.status === "passing", { what: "b mirrors again", timeoutMs: 10_000 });
  });

  it("replicas - a graceful stop hands the lease over at once", async () => {
    const b = replicas[1]!;
    const c = replicas[2]!;
    const stoppedAt = Date.now();
    await c.child.stop(10_000);
    await waitFor(async () => (await status(b)).role === "leader", { what: "b takes over after c's clean stop", timeoutMs: 10_000, intervalMs: 50 });
    assert.ok(Date.now() - stoppedAt < TTL_MS + 1000, `handover in ${Date.now() - stoppedAt} ms`);
  });
});
