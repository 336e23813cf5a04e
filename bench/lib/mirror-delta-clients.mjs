#!/usr/bin/env node
// One process of real gateway clients for bench/mirror-delta-cost.mjs (forked, IPC): `clients`
// gateways built from `impl` (a gateway-client build's index.js: this tree's, or another's for
// before/after), each with its own NATS connection, following `service`.
//
// Parent → child:
//   { cmd: "create" }  create the gateways (with `runtime`, each also picks once, so it holds a
//                      balancer for the service, as a gateway that has sent requests does) → { type: "ready" }
//   { cmd: "start", profile? }  record `change` arrival times and this process's CPU from now on
//                      (`profile`: a file name; a V8 CPU profile of the window is written there)
//   { cmd: "await", revision }  → { type: "caught-up" } once every client is at `revision` (or 30 s passed)
//   { cmd: "stop" }    → { type: "report", cpuUs, sysUs, elapsedMs, times: { [revision]: number[] }, stats }
//   { cmd: "close" }   close every gateway and exit
import { argvOption as opt } from "./wire-fleet.mjs";

const impl = opt("impl", "roster-gateway-client");
const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const clientCount = Number(opt("clients", 50));
const service = opt("service", "svc-000");
const runtime = opt("runtime", "0") === "1";

// impl "floor": no gateway, a bare NATS connection and subscription per client that only reads the
// delta's revision: what the connection itself costs (nats.js and the socket), the floor.
const { createGateway } = impl === "floor" ? { createGateway: createFloorClient } : await import(impl);

async function createFloorClient({ nats, services }) {
  const { connect } = await import("@nats-io/transport-node");
  const { EventEmitter } = await import("node:events");
  const nc = await connect({ servers: nats });
  const c = new EventEmitter();
  let revision = 0;
  const td = new TextDecoder();
  nc.subscribe(`roster.v1.catalog.${services[0]}`, {
    callback: (_e, msg) => {
      const m = /"revision":(\d+)/.exec(td.decode(msg.data.subarray(0, 200)));
      if (m) c.emit("change", services[0], (revision = Number(m[1])));
    },
  });
  await nc.flush();
  return Object.assign(c, {
    revision: () => revision,
    instances: () => ({ length: Number(process.env.FLOOR_INSTANCES) }),
    mirror: { stats: { deltasApplied: 0, gaps: 0, resyncs: 0, snapshots: 0, dropped: {} } },
    pick: async () => ({ done() {} }),
    close: () => nc.close(),
  });
}
const send = (m) => process.send?.(m);
const hiresNow = () => performance.timeOrigin + performance.now();

const gateways = [];
let recording = false;
/** revision → arrival times of `change`, every client. */
const times = new Map();
let cpu0 = null;
let t0 = 0;
let session = null;
let profileFile = "";

async function createAll() {
  let next = 0;
  const worker = async () => {
    while (next < clientCount) {
      next++;
      const gw = await createGateway({ nats: natsUrl, services: [service] });
      if (runtime) (await gw.pick(service)).done("success");
      gw.on("change", (_s, revision) => {
        if (!recording) return;
        const t = hiresNow();
        let list = times.get(revision);
        if (!list) times.set(revision, (list = []));
        list.push(t);
      });
      gateways.push(gw);
    }
  };
  await Promise.all(Array.from({ length: Math.min(10, clientCount) }, worker));
}

process.on("message", async (m) => {
  try {
    if (m.cmd === "create") {
      await createAll();
      send({ type: "ready", instances: gateways[0]?.instances(service).length ?? 0 });
    } else if (m.cmd === "start") {
      if (m.profile) {
        const { Session } = await import("node:inspector/promises");
        session = new Session();
        session.connect();
        await session.post("Profiler.enable");
        await session.post("Profiler.setSamplingInterval", { interval: 100 });
        await session.post("Profiler.start");
        profileFile = m.profile;
      }
      times.clear();
      recording = true;
      cpu0 = process.cpuUsage();
      t0 = performance.now();
    } else if (m.cmd === "await") {
      const until = performance.now() + 30_000;
      while (gateways.some((gw) => gw.revision(service) < m.revision) && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
      send({ type: "caught-up" });
    } else if (m.cmd === "stop") {
      recording = false;
      const cpu = process.cpuUsage(cpu0);
      if (session) {
        const { profile } = await session.post("Profiler.stop");
        const { writeFile } = await import("node:fs/promises");
        await writeFile(profileFile, JSON.stringify(profile));
        session.disconnect();
        session = null;
      }
      const stats = { deltasApplied: 0, gaps: 0, resyncs: 0, snapshots: 0, dropped: 0 };
      for (const gw of gateways) {
        const st = gw.mirror.stats;
        for (const k of ["deltasApplied", "gaps", "resyncs", "snapshots"]) stats[k] += st[k];
        stats.dropped += Object.values(st.dropped).reduce((a, b) => a + b, 0);
      }
      send({ type: "report", cpuUs: cpu.user + cpu.system, sysUs: cpu.system, elapsedMs: performance.now() - t0, times: Object.fromEntries(times), stats });
    } else if (m.cmd === "close") {
      await Promise.allSettled(gateways.map((gw) => gw.close()));
      process.exit(0);
    }
  } catch (err) {
    send({ type: "error", message: String(err?.stack ?? err) });
  }
});
send({ type: "hello" });
