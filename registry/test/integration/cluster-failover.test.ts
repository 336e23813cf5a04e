import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { CATALOG_BUCKET, CatalogDelta, CatalogInstance, catalogKey, decode } from "roster-schemas";
import { NatsCluster, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry, type Inst } from "./helpers.js";

const STREAM = `KV_${CATALOG_BUCKET}`;
const LEASE_STREAM = "KV_roster_leader";
const SERVICES = ["alpha", "beta", "gamma", "delta", "epsilon"];
const NEW_HOSTS = 5;
const PER_NEW_HOST = 10; // 50 new registrations while the leader is down

/** Which node a connection named `name` is attached to (from each node's /connz). */
async function nodeOfConnection(cluster: NatsCluster, name: string): Promise<string | undefined> {
  for (const n of cluster.nodes.filter((x) => x.running)) {
    const r = await fetch(`${n.monitorUrl}/connz`).then((x) => x.json() as Promise<{ connections?: { name?: string }[] }>).catch(() => undefined);
    if (r?.connections?.some((c) => c.name?.startsWith(name))) return n.name;
  }
  return undefined;
}

describe("registry replicas on a 3-node NATS cluster", () => {
  let cluster: NatsCluster;
  /** The writer (lease holder), and a standby replica that must NOT take over across the election. */
  let reg: Registry;
  let standby: Registry;
  let observer: NatsConnection;
  const agents: FakeAgent[] = [];
  const stopBeats: (() => void)[] = [];

  before(async () => {
    cluster = await NatsCluster.start({ size: 3 });
    // Default lease (ttl 3 s, margin 1 s): shorter than the 4-7 s stall of a killed stream leader.
    reg = await startRegistry(cluster.urls.join(","), { kvReplicas: 3, heartbeatTimeoutMultiplier: 10, lease: { enabled: true } });
    await waitFor(() => reg.status().role === "leader", { what: "the first replica holds the lease", timeoutMs: 15_000 });
    standby = await startRegistry(cluster.urls.join(","), { kvReplicas: 3, heartbeatTimeoutMultiplier: 10, lease: { enabled: true } });
    assert.equal(standby.status().role, "standby");
  });

  after(async () => {
    for (const s of stopBeats) s();
    for (const a of agents) await a.close().catch(() => undefined);
    await observer?.close().catch(() => undefined);
    await standby?.close();
    await reg?.close();
    await cluster?.close();
  });

  it("cluster - kill -9 of the catalog (and lease) stream leader during a burst of registrations loses none; deltas chain without gap; no failover of the registry; the node rejoins", async (t) => {
    // The hardest case is when the registry's own connection is on the leader too: it loses
    // its connection and the KV leader at once. The client picks its server at random among
    // the URLs, so move the leader there (bounded stepdowns; the test holds either way).
    const registryNode = await waitFor(() => nodeOfConnection(cluster, "roster-registry-"), { what: "the registry's node" });
    const admin = await connect({ servers: cluster.urls });
    try {
      // The lease bucket too: its writes then stall as long as the catalog's, longer than the ttl.
      for (const stream of [STREAM, LEASE_STREAM]) {
        for (let i = 0; i < 6; i++) {
          const l = await cluster.waitLeaderOf(stream);
          if (l.name === registryNode) break;
          await admin.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5000 }).catch(() => undefined);
          await waitFor(async () => (await cluster.leaderOf(stream))?.name !== l.name, { what: "a new leader after stepdown", timeoutMs: 10_000 }).catch(() => undefined);
        }
      }
    } finally {
      await admin.close();
    }
    const leader = await cluster.waitLeaderOf(STREAM);
    const leaseLeaderKilled = (await cluster.waitLeaderOf(LEASE_STREAM)).name === leader.name;
    const leaseBefore = { epoch: reg.status().leaseEpoch, acquired: (standby.status().lease as { counters: { acquired: number } }).counters.acquired };
    const survivors = cluster.nodes.filter((n) => n !== leader);
    const survivorUrls = survivors.map((n) => n.url);
    // The observer and the agents sit on surviving nodes: what they miss is the registry's doing.
    observer = await connect({ servers: survivorUrls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const deltas: CatalogDelta[] = [];
    observer.subscribe("roster.v1.catalog.*", {
      callback: (_e, m) => {
        const r = decode(CatalogDelta, m.data);
        if (r.ok) deltas.push(r.value);
      },
    });
    await observer.flush();

    // Baseline: one host with an instance of every service, registered before the loss.
    const healed = { resyncs: 0 };
    const base = await FakeAgent.connect(survivorUrls.join(","), "host-base", 1, 1000);
    agents.push(base);
    base.answerResyncs(healed);
    await base.register(SERVICES.map((s, i) => inst(`base-${s}`, { service: s, port: 9000 + i })));
    stopBeats.push(base.beat());
    await waitFor(() => reg.memory.instanceCount === SERVICES.length, { what: "baseline registered", timeoutMs: 15_000 });
    const newAgents: FakeAgent[] = [];
    for (let h = 0; h < NEW_HOSTS; h++) {
      const a = await FakeAgent.connect(survivorUrls.join(","), `host-${h}`, 1, 1000);
      a.answerResyncs(healed);
      await a.nc.flush();
      newAgents.push(a);
    }
    agents.push(...newAgents);
    const kvBefore = reg.status().kv as { retries: number; failures: number; writes: number; replayed: number };

    await leader.stop("SIGKILL");
    const killedAt = Date.now();

    // While the leader is down (a new one needs seconds): 50 new instances, one register per
    // new instance (a register carries the host's full set), and health flips.
    // Published back to back (flushed once at the end), so that when the registry's own node
    // died, the burst is over before it has reconnected: those registers reach no one and
    // must be healed by the agents' heartbeats and resyncs.
    const flushes: Promise<void>[] = [];
    const expected = new Map<string, string>(); // key -> status
    for (const s of SERVICES) expected.set(catalogKey(s, `base-${s}`), "passing");
    for (let k = 0; k < PER_NEW_HOST; k++) {
      for (let h = 0; h < NEW_HOSTS; h++) {
        const a = newAgents[h]!;
        const service = SERVICES[(h + k) % SERVICES.length]!;
        const id = `h${h}-${k}`;
        flushes.push(a.register([...a.instances, inst(id, { service, port: 10_000 + h * 100 + k })]));
        expected.set(catalogKey(service, id), "passing");
      }
    }
    await Promise.all(flushes);
    for (const a of newAgents) stopBeats.push(a.beat());
    for (const [i, s] of SERVICES.entries()) {
      if (i % 2 === 0) {
        await base.health(`base-${s}`, "critical", s);
        expected.set(catalogKey(s, `base-${s}`), "critical");
      }
    }
    for (let h = 0; h < NEW_HOSTS; h++) {
      const first = newAgents[h]!.instances[0]!;
      await newAgents[h]!.health(first.id, "warning", first.service);
      expected.set(catalogKey(first.service, first.id), "warning");
    }
    const sentWithinMs = Date.now() - killedAt;
    assert.equal(expected.size, SERVICES.length + NEW_HOSTS * PER_NEW_HOST);

    // 1. The registry's HTTP API ends up with every registration, with its latest status.
    const httpStatus = async () => {
      const got = new Map<string, string>();
      for (const s of SERVICES) {
        const r = await getJson(`${reg.url}/v1/services/${s}/instances`);
        if (r.status !== 200) return got;
        for (const i of r.body as Inst[]) got.set(catalogKey(s, i.id), i.status);
      }
      return got;
    };
    try {
      await waitFor(async () => {
        const got = await httpStatus();
        return [...expected].every(([k, st]) => got.get(k) === st) && got.size === expected.size;
      }, { what: "every registration and flip in the HTTP API", timeoutMs: 30_000, intervalMs: 200 });
    } catch (err) {
      const got = await httpStatus();
      const missing = [...expected].filter(([k, st]) => got.get(k) !== st).map(([k, st]) => `${k}: want ${st} got ${got.get(k)}`);
      throw new Error(`${(err as Error).message}\nregistry on ${registryNode}, killed ${leader.name}; status ${JSON.stringify(reg.status())}\n${missing.join("\n")}`, { cause: err });
    }
    // 2. KV, read directly from a surviving node, holds the same records. (Memory, so the HTTP API,
    // shows a write from the moment it is sent: the writes of the burst are settled only once KV has them.)
    const kvOn = async (servers: string[]) => {
      const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
      try {
        const kv = await new Kvm(nc).open(CATALOG_BUCKET);
        assert.equal((await kv.status()).replicas, 3, "the registry created the bucket with kvReplicas 3");
        const got = new Map<string, { status: string; revision: number }>();
        for (const key of expected.keys()) {
          const e = await kv.get(key);
          if (e && e.operation === "PUT") {
            const r = decode(CatalogInstance, e.value);
            if (r.ok) got.set(key, { status: r.value.status, revision: e.revision });
          }
        }
        return got;
      } finally {
        await nc.close();
      }
    };
    const kvSurvivor = await waitFor(async () => {
      const got = await kvOn([survivors[0]!.url]);
      return [...expected].every(([k, st]) => got.get(k)?.status === st) ? got : undefined;
    }, { what: "every record in KV on a surviving node", timeoutMs: 20_000, intervalMs: 250 });
    await waitFor(() => (reg.status().kv as { inFlight: number }).inFlight === 0, { what: "every write acked", timeoutMs: 15_000 });

    const kvAfter = reg.status().kv as { retries: number; failures: number; writes: number; replayed: number };
    // The lease survived the election: same holder, same term, the standby never acquired it.
    assert.equal(reg.status().role, "leader", "the writer kept the lease");
    assert.equal(reg.status().leaseEpoch, leaseBefore.epoch, "no new term");
    assert.equal((standby.status().lease as { counters: { acquired: number } }).counters.acquired, leaseBefore.acquired, "the standby never took over");
    assert.equal((standby.status().kv as { writes: number }).writes, 0, "the standby wrote nothing");
    assert.equal(kvAfter.failures, kvBefore.failures, "no KV write given up");
    assert.ok(kvAfter.retries + kvAfter.replayed > kvBefore.replayed + kvBefore.retries, "the burst met the leaderless window (writes were retried or replayed across it)");

    // 3. Deltas: per service, revisions strictly increase and each prevRevision is the last one seen.
    await waitFor(() => {
      const last = new Map<string, number>();
      for (const d of deltas) last.set(catalogKey(d.service, d.instanceId), d.revision);
      return [...kvSurvivor].every(([k, v]) => last.get(k) === v.revision);
    }, { what: "a delta for the last write of every key", timeoutMs: 10_000 });
    const lastRev = new Map<string, number>();
    for (const d of deltas) {
      const prev = lastRev.get(d.service) ?? 0;
      assert.ok(d.revision > prev, `${d.service}: revision ${d.revision} after ${prev}`);
      assert.equal(d.prevRevision, prev, `${d.service}: delta ${d.revision} chains to ${d.prevRevision}, last seen ${prev} (a gap)`);
      lastRev.set(d.service, d.revision);
    }
    for (const s of SERVICES) assert.equal(lastRev.get(s), reg.memory.service(s).revision, `${s}: last delta is the service's revision`);
    // The standby's mirror followed through the election: it serves what KV holds.
    await waitFor(() => SERVICES.every((s) => standby.memory.service(s).revision === reg.memory.service(s).revision), { what: "the standby's mirror", timeoutMs: 15_000 });

    // 4. The killed node comes back and converges: it serves the same records.
    await leader.start();
    await cluster.waitFormed(20_000);
    await waitFor(async () => {
      const got = await kvOn([leader.url]);
      return [...kvSurvivor].every(([k, v]) => got.get(k)?.revision === v.revision && got.get(k)?.status === v.status);
    }, { what: `KV on the restarted ${leader.name} to converge`, timeoutMs: 20_000, intervalMs: 250 });

    const suspended = (reg.status().lease as { counters: { suspended: number } }).counters.suspended;
    const stall = `${leader.name} killed (registry on ${registryNode}, lease stream leader killed too: ${leaseLeaderKilled}, writer suspended ${suspended}x, standby CAS/probes unanswered ${(standby.status().lease as { counters: { errors: number } }).counters.errors}x, standby mirror watch restarted ${(standby.status().mirror as { restarts: number }).restarts}x); burst sent in ${sentWithinMs} ms; kv retries ${kvAfter.retries - kvBefore.retries}; resyncs answered ${healed.resyncs}`;
    t.diagnostic(stall);
  });
});
