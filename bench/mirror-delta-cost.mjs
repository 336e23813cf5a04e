#!/usr/bin/env node
// What one catalog delta costs the gateway clients of one process: client CPU µs per client per
// delta, and how long from the first to the last client of the process emitting `change`
// (the "spread within a process" leg of bench/propagation.mjs), in isolation.
//
// Real nats-server (roster-testkit), a stand-in registry in this process (answers paged
// snapshots of its state, publishes presence, publishes one real delta per tick, encoded as the
// registry does: registry kv-catalog `deltaBytes`), and a forked process of `--clients` real
// gateway clients (bench/lib/mirror-delta-clients.mjs, each with its own NATS connection)
// following one service of `--instances` instances. Each delta flips one instance's status
// passing ↔ critical. `--runtime`: each client has also picked once, so it holds a balancer
// for the service (a gateway that has sent requests). `--old=<index.js of another
// gateway-client build>`: that build's clients too, in alternated rounds (before/after in one
// run). `--floor`: also a process of bare NATS subscribers (a connection and a subscription per
// client, reading only the revision): what the connections alone cost. `--profile=<dir>`: a V8 CPU profile of each client process (node --cpu-prof).
//
//   node bench/mirror-delta-cost.mjs [--clients=50] [--instances=2000] [--deltas=150] [--rate=20] [--rounds=3] [--runtime] [--old=<path>] [--floor] [--profile=<dir>]
//
// Needs `npm run build` first.
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { NatsServer } from "roster-testkit";
import {
  CatalogInstance,
  PRESENCE_SUBJECT,
  PresenceMessage,
  REGISTRY_QUEUE,
  SNAPSHOT_WILDCARD,
  Snapshot,
  SnapshotRequest,
  catalogSubject,
  decode,
  encode,
} from "roster-schemas";
import { deltaBytes } from "../registry/dist/src/adapters/store/kv-catalog.js";
import { forkHelper } from "./lib/fork-helper.mjs";
import { progress } from "./lib/log.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const CLIENTS = numberOption("clients", 50);
const INSTANCES = numberOption("instances", 2000);
const DELTAS = numberOption("deltas", 150);
const RATE = numberOption("rate", 20);
const ROUNDS = numberOption("rounds", 3);
const RUNTIME = process.argv.includes("--runtime");
const OLD = stringOption("old", "");
const PROFILE = stringOption("profile", "");
const FLOOR = process.argv.includes("--floor");
/** Deltas at the start of each run left out of the figures (JIT warm-up). */
const WARMUP = 10;
const SERVICE = "svc-000";
const PER_PAGE = 400;

const clientsScript = fileURLToPath(new URL("./lib/mirror-delta-clients.mjs", import.meta.url));
const hiresNow = () => performance.timeOrigin + performance.now();

