#!/usr/bin/env node
// A NATS node loss under the registry: kill -9 of the catalog stream's leader in a 3-node
// JetStream cluster while agents register a burst of instances and one instance flips health
// at a steady rate, over several repetitions (each kills the current leader, then restarts it).
//
//   node bench/registry-cluster-failover.mjs [--reps=5] [--burst-hosts=10] [--burst-instances=5]
//        [--services=5] [--flip-ms=50] [--replicas=1]
// (or BENCH_REPS=..., BENCH_BURST_HOSTS=... in the environment; BENCH_QUICK=1, set by
// `run-all --quick`, makes the default 2 repetitions)
//
// Real processes: 3 nats-server (test kit NatsCluster), the registry (its bin, --config with
// kvReplicas 3, given every node's URL). Agents are simulated on the real wire from a
// connection to a surviving node and behave as the real agent does: full-set registers, health
// transitions, a heartbeat every second with the digest of their instances, a register again
// when the registry asks for a resync, and a clean shutdown (deregister) at the end of the
// repetition. An observer on a surviving node records every catalog delta with its arrival time.
//   resyncs answered = registers sent again on the registry's request: agent messages published
//                   while the registry's own connection was on the killed node (before it had
//                   reconnected to a survivor) reached no subscriber, and were healed this way
//
// --replicas=N (N >= 2): N registry replicas with the writer lease on (lease.enabled, default
// ttl 3 s); the first holds the lease. Reported per rep: whether the killed node also led the
// lease bucket's stream, and whether the lease moved (a spurious failover: it must not).
//
// Per repetition:
//   write stall   = kill → first delta of a burst registration (the registry's first successful
//                   KV write of a change made after the kill: a delta is published right after
//                   its KV write)
//   KV available  = kill → first answer of the stream leader to an independent probe (a
//                   compare-and-set on a key that does not exist, with a wrong expected
//                   revision, every 50 ms from a surviving node: refused by a live leader with
//                   "wrong last sequence", so it writes nothing): the cluster's own stall, which
//                   the write stall exceeds by up to one step of the registry's retry backoff
//   longest gap   = longest time between consecutive deltas from 1 s before the kill until
//                   every change is applied (the steady flips keep the registry writing)
//   registrations = sent in the burst vs present in the registry's HTTP API vs in KV (read
//                   from a surviving node) vs in KV on the restarted node once it rejoined
//   all in API / all in KV = kill → every burst registration in the HTTP API / stored in KV (the
//                   registry announces a write before JetStream stores it: the API can be
//                   complete seconds before the store, while the stream elects a leader)
//   chain gaps    = deltas whose prevRevision is not the previous delta's revision of that service
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { JetStreamApiCodes, JetStreamApiError, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import {
  CATALOG_BUCKET,
  CATALOG_WILDCARD,
  CatalogDelta,
  CatalogInstance,
  DeregisterMessage,
  HealthMessage,
  HeartbeatMessage,
  RegisterMessage,
  agentSubject,
  catalogKey,
  decode,
  encode,
  instanceDigest,
  resyncSubject,
} from "roster-schemas";
import { NatsCluster, waitFor } from "roster-testkit";
import { closeHttp, getJson, instancesOf } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const reps = Math.max(1, numberOption("reps", process.env.BENCH_QUICK ? 2 : 5));
const hostCount = Math.max(1, numberOption("burst-hosts", 10));
const perHost = Math.max(1, numberOption("burst-instances", 5));
const serviceCount = Math.max(1, numberOption("services", 5));
const flipMs = Math.max(5, numberOption("flip-ms", 50));
const replicaCount = Math.max(1, numberOption("replicas", 1));
const LEASE_STREAM = "KV_roster_leader";
const STREAM = `KV_${CATALOG_BUCKET}`;
const SERVICES = Array.from({ length: serviceCount }, (_, i) => `svc-${i}`);
const STEADY = "steady";
const HB_MS = 1000; // agents heartbeat every second, as a real agent can be configured to

function instance(id, service, port) {
  return { id, service, address: "127.0.0.1", port, tags: [], meta: {}, weight: 100, status: "passing", checks: [] };
}

/**
 * A simulated agent on the real wire contract that behaves as the real one does: registers its
 * full set, heartbeats with the digest of its instances, and registers again when the registry
 * asks for a resync (the anti-entropy that heals agent messages lost on the wire).
 */
class WireAgent {
  constructor(nc, hostId, counters) {
    this.nc = nc;
    this.hostId = hostId;
    this.seq = 0;
    this.instances = [];
    this.sub = nc.subscribe(resyncSubject(hostId), {
      callback: () => {
        counters.resyncs++;
        this.register(this.instances);
      },
    });
  }
  env() {
    return { v: 1, hostId: this.hostId, epoch: 1, seq: ++this.seq, sentAt: Date.now() };
  }
  register(instances) {
    this.instances = instances;
    this.nc.publish(agentSubject(this.hostId, "register"), encode(RegisterMessage, { ...this.env(), kind: "register", heartbeatIntervalMs: HB_MS, instances }));
  }
  heartbeat() {
    const digest = instanceDigest(this.instances);
    this.nc.publish(
      agentSubject(this.hostId, "heartbeat"),
      encode(HeartbeatMessage, { ...this.env(), kind: "heartbeat", heartbeatIntervalMs: HB_MS, instanceCount: this.instances.length, digest }),
    );
  }
  health(service, instanceId, status) {
    this.instances = this.instances.map((i) => (i.service === service && i.id === instanceId ? { ...i, status } : i));
    this.nc.publish(
      agentSubject(this.hostId, "health"),
      encode(HealthMessage, { ...this.env(), kind: "health", service, instanceId, check: { id: "c", type: "http", status, since: Date.now() }, instanceStatus: status }),
    );
  }
  /** A clean shutdown: the registry forgets the host at once. */
  shutdown() {
    this.sub.unsubscribe();
    if (this.instances.length === 0) return;
    this.nc.publish(
      agentSubject(this.hostId, "deregister"),
      encode(DeregisterMessage, { ...this.env(), kind: "deregister", reason: "shutdown", instances: this.instances.map((i) => ({ service: i.service, instanceId: i.id })) }),
    );
  }
}

/** Which node the registry's NATS connection is on (each node's /connz). */
async function registryNode(cluster) {
  for (const n of cluster.nodes.filter((x) => x.running)) {
    const r = await fetch(`${n.monitorUrl}/connz`).then((x) => x.json()).catch(() => undefined);
    if (r?.connections?.some((c) => c.name?.startsWith("roster-registry-"))) return n.name;
  }
  return "?";
}

async function kvRecords(url, keys) {
  const nc = await connect({ servers: [url], name: "bench-kv-reader" });
  try {
    const kv = await new Kvm(nc).open(CATALOG_BUCKET);
    const got = new Map();
    for (const key of keys) {
      const e = await kv.get(key);
      if (e && e.operation === "PUT" && decode(CatalogInstance, e.value).ok) got.set(key, e.revision);
    }
    return got;
  } finally {
    await nc.close();
  }
}

/**
 * Probes the stream leader every 50 ms with a CAS that can never succeed; records when it
 * answered (a conflict) and the first error seen while it did not.
 */
async function startProbe(url) {
  const nc = await connect({ servers: [url], name: "bench-probe" });
  const kv = await new Kvm(jetstream(nc, { timeout: 500 })).open(CATALOG_BUCKET);
  const probe = { answers: [], errors: new Map(), stopped: false };
  const data = new TextEncoder().encode("probe");
  probe.done = (async () => {
    while (!probe.stopped) {
      const t = performance.now();
      try {
        await kv.update("_probe.never", data, 2 ** 40);
      } catch (err) {
        if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) probe.answers.push(t);
        else {
          const msg = String(err?.message ?? err).slice(0, 60);
          probe.errors.set(msg, (probe.errors.get(msg) ?? 0) + 1);
        }
      }
      await sleep(Math.max(0, 50 - (performance.now() - t)));
    }
  })();
  probe.stop = async () => {
    probe.stopped = true;
    await probe.done;
    await nc.close();
  };
  return probe;
}

