#!/usr/bin/env node
// Simulated agents: a separate process (forked by the benchmark, IPC channel) that plays
// `hosts` agents of `instances` instances each over ONE NATS connection, speaking the real
// wire contract: a RegisterMessage per host, then a HeartbeatMessage per host every
// interval (staggered evenly over the interval), with the same `instanceDigest` a real
// agent computes, so a registry that agrees with the digest writes nothing. A
// ResyncMessage on `resyncSubject(host)` is answered by republishing that host's register.
//
// Options (argv `--name=value`): nats (url), hosts, instances, services, host-offset,
// interval-ms, prefix. Parent → child messages: { cmd: "register", count? } (registers the
// first `count` hosts not yet registered, all by default, and heartbeats every registered
// host), { cmd: "interval", ms } (a new heartbeat interval for every host), { cmd: "stop" }.
// Child → parent: { type: "ready" }, { type: "registered", ms }, { type: "stats", ... }.
import { connect } from "@nats-io/transport-node";
import { instanceDigest } from "roster-schemas";
import { argvOption as opt, beatEvenly, wireFleet } from "./wire-fleet.mjs";

const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const hosts = Number(opt("hosts", 1000));
const perHost = Number(opt("instances", 10));
const services = Number(opt("services", 50));
const offset = Number(opt("host-offset", 0));
let intervalMs = Number(opt("interval-ms", 1000));
const prefix = opt("prefix", "sim");

const send = (m) => process.send?.(m);
const epoch = Date.now();

/** One simulated agent's fixed state. */
const fleet = [];
for (let k = 0; k < hosts; k++) {
  const h = offset + k;
  const hostId = `${prefix}-h${String(h).padStart(5, "0")}`;
  const address = `127.${1 + ((h >> 16) & 127)}.${(h >> 8) & 255}.${h & 255}`;
  const instances = [];
  for (let i = 0; i < perHost; i++) {
    instances.push({
      id: `h${String(h).padStart(5, "0")}-i${i}`,
      service: `svc-${String((h * perHost + i) % services).padStart(3, "0")}`,
      address,
      port: 20_000 + i,
      zone: `zone-${h % 3}`,
      tags: ["bench"],
      meta: { version: "1.0.0" },
      weight: 100,
      status: "passing",
      checks: [{ id: "http-0", type: "http", status: "passing", since: epoch }],
    });
  }
  fleet.push({
    hostId,
    instances,
    digest: instanceDigest(instances),
    seq: 0,
  });
}

const stats = { heartbeats: 0, registers: 0, resyncs: 0, resyncReasons: {}, lateTicks: 0 };

const nc = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: `${prefix}-agents-${offset}` });

// Statuses never change here, so each host's digest is computed once.
const { publishRegister, publishHeartbeat } = wireFleet(nc, { hosts: fleet, epoch, intervalMs, stats, digestOf: (a) => a.digest });

let stopBeats = () => {};
let active = 0; // hosts registered so far: fleet[0 .. active)
function startHeartbeats() {
  stopBeats();
  stopBeats = beatEvenly(fleet.slice(0, active), intervalMs, publishHeartbeat, stats);
}

const statsTimer = setInterval(() => send({ type: "stats", ...stats }), 1000);

process.on("message", async (m) => {
  if (m?.cmd === "register") {
    const t0 = performance.now();
    const upTo = Math.min(fleet.length, active + (m.count ?? fleet.length));
    for (let k = active; k < upTo; k++) {
      publishRegister(fleet[k]);
      if (k % 100 === 99) await nc.flush();
    }
    active = upTo;
    await nc.flush();
    send({ type: "registered", ms: performance.now() - t0, active });
    startHeartbeats();
  } else if (m?.cmd === "interval") {
    intervalMs = m.ms;
    for (const h of fleet) h.intervalMs = m.ms;
    startHeartbeats();
    send({ type: "interval", ms: m.ms });
  } else if (m?.cmd === "stop") {
    stopBeats();
    clearInterval(statsTimer);
    send({ type: "stats", ...stats });
    await nc.drain().catch(() => {});
    process.exit(0);
  }
});
// The parent died: do not linger.
process.on("disconnect", () => process.exit(0));

send({ type: "ready" });
