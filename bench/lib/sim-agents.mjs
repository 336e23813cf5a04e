#!/usr/bin/env node
// Simulated agents: a separate process (forked by the benchmark, IPC channel) that plays
// `hosts` agents of `instances` instances each over ONE NATS connection, speaking the real
// wire contract: a RegisterMessage per host, then a HeartbeatMessage per host every
// interval (staggered evenly over the interval), with the same `instanceDigest` a real
// agent computes, so a registry that agrees with the digest writes nothing. A
// ResyncMessage on `resyncSubject(host)` is answered by republishing that host's register.
//
// Options (argv `--name=value`): nats (url), hosts, instances, services, host-offset,
// interval-ms, prefix. Parent → child messages: { cmd: "register" }, { cmd: "stop" }.
// Child → parent: { type: "ready" }, { type: "registered", ms }, { type: "stats", ... }.
import { connect } from "@nats-io/transport-node";
import {
  HeartbeatMessage,
  RegisterMessage,
  ResyncMessage,
  SUBJECT_PREFIX,
  agentSubject,
  decode,
  encode,
  instanceDigest,
} from "@roster/schemas";

function opt(name, fallback) {
  const hit = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? fallback : hit.slice(name.length + 3);
}

const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const hosts = Number(opt("hosts", 1000));
const perHost = Number(opt("instances", 10));
const services = Number(opt("services", 50));
const offset = Number(opt("host-offset", 0));
const intervalMs = Number(opt("interval-ms", 1000));
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
    heartbeatSubject: agentSubject(hostId, "heartbeat"),
    registerSubject: agentSubject(hostId, "register"),
  });
}
const byHost = new Map(fleet.map((a) => [a.hostId, a]));

const stats = { heartbeats: 0, registers: 0, resyncs: 0, resyncReasons: {}, lateTicks: 0 };

const nc = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: `${prefix}-agents-${offset}` });

function publishRegister(agent) {
  const msg = {
    v: 1,
    kind: "register",
    hostId: agent.hostId,
    epoch,
    seq: ++agent.seq,
    sentAt: Date.now(),
    zone: agent.instances[0]?.zone,
    heartbeatIntervalMs: intervalMs,
    instances: agent.instances,
  };
  nc.publish(agent.registerSubject, encode(RegisterMessage, msg, "register"));
  stats.registers++;
}

function publishHeartbeat(agent) {
  const msg = {
    v: 1,
    kind: "heartbeat",
    hostId: agent.hostId,
    epoch,
    seq: ++agent.seq,
    sentAt: Date.now(),
    heartbeatIntervalMs: intervalMs,
    instanceCount: agent.instances.length,
    digest: agent.digest,
  };
  nc.publish(agent.heartbeatSubject, encode(HeartbeatMessage, msg, "heartbeat"));
  stats.heartbeats++;
}

// Resync requests: one wildcard subscription for the whole simulated fleet.
nc.subscribe(`${SUBJECT_PREFIX}.registry.resync.*`, {
  callback: (_err, m) => {
    const r = decode(ResyncMessage, m.data);
    if (!r.ok) return;
    const agent = byHost.get(r.value.hostId);
    if (!agent) return;
    stats.resyncs++;
    stats.resyncReasons[r.value.reason] = (stats.resyncReasons[r.value.reason] ?? 0) + 1;
    publishRegister(agent);
  },
});

let beating = null;
function startHeartbeats() {
  // Host k beats at phase k/hosts of the interval, so the load is spread evenly.
  const start = performance.now();
  const due = fleet.map((_, k) => start + intervalMs + (k / hosts) * intervalMs);
  let next = 0;
  beating = setInterval(() => {
    const now = performance.now();
    let sent = 0;
    while (due[next] <= now && sent < hosts) {
      if (now - due[next] > intervalMs / 2) stats.lateTicks++;
      publishHeartbeat(fleet[next]);
      due[next] += intervalMs;
      next = (next + 1) % hosts;
      sent++;
    }
  }, 5);
}

const statsTimer = setInterval(() => send({ type: "stats", ...stats }), 1000);

process.on("message", async (m) => {
  if (m?.cmd === "register") {
    const t0 = performance.now();
    for (let k = 0; k < fleet.length; k++) {
      publishRegister(fleet[k]);
      if (k % 100 === 99) await nc.flush();
    }
    await nc.flush();
    send({ type: "registered", ms: performance.now() - t0 });
    startHeartbeats();
  } else if (m?.cmd === "stop") {
    clearInterval(beating);
    clearInterval(statsTimer);
    send({ type: "stats", ...stats });
    await nc.drain().catch(() => {});
    process.exit(0);
  }
});
// The parent died: do not linger.
process.on("disconnect", () => process.exit(0));

send({ type: "ready" });
