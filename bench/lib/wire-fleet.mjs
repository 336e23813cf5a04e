// What the simulated agent fleets (sim-agents.mjs, fanout-agent.mjs) share: argv options for a
// forked child, and a fleet of hosts over ONE NATS connection speaking the real wire contract —
// a register carrying the host's full set, a heartbeat with the digest a real agent computes, and
// an answer (a register again) to every resync the registry sends to one of its hosts.
import {
  HeartbeatMessage,
  RegisterMessage,
  ResyncMessage,
  SUBJECT_PREFIX,
  agentSubject,
  decode,
  encode,
} from "roster-schemas";

/**
 * `--name=value` from argv only: a forked child inherits the parent's env, where BENCH_* may be
 * another script's option (bench/lib/options.mjs reads both).
 */
export function argvOption(name, fallback) {
  const hit = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? fallback : hit.slice(name.length + 3);
}

/**
 * Publishes for hosts `{ hostId, instances, seq, intervalMs? }` (a host's own intervalMs, when
 * set, overrides the fleet's); `stats` gets `registers`, `heartbeats`,
 * `resyncs` and `resyncReasons` counted. `digestOf(host)` gives the heartbeat's digest.
 */
export function wireFleet(nc, { hosts, epoch, intervalMs, stats, digestOf }) {
  const byHost = new Map(hosts.map((h) => [h.hostId, h]));

  function publishRegister(host) {
    const msg = {
      v: 1,
      kind: "register",
      hostId: host.hostId,
      epoch,
      seq: ++host.seq,
      sentAt: Date.now(),
      zone: host.instances[0]?.zone,
      heartbeatIntervalMs: host.intervalMs ?? intervalMs,
      instances: host.instances,
    };
    nc.publish(agentSubject(host.hostId, "register"), encode(RegisterMessage, msg, "register"));
    stats.registers++;
  }

  function publishHeartbeat(host) {
    const msg = {
      v: 1,
      kind: "heartbeat",
      hostId: host.hostId,
      epoch,
      seq: ++host.seq,
      sentAt: Date.now(),
      heartbeatIntervalMs: host.intervalMs ?? intervalMs,
      instanceCount: host.instances.length,
      digest: digestOf(host),
    };
    nc.publish(agentSubject(host.hostId, "heartbeat"), encode(HeartbeatMessage, msg, "heartbeat"));
    stats.heartbeats++;
  }

  // Resync requests: one wildcard subscription for the whole simulated fleet.
  nc.subscribe(`${SUBJECT_PREFIX}.registry.resync.*`, {
    callback: (_err, m) => {
      const r = decode(ResyncMessage, m.data);
      if (!r.ok) return;
      const host = byHost.get(r.value.hostId);
      if (!host) return;
      stats.resyncs++;
      stats.resyncReasons[r.value.reason] = (stats.resyncReasons[r.value.reason] ?? 0) + 1;
      publishRegister(host);
    },
  });

  return { publishRegister, publishHeartbeat };
}

/**
 * Heartbeats for `hosts`, host k at phase k/n of the interval, on an absolute schedule: a late
 * timer catches up (sends every beat already due) instead of stretching the period. A 1 ms
 * `setInterval` sending one host per tick made 2,000 hosts beat every 2 s at best and every
 * 4–6 s on busy cores — past the registry's silence limit (3 × interval), so the fleet itself
 * fell "silent". Counts `stats.lateTicks` (a beat sent more than half an interval late).
 * Returns a function that stops the beats.
 */
export function beatEvenly(hosts, intervalMs, publishHeartbeat, stats) {
  const n = hosts.length;
  if (n === 0) return () => {};
  const start = performance.now();
  const due = hosts.map((_, k) => start + intervalMs + (k / n) * intervalMs);
  let next = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    let sent = 0;
    while (due[next] <= now && sent < n) {
      if (now - due[next] > intervalMs / 2) stats.lateTicks = (stats.lateTicks ?? 0) + 1;
      publishHeartbeat(hosts[next]);
      due[next] += intervalMs;
      next = (next + 1) % n;
      sent++;
    }
  }, 5);
  return () => clearInterval(timer);
}
