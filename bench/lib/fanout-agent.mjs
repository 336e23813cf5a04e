#!/usr/bin/env node
// A fake fleet of agents for bench/gateway-fanout.mjs, in its own process (forked, IPC),
// speaking the real wire contract over ONE NATS connection: `hosts` hosts, each running one
// instance of each of `services` services (svc-000 ...), so every service has `hosts`
// instances. It registers, heartbeats every `interval-ms` with the digest of its CURRENT
// statuses (so the registry never asks for a resync because of a flip), answers resync
// requests, and on demand flips instance health at a fixed rate: each flip is a
// HealthMessage whose check `output` carries the send time (performance.timeOrigin +
// performance.now(), ms with a fraction) so that every subscriber down the line can tell how
// long the transition took to reach it.
//
// Options (argv `--name=value`): nats, hosts, services, interval-ms, seed, flip-services (flips
// only touch instances of the first N services; default all).
// Parent → child: { cmd: "register" }, { cmd: "flip", rate, seconds }, { cmd: "stop" }.
// Child → parent: { type: "ready" }, { type: "registered" }, { type: "flipped", sent, lateTicks },
//                 { type: "stats", heartbeats, registers, resyncs, health }.
import { connect } from "@nats-io/transport-node";
import { HealthMessage, agentSubject, encode, instanceDigest } from "roster-schemas";
import { argvOption as opt, beatEvenly, wireFleet } from "./wire-fleet.mjs";

const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const hostCount = Number(opt("hosts", 10));
const serviceCount = Number(opt("services", 50));
const intervalMs = Number(opt("interval-ms", 1000));
const flipServices = Math.max(1, Math.min(serviceCount, Number(opt("flip-services", serviceCount))));
let seed = Number(opt("seed", 42)) >>> 0;

/** A small deterministic PRNG (mulberry32), so two runs flip the same sequence. */
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const send = (m) => process.send?.(m);
const epoch = Date.now();
const hiresNow = () => performance.timeOrigin + performance.now();

const hosts = [];
for (let h = 0; h < hostCount; h++) {
  const hostId = `fan-h${String(h).padStart(3, "0")}`;
  const instances = [];
  for (let s = 0; s < serviceCount; s++) {
    instances.push({
      id: `h${String(h).padStart(3, "0")}-s${s}`,
      service: `svc-${String(s).padStart(3, "0")}`,
      address: `127.0.${h >> 8}.${(h & 255) + 1}`,
      port: 20_000 + s,
      zone: `zone-${h % 3}`,
      tags: ["bench"],
      meta: {},
      weight: 100,
      status: "passing",
      checks: [{ id: "http-0", type: "http", status: "passing", since: epoch }],
    });
  }
  hosts.push({ hostId, instances, seq: 0 });
}
const stats = { heartbeats: 0, registers: 0, resyncs: 0, resyncReasons: {}, health: 0, lateTicks: 0 };

const nc = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: "fanout-agents" });

// The digest follows the CURRENT statuses, so a flip never makes the registry ask for a resync.
const { publishRegister, publishHeartbeat } = wireFleet(nc, { hosts, epoch, intervalMs, stats, digestOf: (h) => instanceDigest(h.instances) });

/** Flips one random instance passing ↔ critical and publishes the transition at once. */
function flipOne() {
  const host = hosts[Math.floor(random() * hosts.length)];
  const inst = host.instances[Math.floor(random() * flipServices)];
  const status = inst.status === "passing" ? "critical" : "passing";
  const sentAt = hiresNow();
  const check = { id: "http-0", type: "http", status, output: `sentAt=${sentAt.toFixed(3)}`, since: Math.floor(sentAt) };
  inst.status = status;
  inst.checks = [check];
  const msg = {
    v: 1,
    kind: "health",
    hostId: host.hostId,
    epoch,
    seq: ++host.seq,
    sentAt: Math.floor(sentAt),
    service: inst.service,
    instanceId: inst.id,
    check,
    instanceStatus: status,
  };
  nc.publish(agentSubject(host.hostId, "health"), encode(HealthMessage, msg, "health"));
  stats.health++;
}

let stopBeats = () => {};
function startHeartbeats() {
  stopBeats = beatEvenly(hosts, intervalMs, publishHeartbeat, stats);
}

/** `rate` flips per second for `seconds`, on an absolute schedule (a late tick catches up). */
async function flip(rate, seconds) {
  const total = Math.round(rate * seconds);
  const period = 1000 / rate;
  const start = performance.now();
  let sent = 0;
  let lateTicks = 0;
  while (sent < total) {
    const due = start + sent * period;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    else if (wait < -period) lateTicks++;
    flipOne();
    sent++;
  }
  await nc.flush();
  return { sent, lateTicks };
}

const statsTimer = setInterval(() => send({ type: "stats", ...stats }), 1000);

process.on("message", async (m) => {
  if (m?.cmd === "register") {
    for (const h of hosts) publishRegister(h);
    await nc.flush();
    send({ type: "registered" });
    startHeartbeats();
  } else if (m?.cmd === "flip") {
    const r = await flip(m.rate, m.seconds);
    send({ type: "flipped", ...r });
  } else if (m?.cmd === "stop") {
    stopBeats();
    clearInterval(statsTimer);
    send({ type: "stats", ...stats });
    await nc.drain().catch(() => {});
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));

send({ type: "ready" });
