#!/usr/bin/env node
// Heartbeat ingest: the highest host-heartbeat rate the registry keeps up with, its processing
// lag staying under 10 ms at p99, and its CPU at 1,000 and 10,000 hosts beating every second.
//
//   node bench/heartbeat-ingest.mjs [--quick] [--steps=1000@1000,2500@1000,...] [--window=8]
//     [--probe-every-ms=20] [--lag-p99-ms=10] [--sims=2]
// A step `H@I` is H hosts (one instance each) beating every I ms: H × 1000 / I heartbeats/s.
// Steps run in order on one registry (each adds hosts, registered before the window starts, or
// shortens the interval); the ramp stops after the first step where the simulators could not
// send the target rate or the lag p99 passed 10 × the bound. The first step (100 hosts) is the
// floor: what the machine adds to a probe with next to no load.
//
// Lag, observed from outside without touching the registry: a probe publishes, among the
// fleet's heartbeats, a heartbeat from a host the registry has never seen (a fresh host id each
// time), which the registry answers at once with a resync request to that host ("unknown-host";
// the rate limit is per host, so a fresh id is never suppressed). The time from the probe's
// publish to the resync's arrival is the time the heartbeat waited behind the others in the
// registry's ingest, plus its processing and two NATS hops on loopback (~0.1 ms each, the
// floor measured at the first, lightest step).
//
// Real processes: nats-server, roster-registry (bin), `sims` simulated agent processes
// (bench/lib/sim-agents.mjs), the probe in this process (its own NATS connection).
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { HeartbeatMessage, SUBJECT_PREFIX, agentSubject, encode } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import { watchCatalog } from "./lib/catalog-watch.mjs";
import { forkHelper } from "./lib/fork-helper.mjs";
import { closeHttp } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { cpuSeconds, rssMiB } from "./lib/procstat.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const SIM = fileURLToPath(new URL("./lib/sim-agents.mjs", import.meta.url));
const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const STEPS = stringOption("steps", quick ? "100@1000,1000@1000,4000@500" : "100@1000,1000@1000,2500@1000,5000@1000,10000@1000,10000@500,10000@250,10000@125")
  .split(",")
  .map((s) => {
    const [h, i] = s.split("@").map(Number);
    if (!(h > 0 && i > 0)) {
      process.stderr.write(`bad step "${s}": expected HOSTS@INTERVAL_MS\n`);
      process.exit(2);
    }
    return { hosts: h, intervalMs: i, rate: (h * 1000) / i };
  });
const WINDOW_S = numberOption("window", quick ? 3 : 8);
const PROBE_EVERY_MS = numberOption("probe-every-ms", 20);
const BOUND_MS = numberOption("lag-p99-ms", 10);
const SIMS = Math.max(1, numberOption("sims", 2));
const maxHosts = Math.max(...STEPS.map((s) => s.hosts));