await runBench("mirror-delta-cost", 1800, async () => {
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());

  // The stand-in registry's state: the service's instances and revision.
  const now = Date.now();
  const state = new Map();
  for (let i = 0; i < INSTANCES; i++) {
    const id = `${SERVICE}-${String(i).padStart(6, "0")}`;
    state.set(id, {
      id, service: SERVICE, host: `host-${String(i).padStart(6, "0")}`, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8080,
      zone: `zone-${i % 3}`, tags: ["http", "v1"], meta: { version: "1.4.2", team: "core" }, weight: 100, status: "passing",
      checks: [{ id: "http-0", type: "http", status: "passing", output: "HTTP 200", since: now }], epoch: 1, registeredAt: now, updatedAt: now,
    });
  }
  let revision = INSTANCES;
  const pagesAt = new Map(); // revision → encoded pages
  function pages() {
    let p = pagesAt.get(revision);
    if (p) return p;
    const all = [...state.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const n = Math.max(1, Math.ceil(all.length / PER_PAGE));
    p = Array.from({ length: n }, (_, k) => encode(Snapshot, { v: 1, kind: "snapshot", service: SERVICE, revision, known: true, page: k, pages: n, instances: all.slice(k * PER_PAGE, (k + 1) * PER_PAGE) }));
    pagesAt.clear();
    pagesAt.set(revision, p);
    return p;
  }
  nc.subscribe(SNAPSHOT_WILDCARD, {
    queue: REGISTRY_QUEUE,
    callback: (_e, msg) => {
      const r = msg.data.byteLength > 0 ? decode(SnapshotRequest, msg.data) : { ok: true, value: { page: 0 } };
      const p = pages();
      msg.respond(p[Math.min(r.ok ? r.value.page : 0, p.length - 1)]);
    },
  });
  const beat = () => nc.publish(PRESENCE_SUBJECT, encode(PresenceMessage, { v: 1, kind: "presence", registryId: "bench", epoch: 1, sentAt: Date.now(), revision, intervalMs: 1000 }));
  beat();
  const presenceTimer = setInterval(beat, 1000);
  defer(() => clearInterval(presenceTimer));
  await nc.flush();

  const ids = [...state.keys()];
  let flipAt = 0;
  /** One real delta: the next instance flips passing ↔ critical. Returns its revision. */
  function publishFlip() {
    const id = ids[flipAt++ % ids.length];
    const prev = state.get(id);
    const t = Date.now();
    const status = prev.status === "passing" ? "critical" : "passing";
    const inst = { ...prev, status, updatedAt: t, checks: [{ ...prev.checks[0], status, output: status === "passing" ? "HTTP 200" : "HTTP 503", since: t }] };
    state.set(id, inst);
    const prevRevision = revision;
    revision++;
    const delta = { v: 1, kind: "delta", op: "put", service: SERVICE, instanceId: id, revision, prevRevision, instance: inst };
    nc.publish(catalogSubject(SERVICE), deltaBytes(delta, encode(CatalogInstance, inst)));
    return revision;
  }

  const impls = [{ name: "this tree", impl: "roster-gateway-client" }];
  if (OLD) impls.push({ name: `old (${OLD})`, impl: OLD });
  if (FLOOR) impls.push({ name: "floor: a bare NATS subscriber per client", impl: "floor" });

  /** One run: a fresh client process of `impl`, DELTAS deltas at RATE/s; its figures. */
  async function run(im, round) {
    const h = forkHelper(clientsScript, [`--impl=${im.impl}`, `--nats=${nats.url}`, `--clients=${CLIENTS}`, `--service=${SERVICE}`, `--runtime=${RUNTIME ? 1 : 0}`], `clients(${im.name})`, { env: { ...process.env, FLOOR_INSTANCES: String(INSTANCES) } });
    defer(async () => {
      if (h.child.exitCode === null && h.child.signalCode === null) h.child.kill("SIGKILL");
    });
    await h.next("hello", 10_000);
    h.send({ cmd: "create" });
    const ready = await h.next("ready", 120_000);
    if (ready.instances !== INSTANCES) throw new Error(`${im.name}: mirror holds ${ready.instances} instances, expected ${INSTANCES}`);
    await sleep(500);
    // Idle CPU (presence, timers) over 1 s, subtracted from the window's.
    h.send({ cmd: "start" });
    await sleep(1000);
    h.send({ cmd: "stop" });
    const idle = await h.next("report", 10_000);
    h.send({ cmd: "start", profile: PROFILE ? `${PROFILE}/mirror-delta-${impls.indexOf(im)}-${round}.cpuprofile` : undefined });
    await sleep(50);
    const sent = new Map();
    const interval = 1000 / RATE;
    const t0 = performance.now();
    for (let k = 0; k < DELTAS; k++) {
      const wait = t0 + k * interval - performance.now();
      if (wait > 0) await sleep(wait);
      const at = hiresNow();
      sent.set(publishFlip(), at);
    }
    // Until every client has the last delta (a client process that cannot keep up catches up here).
    h.send({ cmd: "await", revision });
    await h.next("caught-up", 40_000);
    h.send({ cmd: "stop" });
    const rep = await h.next("report", 10_000);
    await h.stop({ cmd: "close" });
    const idlePerMs = idle.cpuUs / idle.elapsedMs;
    const measured = [...sent.keys()].slice(WARMUP);
    const spread = [];
    const toLast = [];
    const toFirst = [];
    let missing = 0;
    for (const rev of measured) {
      const ts = rep.times[rev];
      if (!ts || ts.length < CLIENTS) {
        missing++;
        continue;
      }
      const first = Math.min(...ts);
      const last = Math.max(...ts);
      spread.push(last - first);
      toLast.push(last - sent.get(rev));
      toFirst.push(first - sent.get(rev));
    }
    const cpuUs = rep.cpuUs - idlePerMs * rep.elapsedMs;
    const sysUs = rep.sysUs - (idle.sysUs / idle.elapsedMs) * rep.elapsedMs;
    const r = {
      cpuPerClientDeltaUs: cpuUs / (CLIENTS * DELTAS),
      sysPerClientDeltaUs: sysUs / (CLIENTS * DELTAS),
      spreadP50: percentile(spread, 50), spreadP99: percentile(spread, 99),
      lastP50: percentile(toLast, 50), lastP99: percentile(toLast, 99),
      firstP50: percentile(toFirst, 50),
      missing, stats: rep.stats,
    };
    progress(`round ${round} ${im.name}: ${fmt(r.cpuPerClientDeltaUs)} µs CPU/client/delta (system ${fmt(r.sysPerClientDeltaUs)}); first→last p50 ${fmt(r.spreadP50, 2)} p99 ${fmt(r.spreadP99, 2)} ms; publish→last p50 ${fmt(r.lastP50, 2)} p99 ${fmt(r.lastP99, 2)} ms; missing ${missing}; gaps ${rep.stats.gaps}, dropped ${rep.stats.dropped}`);
    return r;
  }

  const results = new Map(impls.map((im) => [im, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? impls : [...impls].reverse();
    for (const im of order) results.get(im).push(await run(im, round));
  }

  const med = (rs, k) => percentile(rs.map((r) => r[k]), 50);
  printReport({
    title: `Catalog delta cost in the gateway clients: ${CLIENTS} clients in one process, ${INSTANCES} instances${RUNTIME ? ", each client holding a balancer for the service" : ""}`,
    command: commandLine("bench/mirror-delta-cost.mjs"),
    params: { clients: CLIENTS, instances: INSTANCES, deltas: DELTAS, rate: RATE, rounds: ROUNDS, runtime: RUNTIME },
    tables: [
      {
        caption: `Medians over ${ROUNDS} alternated rounds (first ${WARMUP} deltas of each run left out)`,
        headers: ["build", "CPU µs per client per delta (of which system)", "first → last client `change` p50 / p99 (ms)", "publish → last client p50 / p99 (ms)", "publish → first p50 (ms)"],
        rows: impls.map((im) => {
          const rs = results.get(im);
          return [im.name, `${fmt(med(rs, "cpuPerClientDeltaUs"))} (${fmt(med(rs, "sysPerClientDeltaUs"))})`, `${fmt(med(rs, "spreadP50"), 2)} / ${fmt(med(rs, "spreadP99"), 2)}`, `${fmt(med(rs, "lastP50"), 2)} / ${fmt(med(rs, "lastP99"), 2)}`, fmt(med(rs, "firstP50"), 2)];
        }),
      },
    ],
    notes: ["CPU is the client process's user+system time over the deltas minus its idle rate (presence, timers) measured just before."],
  });
});
