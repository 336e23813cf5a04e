#!/usr/bin/env node
// One process of REAL gateway clients for bench/gateway-fanout.mjs (forked, IPC): `clients`
// gateways, each `createGateway({ nats, services })` with its OWN NATS connection, each
// mirroring every service of the run. Spread over several such processes so the clients'
// own CPU is not a single event loop.
//
// Options (argv `--name=value`): nats, clients, services (count; svc-000 ...), concurrency
// (createGateway calls in flight at once in this process), index.
// Parent → child:
//   { cmd: "create" }   create the gateways; report { type: "synced", at, rssMiB, ... } when every
//                       gateway has a snapshot of every service ("at": performance.timeOrigin + now)
//   { cmd: "record" }   from now on, record the time of every `change` event, by revision
//   { cmd: "reconnect", count, overMs }  force `count` gateways' NATS connections to reconnect
//   { cmd: "report" }   → { type: "report", times: { [revision]: number[] }, revisions, stats, ... }
//   { cmd: "close" }    close every gateway and exit
// Child → parent also: { type: "ready", rssMiB }, { type: "progress", created, ready }.
import { createGateway } from "roster-gateway-client";
import { argvOption as opt } from "./wire-fleet.mjs";


const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const clientCount = Number(opt("clients", 250));
const serviceCount = Number(opt("services", 50));
const concurrency = Math.max(1, Number(opt("concurrency", 50)));
const index = Number(opt("index", 0));
const services = Array.from({ length: serviceCount }, (_, s) => `svc-${String(s).padStart(3, "0")}`);

const send = (m) => process.send?.(m);
const hiresNow = () => performance.timeOrigin + performance.now();
const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

const gateways = [];
let ready = 0;
let created = 0;
let syncedSent = false;
let recording = false;
/** revision → arrival times (ms, wall clock with a fraction) of `change` events, all clients. */
const times = new Map();
let createErrors = 0;
const reconnects = { done: 0, failed: 0 };
let firstError = null;

function onReady() {
  ready++;
  if (!syncedSent && created === clientCount && ready === clientCount * serviceCount) {
    syncedSent = true;
    const at = hiresNow();
    let snapshotRequests = 0;
    let snapshotFailures = 0;
    for (const gw of gateways) {
      snapshotRequests += gw.mirror.stats.snapshotRequests ?? NaN;
      snapshotFailures += gw.mirror.stats.snapshotFailures;
    }
    send({ type: "synced", at, index, rssMiB: rssMiB(), heapUsedMiB: process.memoryUsage().heapUsed / 2 ** 20, snapshotRequests, snapshotFailures });
  }
}

function watch(gw) {
  const seen = new Set();
  gw.on("change", (service, revision) => {
    if (recording) {
      const t = hiresNow();
      let list = times.get(revision);
      if (!list) times.set(revision, (list = []));
      list.push(t);
    }
    if (!seen.has(service)) {
      seen.add(service);
      onReady();
    }
  });
  created++;
  // Snapshots that arrived before the listener was attached (createGateway waits for them).
  for (const s of services) {
    if (!seen.has(s) && gw.mirror.view(s) !== undefined) {
      seen.add(s);
      onReady();
    }
  }
}

async function createAll() {
  let next = 0;
  const worker = async () => {
    while (next < clientCount) {
      next++;
      try {
        const gw = await createGateway({ nats: natsUrl, services });
        gateways.push(gw);
        watch(gw);
      } catch (err) {
        createErrors++;
        firstError ??= String(err?.message ?? err);
      }
    }
  };
  const progress = setInterval(() => send({ type: "progress", index, created, ready, createErrors }), 1000);
  await Promise.all(Array.from({ length: Math.min(concurrency, clientCount) }, worker));
  clearInterval(progress);
  if (createErrors) send({ type: "error", index, message: `${createErrors} createGateway failures; first: ${firstError}` });
}

let progressTimer = null;
/** Sums of the mirrors' deltasApplied and snapshots when recording started. */
let base = { deltasApplied: 0, snapshots: 0 };
function totals() {
  let deltasApplied = 0;
  let snapshots = 0;
  for (const gw of gateways) {
    deltasApplied += gw.mirror.stats.deltasApplied;
    snapshots += gw.mirror.stats.snapshots;
  }
  return { deltasApplied, snapshots };
}

// FANOUT_PROFILE=<dir>: a V8 CPU profile of the recording window (the flips only) per process,
// written to <dir>/fanout-clients-<index>.cpuprofile (open it in Chrome DevTools).
let session = null;
async function startProfile() {
  if (!process.env.FANOUT_PROFILE) return;
  const { Session } = await import("node:inspector/promises");
  session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
}
async function stopProfile() {
  if (!session) return;
  const { profile } = await session.post("Profiler.stop");
  const { writeFile } = await import("node:fs/promises");
  await writeFile(`${process.env.FANOUT_PROFILE}/fanout-clients-${index}.cpuprofile`, JSON.stringify(profile));
  session.disconnect();
  session = null;
}

function report() {
  const stats = { snapshots: 0, snapshotFailures: 0, snapshotPages: 0, resyncs: 0, gaps: 0, deltasApplied: 0, duplicates: 0, dropped: {} };
  /** service → { revision: clients at it } */
  const revisions = {};
  let stale = 0;
  for (const gw of gateways) {
    const st = gw.mirror.stats;
    for (const k of ["snapshots", "snapshotFailures", "snapshotRequests", "snapshotRestarts", "snapshotPages", "resyncs", "gaps", "deltasApplied", "duplicates"]) stats[k] = (stats[k] ?? 0) + (st[k] ?? 0);
    for (const [k, v] of Object.entries(st.dropped)) stats.dropped[k] = (stats.dropped[k] ?? 0) + v;
    if (gw.isStale) stale++;
    for (const s of services) {
      const r = gw.revision(s);
      const m = (revisions[s] ??= {});
      m[r] = (m[r] ?? 0) + 1;
    }
  }
  send({ type: "report", index, clients: gateways.length, times: Object.fromEntries(times), revisions, stats, stale, reconnects, window: { deltasApplied: stats.deltasApplied - base.deltasApplied, snapshots: stats.snapshots - base.snapshots }, rssMiB: rssMiB() });
}

process.on("message", async (m) => {
  if (m?.cmd === "create") {
    await createAll();
    progressTimer = setInterval(() => send({ type: "progress", index, created, ready, createErrors }), 1000);
  } else if (m?.cmd === "record") {
    clearInterval(progressTimer);
    recording = true;
    base = totals();
    await startProfile();
  } else if (m?.cmd === "report") {
    recording = false;
    await stopProfile();
    report();
  } else if (m?.cmd === "reconnect") {
    // Forced reconnects of `count` gateways' NATS connections, evenly over `overMs`: the deltas
    // published while one is down are lost to it (core NATS), and its mirror must resync.
    const count = Math.min(m.count, gateways.length);
    for (let k = 0; k < count; k++) {
      const gw = gateways[Math.floor((k * gateways.length) / count)];
      const timer = setTimeout(() => {
        gw.nc?.reconnect().then(() => reconnects.done++, (err) => {
          reconnects.failed++;
          firstError ??= String(err?.message ?? err);
        });
      }, (k * m.overMs) / count);
      timer.unref();
    }
  } else if (m?.cmd === "close") {
    clearInterval(progressTimer);
    await Promise.race([Promise.allSettled(gateways.map((g) => g.close())), new Promise((r) => setTimeout(r, 8000))]);
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));

send({ type: "ready", index, rssMiB: rssMiB() });