await runBench("heartbeat-ingest", quick ? 90 : 300, async () => {
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const registry = await startRegistry({ natsUrl: nats.url });
  defer(() => registry.stop());
  const observer = await watchCatalog(nats.url);
  defer(() => observer.close());
  progress(`heartbeat-ingest: registry pid ${registry.pid}, nats pid ${nats.pid}; steps ${STEPS.map((s) => `${s.hosts}@${s.intervalMs}`).join(" ")}`);

  // The fleet: sims share the hosts; step k registers hosts up to its count.
  const sims = [];
  for (let i = 0; i < SIMS; i++) {
    const count = Math.floor(maxHosts / SIMS) + (i < maxHosts % SIMS ? 1 : 0);
    const offset = i * Math.floor(maxHosts / SIMS) + Math.min(i, maxHosts % SIMS);
    const h = forkHelper(SIM, [`--nats=${nats.url}`, `--hosts=${count}`, "--instances=1", "--services=100", `--host-offset=${offset}`, "--interval-ms=1000", "--prefix=ing"], `sim-${i}`);
    h.count = count;
    h.active = 0;
    sims.push(h);
  }
  defer(() => Promise.all(sims.map((h) => h.stop({ cmd: "stop" }))));
  await Promise.all(sims.map((h) => h.next("ready", 30_000, { seen: true })));

  // The probe.
  const nc = await connect({ servers: nats.url, name: "ingest-probe" });
  defer(() => nc.drain().catch(() => {}));
  const pending = new Map(); // hostId → publish time
  let lags = [];
  nc.subscribe(`${SUBJECT_PREFIX}.registry.resync.*`, {
    callback: (_e, m) => {
      const hostId = m.subject.slice(m.subject.lastIndexOf(".") + 1);
      const t0 = pending.get(hostId);
      if (t0 === undefined) return;
      pending.delete(hostId);
      lags.push(performance.now() - t0);
    },
  });
  await nc.flush();
  let probeSeq = 0;
  const epoch = Date.now();
  const probeOnce = () => {
    const hostId = `probe-${epoch.toString(36)}-${probeSeq++}`;
    const msg = { v: 1, kind: "heartbeat", hostId, epoch, seq: 1, sentAt: Date.now(), heartbeatIntervalMs: 1000, instanceCount: 0, digest: "0000000000000000" };
    const data = encode(HeartbeatMessage, msg, "heartbeat");
    pending.set(hostId, performance.now());
    nc.publish(agentSubject(hostId, "heartbeat"), data);
  };

  const simStats = () => sims.reduce((a, h) => ({ heartbeats: a.heartbeats + (h.last.stats?.heartbeats ?? 0), lateTicks: a.lateTicks + (h.last.stats?.lateTicks ?? 0), resyncs: a.resyncs + (h.last.stats?.resyncs ?? 0) }), { heartbeats: 0, lateTicks: 0, resyncs: 0 });
  const results = [];
  let interval = 1000;
  for (const step of STEPS) {
    // Register the hosts this step adds (each sim its share), then wait for them in KV.
    const target = step.hosts;
    const regs = [];
    let assigned = 0;
    for (const h of sims) {
      const want = Math.min(h.count, Math.floor(target / SIMS) + (sims.indexOf(h) < target % SIMS ? 1 : 0));
      assigned += want;
      if (want > h.active) {
        const p = h.next("registered", 60_000);
        h.send({ cmd: "register", count: want - h.active });
        regs.push(p.then((m) => (h.active = m.active)));
      }
    }
    await Promise.all(regs);
    if (step.intervalMs !== interval) {
      interval = step.intervalMs;
      await Promise.all(sims.map((h) => {
        const p = h.next("interval", 10_000);
        h.send({ cmd: "interval", ms: interval });
        return p;
      }));
    }
    await waitFor(async () => ((await observer.kvState())?.messages ?? 0) >= assigned, { timeoutMs: 120_000, intervalMs: 200, what: `${assigned} hosts' instances in KV` });
    await sleep(2000 + interval); // every host has beaten at the new pace at least once
    // The window.
    await sleep(1100); // fresh sim stats
    const s0 = simStats();
    const cpu0 = cpuSeconds(registry.pid);
    const ncpu0 = cpuSeconds(nats.pid);
    const t0 = performance.now();
    lags = [];
    pending.clear();
    const probeTimer = setInterval(probeOnce, PROBE_EVERY_MS);
    await sleep(WINDOW_S * 1000);
    clearInterval(probeTimer);
    const t1 = performance.now();
    const cpu = ((cpuSeconds(registry.pid) - cpu0) / ((t1 - t0) / 1000)) * 100;
    const ncpu = ((cpuSeconds(nats.pid) - ncpu0) / ((t1 - t0) / 1000)) * 100;
    await sleep(1100);
    const s1 = simStats();
    const lost = pending.size;
    const lag = summarize(lags);
    const achieved = (s1.heartbeats - s0.heartbeats) / ((t1 - t0 + 1100) / 1000);
    const keptUp = achieved >= 0.9 * step.rate && lost <= 1;
    const ok = lag.n > 0 && lag.p99 < BOUND_MS && keptUp;
    const r = { ...step, hostsRegistered: assigned, achieved, lag, lost, registryCpuPct: cpu, natsCpuPct: ncpu, registryRssMiB: rssMiB(registry.pid), lateTicks: s1.lateTicks - s0.lateTicks, resyncsToFleet: s1.resyncs - s0.resyncs, ok };
    results.push(r);
    progress(`${step.hosts} hosts @ ${step.intervalMs} ms = ${fmt(step.rate, 0)}/s target, ${fmt(achieved, 0)}/s sent: lag p50 ${fmt(lag.p50, 2)} p99 ${fmt(lag.p99, 2)} max ${fmt(lag.max, 2)} ms (${lag.n} probes, ${lost} unanswered), registry cpu ${fmt(cpu, 0)}%, nats ${fmt(ncpu, 0)}% → ${ok ? "ok" : "over the bound"}`);
    // Past the bound the ramp goes on while the fleet keeps up and the lag stays moderate, so
    // the curve shows whether the bound was missed for load or for the machine's noise floor.
    if (!keptUp || lag.p99 > 10 * BOUND_MS) break;
  }
  const best = results.filter((r) => r.ok).sort((a, b) => a.achieved - b.achieved).at(-1);
  const at = (h, i) => results.find((r) => r.hosts === h && r.intervalMs === i);
  const cpuAt = (h) => {
    const r = at(h, 1000);
    return r ? `${fmt(r.registryCpuPct, 1)} % of a core (nats-server ${fmt(r.natsCpuPct, 1)} %)` : "not run";
  };
  printReport({
    title: "Heartbeat ingest: highest rate with registry lag p99 under 10 ms",
    command: commandLine("bench/heartbeat-ingest.mjs"),
    params: { steps: STEPS.map((s) => `${s.hosts}@${s.intervalMs}`).join(","), windowS: WINDOW_S, probeEveryMs: PROBE_EVERY_MS, boundMs: BOUND_MS, simulatorProcesses: SIMS, instancesPerHost: 1 },
    figures: { steps: results, highestOkRate: best?.achieved ?? null },
    tables: [
      {
        caption: `Ramp: ${WINDOW_S} s windows, a probe every ${PROBE_EVERY_MS} ms`,
        headers: ["hosts", "interval ms", "target beats/s", "sent beats/s", "lag p50 ms", "lag p99 ms", "lag max ms", "probes (unanswered)", "registry CPU %", "nats-server CPU %", "registry RSS MiB", "within bound"],
        rows: results.map((r) => [r.hosts, r.intervalMs, fmt(r.rate, 0), fmt(r.achieved, 0), fmt(r.lag.p50, 2), fmt(r.lag.p99, 2), fmt(r.lag.max, 2), `${r.lag.n} (${r.lost})`, fmt(r.registryCpuPct, 1), fmt(r.natsCpuPct, 1), fmt(r.registryRssMiB, 0), r.ok ? "yes" : "no"]),
      },
      {
        caption: "Summary",
        headers: ["measure", "value"],
        rows: [
          [`highest heartbeat rate with lag p99 < ${BOUND_MS} ms`, best ? `${fmt(best.achieved, 0)}/s (${best.hosts} hosts every ${best.intervalMs} ms)${best === results.at(-1) && results.length === STEPS.length ? " — the last step: the ramp did not reach the limit" : ""}` : "none"],
          ["lag floor (100 hosts, first step): p50 / p99", results[0] ? `${fmt(results[0].lag.p50, 2)} / ${fmt(results[0].lag.p99, 2)} ms` : "n/a"],
          ["registry CPU, 1,000 hosts beating every second", cpuAt(1000)],
          ["registry CPU, 10,000 hosts beating every second", cpuAt(10_000)],
        ],
      },
    ],
    notes: [
      "Lag = probe heartbeat publish → the registry's resync request for that (unknown) host arriving back at the probe: queueing in the registry's ingest behind the fleet's heartbeats + processing + 2 loopback NATS hops. A heartbeat that matches its digest writes nothing to KV, so this is the registry's steady-state work per host.",
      "'sent beats/s' is what the simulators published (1 s stats), which can fall short of the target when the machine (2 cores, shared by the simulators, nats-server, the registry and other work) runs out of CPU; a step counts as sustained only if the simulators sent ≥ 90 % of its target and the lag p99 is under the bound.",
    ],
  });
  await closeHttp();
});