async function catalogKeys(httpUrl) {
  const got = new Set();
  for (const s of SERVICES) {
    const r = await getJson(`${httpUrl}/v1/services/${s}/instances`, { timeoutMs: 5000 });
    if (r.status === 200) for (const i of instancesOf(r.body)) got.add(catalogKey(s, i.id));
  }
  return got;
}

async function leaseOf(registry) {
  const s = (await getJson(`${registry.httpUrl}/v1/status`)).body;
  return `${s.role}#${s.leaseEpoch}`;
}

async function repetition(rep, cluster, registry) {
  const leader = await cluster.waitLeaderOf(STREAM, 30_000);
  const leaseLeaderKilled = replicaCount > 1 ? (await cluster.waitLeaderOf(LEASE_STREAM, 30_000)).name === leader.name : false;
  const leaseBefore = await leaseOf(registry);
  const home = cluster.nodes.find((n) => n !== leader && n.running);
  const regNode = await registryNode(cluster);
  progress(`rep ${rep}: ${STREAM} led by ${leader.name}; registry on ${regNode}; agents and observer on ${home.name}`);

  const obs = await connect({ servers: [home.url], name: "bench-observer" });
  const pub = await connect({ servers: [home.url], name: "bench-agents" });
  const deltas = [];
  obs.subscribe(CATALOG_WILDCARD, {
    callback: (_e, m) => {
      const r = decode(CatalogDelta, m.data);
      if (r.ok) deltas.push({ at: performance.now(), d: r.value });
    },
  });
  await obs.flush();

  // The steady flipper: one instance of its own host flipping passing/warning every flipMs.
  const counters = { resyncs: 0 };
  const steady = new WireAgent(pub, `steady-r${rep}`, counters);
  const live = [steady];
  const beats = setInterval(() => {
    for (const a of live) a.heartbeat();
  }, HB_MS);
  steady.register([instance(`steady-r${rep}`, STEADY, 7000)]);
  await pub.flush();
  let flips = 0;
  let lastFlip = "passing";
  const flipper = setInterval(() => {
    lastFlip = lastFlip === "passing" ? "warning" : "passing";
    steady.health(STEADY, `steady-r${rep}`, lastFlip);
    flips++;
  }, flipMs);
  const probe = await startProbe(home.url);
  await sleep(1000);

  const kvBefore = (await getJson(`${registry.httpUrl}/v1/status`)).body.kv;
  const revBeforeKill = deltas.reduce((m, x) => Math.max(m, x.d.revision), 0);
  const killAt = performance.now();
  await leader.stop("SIGKILL");
  const killedMs = performance.now() - killAt;

  // The burst: hostCount hosts x perHost new instances, one register per new instance.
  const agents = Array.from({ length: hostCount }, (_, h) => new WireAgent(pub, `r${rep}-h${h}`, counters));
  live.push(...agents);
  const sent = [];
  for (let k = 0; k < perHost; k++) {
    for (const [h, a] of agents.entries()) {
      const service = SERVICES[(h + k) % SERVICES.length];
      const id = `r${rep}-h${h}-${k}`;
      a.register([...a.instances, instance(id, service, 10_000 + h * 100 + k)]);
      sent.push(catalogKey(service, id));
    }
  }
  await pub.flush();
  const burstMs = performance.now() - killAt;

  let inCatalog = new Set();
  let converged = true;
  try {
    await waitFor(
      async () => {
        inCatalog = await catalogKeys(registry.httpUrl);
        return sent.every((k) => inCatalog.has(k));
      },
      { timeoutMs: 45_000, intervalMs: 200, what: "every registration of the burst in the HTTP API" },
    );
  } catch (err) {
    converged = false;
    progress(`rep ${rep}: ${err.message}`);
  }
  const convergedMs = performance.now() - killAt;
  await sleep(1000);
  clearInterval(flipper);
  // The last flip is applied (its delta seen) before the window closes.
  await waitFor(
    () => deltas.some((x) => x.d.service === STEADY && x.d.instanceId === `steady-r${rep}` && x.d.instance?.status === lastFlip && x.at > killAt),
    { timeoutMs: 15_000, intervalMs: 50, what: "the last flip's delta" },
  ).catch((err) => progress(`rep ${rep}: ${err.message}`));
  // The registry announces a write (delta, HTTP API) before JetStream has stored it, so the API can
  // be complete while the stream is still electing a leader: the round also waits for the store,
  // or it ended before the stream was back and read "0 in KV" (seen 2026-12-02).
  let storedMs = NaN;
  await waitFor(
    async () => {
      const got = await kvRecords(home.url, sent).catch(() => new Map());
      return sent.every((k) => got.has(k));
    },
    { timeoutMs: 45_000, intervalMs: 500, what: "every registration of the burst in KV on a surviving node" },
  ).then(() => (storedMs = performance.now() - killAt), (err) => progress(`rep ${rep}: ${err.message}`));
  const endAt = performance.now();
  await probe.stop();
  const firstAnswer = probe.answers.find((t) => t > killAt);
  const kvAvailableMs = firstAnswer === undefined ? NaN : firstAnswer - killAt;
  for (const [msg, n] of probe.errors) errorsSeen.set(msg, (errorsSeen.get(msg) ?? 0) + n);

  // Stall and gaps.
  // Every burst registration is sent after the kill: its KV write cannot predate it.
  const burstKeys = new Set(sent);
  const after = deltas.filter((x) => x.at > killAt && x.d.revision > revBeforeKill);
  const firstBurst = deltas.find((x) => x.at > killAt && burstKeys.has(catalogKey(x.d.service, x.d.instanceId)));
  const stallMs = firstBurst ? firstBurst.at - killAt : NaN;
  const window = deltas.filter((x) => x.at >= killAt - 1000 && x.at <= endAt).map((x) => x.at);
  let maxGap = 0;
  for (let i = 1; i < window.length; i++) maxGap = Math.max(maxGap, window[i] - window[i - 1]);
  const lastPre = window.filter((t) => t <= killAt).at(-1);
  if (lastPre !== undefined && after.length) maxGap = Math.max(maxGap, after[0].at - lastPre);

  // Delta chain per service over everything this observer saw.
  let chainGaps = 0;
  let nonIncreasing = 0;
  const last = new Map();
  const gapDetails = [];
  const lastAt = new Map();
  for (const { d, at } of deltas) {
    const prev = last.get(d.service);
    if (prev !== undefined) {
      if (d.prevRevision !== prev) {
        chainGaps++;
        // The missing delta(s): revisions after the last seen up to this one's prevRevision.
        gapDetails.push(`${d.service}: delta ${d.revision} (at kill${at >= killAt ? "+" : ""}${fmt(at - killAt, 0)} ms) chains to ${d.prevRevision}, last seen ${prev} (at kill${fmt(lastAt.get(d.service) - killAt, 0)} ms)`);
      }
      if (d.revision <= prev) nonIncreasing++;
    }
    last.set(d.service, d.revision);
    lastAt.set(d.service, at);
  }

  const inKv = await kvRecords(home.url, sent).catch(() => new Map());
  const leaseAfter = await leaseOf(registry);
  const kvAfter = (await getJson(`${registry.httpUrl}/v1/status`)).body.kv;

  // Restart the killed node; time until the cluster has formed and the node serves every record.
  const restartAt = performance.now();
  await leader.start();
  await cluster.waitFormed(30_000);
  let onRestarted = new Map();
  await waitFor(
    async () => {
      onRestarted = await kvRecords(leader.url, sent);
      return sent.every((k) => onRestarted.get(k) === inKv.get(k));
    },
    { timeoutMs: 30_000, intervalMs: 250, what: `KV on the restarted ${leader.name}` },
  ).catch((err) => progress(`rep ${rep}: ${err.message}`));
  const rejoinMs = performance.now() - restartAt;

  // The rep's hosts shut down cleanly, so the next rep starts from a quiet registry.
  clearInterval(beats);
  for (const a of live) a.shutdown();
  await pub.flush();
  await waitFor(
    async () => {
      const keys = await catalogKeys(registry.httpUrl);
      return !sent.some((k) => keys.has(k));
    },
    { timeoutMs: 30_000, intervalMs: 200, what: `rep ${rep}'s hosts removed after their shutdown` },
  ).catch((err) => progress(`rep ${rep}: ${err.message}`));
  await obs.close();
  await pub.close();
  const r = {
    rep,
    killed: leader.name,
    registryOnKilled: regNode === leader.name,
    killedMs,
    burstMs,
    stallMs,
    kvAvailableMs,
    storedMs,
    maxGap,
    convergedMs: converged ? convergedMs : NaN,
    sent: sent.length,
    inCatalog: sent.filter((k) => inCatalog.has(k)).length,
    inKv: sent.filter((k) => inKv.has(k)).length,
    onRestarted: sent.filter((k) => onRestarted.get(k) === inKv.get(k) && inKv.has(k)).length,
    flips,
    deltas: deltas.length,
    chainGaps,
    nonIncreasing,
    retries: kvAfter.retries - kvBefore.retries,
    failures: kvAfter.failures - kvBefore.failures,
    rejoinMs,
    resyncs: counters.resyncs,
    leaseLeaderKilled,
    leaseMoved: leaseBefore !== leaseAfter,
  };
  progress(`rep ${rep}: ${JSON.stringify(r)}`);
  for (const g of gapDetails) progress(`rep ${rep}: chain gap: ${g}`);
  r.gapDetails = gapDetails;
  return r;
}

const errorsSeen = new Map();
const maxSeconds = 120 + reps * 120;

await runBench("registry-cluster-failover", maxSeconds, async () => {
  progress(`registry-cluster-failover: ${reps} reps, burst ${hostCount} hosts x ${perHost} instances over ${serviceCount} services, a flip every ${flipMs} ms`);
  const cluster = await NatsCluster.start({ size: 3 });
  defer(() => cluster.close());
  progress(`cluster: ${cluster.nodes.map((n) => `${n.name} ${n.url} (pid ${n.pid})`).join(", ")}`);

  const dir = await mkdtemp(join(tmpdir(), "roster-bench-cluster-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const configFile = join(dir, "registry.json");
  await writeFile(configFile, JSON.stringify(replicaCount > 1 ? { kvReplicas: 3, lease: { enabled: true } } : { kvReplicas: 3 }));
  const registry = await startRegistry({ natsUrl: cluster.urls.join(","), args: ["--config", configFile] });
  defer(() => registry.stop());
  if (replicaCount > 1) {
    await waitFor(async () => (await leaseOf(registry)).startsWith("leader"), { timeoutMs: 15_000, what: "the first replica holds the lease" });
    for (let i = 1; i < replicaCount; i++) {
      const standby = await startRegistry({ natsUrl: cluster.urls.join(","), args: ["--config", configFile] });
      defer(() => standby.stop());
    }
  }
  defer(() => closeHttp());
  progress(`registry pid ${registry.pid} on ${registry.httpUrl}`);

  const results = [];
  for (let rep = 1; rep <= reps; rep++) results.push(await repetition(rep, cluster, registry));
  const regOut = registry.child.output;

  const stall = summarize(results.map((r) => r.stallMs).filter(Number.isFinite));
  const avail = summarize(results.map((r) => r.kvAvailableMs).filter(Number.isFinite));
  const gap = summarize(results.map((r) => r.maxGap));
  const total = (f) => results.reduce((s, r) => s + r[f], 0);
  printReport({
    title: "NATS node loss: kill -9 of the catalog stream leader (3-node cluster)",
    command: commandLine("bench/registry-cluster-failover.mjs"),
    params: { reps, burst: `${hostCount} hosts x ${perHost} instances`, services: serviceCount, flipEveryMs: flipMs, kvReplicas: 3, kvWriteRetryFor: "30s (default)", replicas: replicaCount > 1 ? `${replicaCount} (lease on, ttl 3s)` : "1 (no lease)" },
    tables: [
      {
        caption: "Per repetition (ms from the kill)",
        headers: ["rep", "killed", "registry on it", "burst sent", "KV available", "write stall", "longest delta gap", "all in API", "all in KV", "sent", "in API", "in KV", "on rejoined node", "chain gaps", "resyncs answered", "KV retries", "KV failures", "rejoin", ...(replicaCount > 1 ? ["lease leader killed too", "lease moved"] : [])],
        rows: results.map((r) => [
          r.rep, r.killed, r.registryOnKilled ? "yes" : "no", `${fmt(r.burstMs, 0)} ms`, `${fmt(r.kvAvailableMs, 0)} ms`, `${fmt(r.stallMs, 0)} ms`, `${fmt(r.maxGap, 0)} ms`,
          `${fmt(r.convergedMs, 0)} ms`, `${fmt(r.storedMs, 0)} ms`, r.sent, r.inCatalog, r.inKv, r.onRestarted, r.chainGaps + r.nonIncreasing, r.resyncs, r.retries, r.failures, `${fmt(r.rejoinMs, 0)} ms`,
          ...(replicaCount > 1 ? [r.leaseLeaderKilled ? "yes" : "no", r.leaseMoved ? "YES" : "no"] : []),
        ]),
      },
      {
        caption: "Summary",
        headers: ["", "min", "p50", "max"],
        rows: [
          ["KV available again (kill → the leader answers the probe)", `${fmt(avail.min, 0)} ms`, `${fmt(avail.p50, 0)} ms`, `${fmt(avail.max, 0)} ms`],
          ["write stall (kill → first burst registration written to KV)", `${fmt(stall.min, 0)} ms`, `${fmt(stall.p50, 0)} ms`, `${fmt(stall.max, 0)} ms`],
          ["longest gap between consecutive deltas", `${fmt(gap.min, 0)} ms`, `${fmt(gap.p50, 0)} ms`, `${fmt(gap.max, 0)} ms`],
        ],
      },
    ],
    notes: [
      `registrations: ${total("sent")} sent, ${total("inCatalog")} in the HTTP API, ${total("inKv")} in KV on a surviving node, ${total("onRestarted")} on the restarted node at the same revision`,
      `delta chain: ${total("deltas")} deltas observed, ${total("chainGaps")} prevRevision gaps, ${total("nonIncreasing")} non-increasing revisions; KV write retries ${total("retries")}, writes given up ${total("failures")}`,
      `probe errors while the leader was gone: ${[...errorsSeen].map(([m, n]) => `"${m}" x${n}`).join(", ") || "none"}`,
      `registry log: ${(regOut.match(/catalog write failed, retrying/g) ?? []).length} retry warnings, ${(regOut.match(/catalog write given up/g) ?? []).length} "given up" errors, ${(regOut.match(/delta publish failed/g) ?? []).length} "delta publish failed"`,
    ],
  });
});
