#!/usr/bin/env node
// Registry CPU and RSS under a fleet of simulated agents heartbeating every second.
//
//   node bench/registry-load.mjs [--hosts=1000] [--instances=10] [--services=50]
//        [--duration=30] [--sims=2] [--interval-ms=1000] [--settle=5] [--tail=30]
// (or BENCH_HOSTS=..., BENCH_DURATION=... in the environment)
//
// Real processes: a nats-server (test kit), the registry (its bin), and `sims` processes
// of simulated agents (bench/lib/sim-agents.mjs) speaking the real wire contract. The
// registry's CPU (% of one core) and RSS are read from /proc every second.
//
// Memory in steady state is the RSS median over the window's last `--tail` seconds. After a
// storm V8 keeps the storm's garbage (and the heap it grew into) until a full GC: with agents
// beating, the allocation rate stays above what V8's memory reducer counts as idle, so that GC
// comes from the reducer's watchdog, ~100 s after the storm. A window of 3 minutes (the `storm`
// preset) ends well after it; a short window's median still holds the storm's garbage.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { NatsServer, waitFor } from "roster-testkit";
import { watchCatalog } from "./lib/catalog-watch.mjs";
import { closeHttp, getJson, instancesOf, metricValues } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { ProcSampler, rssMiB } from "./lib/procstat.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const hosts = numberOption("hosts", 1000);
const perHost = numberOption("instances", 10);
const services = numberOption("services", 50);
const duration = numberOption("duration", 30);
const sims = Math.max(1, Math.min(numberOption("sims", 2), hosts));
const intervalMs = numberOption("interval-ms", 1000);
const settle = numberOption("settle", 5);
const tail = numberOption("tail", 30);
const total = hosts * perHost;
const SIM = fileURLToPath(new URL("./lib/sim-agents.mjs", import.meta.url));

function startSim(index, count, offset, natsUrl) {
  const child = fork(
    SIM,
    [`--nats=${natsUrl}`, `--hosts=${count}`, `--instances=${perHost}`, `--services=${services}`, `--host-offset=${offset}`, `--interval-ms=${intervalMs}`],
    { stdio: ["ignore", "inherit", "inherit", "ipc"] },
  );
  const sim = { index, child, stats: null, registeredMs: null };
  sim.ready = new Promise((resolve, reject) => {
    child.on("message", (m) => {
      if (m.type === "ready") resolve();
      else if (m.type === "stats") sim.stats = m;
      else if (m.type === "registered") sim.registeredMs = m.ms;
    });
    child.once("exit", (code) => reject(new Error(`sim ${index} exited with ${code}`)));
  });
  sim.ready.catch(() => {});
  sim.exited = new Promise((r) => child.once("exit", r));
  return sim;
}

function simTotals(list) {
  const t = { heartbeats: 0, registers: 0, resyncs: 0, lateTicks: 0, reasons: {} };
  for (const s of list) {
    if (!s.stats) continue;
    t.heartbeats += s.stats.heartbeats;
    t.registers += s.stats.registers;
    t.resyncs += s.stats.resyncs;
    t.lateTicks += s.stats.lateTicks;
    for (const [k, v] of Object.entries(s.stats.resyncReasons)) t.reasons[k] = (t.reasons[k] ?? 0) + v;
  }
  return t;
}

const maxSeconds = 120 + duration + settle + total / 100;

await runBench("registry-load", maxSeconds, async () => {
  progress(`registry-load: ${hosts} hosts x ${perHost} instances (${total}), ${services} services, beat every ${intervalMs}ms, window ${duration}s`);
  const nats = await NatsServer.start();
  defer(() => nats.close());
  progress(`nats-server on ${nats.url} (pid ${nats.pid})`);

  const registry = await startRegistry({ natsUrl: nats.url });
  defer(() => registry.stop());
  progress(`registry pid ${registry.pid} on ${registry.httpUrl}`);

  const observer = await watchCatalog(nats.url);
  defer(() => observer.close());

  const regSampler = new ProcSampler(registry.pid);
  const natsSampler = new ProcSampler(nats.pid);
  defer(() => {
    regSampler.stop();
    natsSampler.stop();
  });

  const simList = [];
  let offset = 0;
  for (let i = 0; i < sims; i++) {
    const count = Math.floor(hosts / sims) + (i < hosts % sims ? 1 : 0);
    simList.push(startSim(i, count, offset, nats.url));
    offset += count;
  }
  defer(async () => {
    for (const s of simList) if (s.child.connected) s.child.send({ cmd: "stop" });
    await Promise.race([Promise.all(simList.map((s) => s.exited)), sleep(5000)]);
    for (const s of simList) if (s.child.exitCode === null) s.child.kill("SIGKILL");
  });
  await Promise.all(simList.map((s) => s.ready));
  const simSamplers = simList.map((s) => new ProcSampler(s.child.pid));
  defer(() => simSamplers.forEach((s) => s.stop()));
  progress(`${sims} simulator process(es) connected`);

  // Registration of the whole fleet.
  const kvBefore = (await observer.kvState()) ?? { messages: 0, lastSeq: 0 };
  const regCpu0 = regSampler.totalCpuSeconds();
  const natsCpu0 = natsSampler.totalCpuSeconds();
  regSampler.mark();
  const rssAtStart = rssMiB(registry.pid) ?? NaN;
  const t0 = performance.now();
  for (const s of simList) s.child.send({ cmd: "register" });
  let lastLog = 0;
  const kvDone = await waitFor(
    async () => {
      const kv = await observer.kvState();
      const n = kv ? kv.messages - kvBefore.messages : 0;
      if (performance.now() - lastLog > 2000) {
        lastLog = performance.now();
        const st = await getJson(`${registry.httpUrl}/v1/status`).catch(() => null);
        const kvStats = st?.body?.kv;
        progress(`registering: ${n}/${total} in KV, ${observer.deltas.keys.size} distinct instances in deltas${kvStats ? `, registry: ${kvStats.pending} writes queued, ${kvStats.writes} acked` : ""}`);
      }
      return n >= total ? performance.now() : null;
    },
    { timeoutMs: 60_000 + total * 10, intervalMs: 50, what: `${total} instances in the catalog KV` },
  );
  const registrationMs = kvDone - t0;
  await waitFor(() => observer.deltas.keys.size >= total, { timeoutMs: 30_000, intervalMs: 50, what: "a delta per instance" });
  const deltasDoneMs = performance.now() - t0;
  const publishMs = Math.max(...simList.map((s) => s.registeredMs ?? NaN));
  progress(`registered ${total} instances in ${fmt(registrationMs, 0)} ms (KV), deltas for all by ${fmt(deltasDoneMs, 0)} ms`);
  const regCpuSeconds = regSampler.totalCpuSeconds() - regCpu0;
  const natsCpuSeconds = natsSampler.totalCpuSeconds() - natsCpu0;
  regSampler.sample();
  const regWindow = regSampler.window();
  const peakRss = Math.max(...regWindow.map((x) => x.rssMiB));
  const peakCpu = Math.max(...regWindow.map((x) => x.cpuPct));

  // Sanity: the HTTP API serves what was registered.
  const one = await getJson(`${registry.httpUrl}/v1/services/svc-000/instances`);
  const served = instancesOf(one.body).length;
  const expectedPerService = Math.ceil(total / services);
  progress(`HTTP: svc-000 has ${served} instances (expected about ${expectedPerService})`);

  // Steady state.
  progress(`settling ${settle}s`);
  await sleep(settle * 1000);
  const before = { kv: await observer.kvState(), deltas: observer.deltas.count, beats: observer.heartbeats.count, sims: simTotals(simList), t: performance.now() };
  regSampler.mark();
  const windowCpu0 = regSampler.totalCpuSeconds();
  natsSampler.mark();
  simSamplers.forEach((s) => s.mark());
  progress(`steady window: ${duration}s`);
  for (let s = 0; s < duration; s += 10) {
    await sleep(Math.min(10, duration - s) * 1000);
    const w = regSampler.window();
    const last = w[w.length - 1];
    progress(`  t+${Math.min(duration, s + 10)}s registry cpu ${fmt(last?.cpuPct)}% rss ${fmt(last?.rssMiB)} MiB, deltas so far ${observer.deltas.count - before.deltas}`);
  }
  const windowCpuSeconds = regSampler.totalCpuSeconds() - windowCpu0;
  // The registry's V8 heap at the end of the window (its /metrics, process metrics): what is live, against the RSS.
  const heap = await metricValues(`${registry.httpUrl}/metrics`, ["nodejs_heap_size_used_bytes", "nodejs_heap_size_total_bytes"]);
  const after = { kv: await observer.kvState(), deltas: observer.deltas.count, beats: observer.heartbeats.count, t: performance.now() };
  // Resync counts come from the simulators every second: wait for a fresh batch.
  await sleep(1100);
  after.sims = simTotals(simList);

  const reg = regSampler.window();
  const cpu = summarize(reg.map((s) => s.cpuPct));
  const rss = summarize(reg.map((s) => s.rssMiB));
  const tailRss = summarize(reg.slice(-Math.min(tail, reg.length)).map((s) => s.rssMiB));
  const ncpu = summarize(natsSampler.window().map((s) => s.cpuPct));
  const nrss = summarize(natsSampler.window().map((s) => s.rssMiB));
  const simCpu = summarize(simSamplers.map((s) => s.window().map((x) => x.cpuPct)).reduce((acc, arr) => arr.map((v, i) => v + (acc[i] ?? 0)), []));
  const kvWrites = before.kv && after.kv ? after.kv.lastSeq - before.kv.lastSeq : NaN;
  const beats = after.beats - before.beats;
  const windowS = (after.t - before.t) / 1000;
  const resyncs = after.sims.resyncs - before.sims.resyncs;

  printReport({
    title: `Registry load: ${hosts} hosts x ${perHost} instances, heartbeat every ${intervalMs} ms`,
    command: commandLine("bench/registry-load.mjs"),
    params: { hosts, instancesPerHost: perHost, instances: total, services, heartbeatIntervalMs: intervalMs, steadyWindowS: duration, simulatorProcesses: sims },
    figures: {
      registrationMs,
      deltasDoneMs,
      publishMs,
      instancesPerSecond: (total * 1000) / registrationMs,
      registersPerSecond: (hosts * 1000) / registrationMs,
      registrationCpuSeconds: regCpuSeconds,
      registrationNatsCpuSeconds: natsCpuSeconds,
      registryRssAtStartMiB: rssAtStart,
      registryPeakRssDuringRegistrationMiB: peakRss,
      registryPeakCpuPctDuringRegistration: peakCpu,
      steady: { cpu, rss, natsCpu: ncpu, natsRss: nrss },
      steadyTailRssMiB: tailRss.p50,
      steadyTailKBPerInstance: ((tailRss.p50 - rssAtStart) * 2 ** 20) / total / 1024,
      kvWrites,
      resyncs,
    },
    tables: [
      {
        caption: `Steady state (${reg.length} one-second samples after all registered + ${settle} s settle)`,
        headers: ["process", "CPU median (% of a core)", "CPU max", "RSS median (MiB)", "RSS max (MiB)"],
        rows: [
          ["roster-registry", fmt(cpu.p50), fmt(cpu.max), fmt(rss.p50), fmt(rss.max)],
          ["nats-server", fmt(ncpu.p50), fmt(ncpu.max), fmt(nrss.p50), fmt(nrss.max)],
          [`simulated agents (${sims} processes, summed)`, fmt(simCpu.p50), fmt(simCpu.max), "", ""],
        ],
      },
      {
        caption: "Registration and writes",
        headers: ["measure", "value"],
        rows: [
          [`registration of ${total} instances: first register sent → all in KV`, `${fmt(registrationMs, 0)} ms`],
          ["… → a catalog delta seen for every instance", `${fmt(deltasDoneMs, 0)} ms`],
          ["… time the simulators took to publish every register", `${fmt(publishMs, 0)} ms`],
          ["registrations per second (instances in KV ÷ time; register messages ÷ time)", `${fmt((total * 1000) / registrationMs, 0)} instances/s; ${fmt((hosts * 1000) / registrationMs, 0)} registers/s`],
          ["registry RSS before → peak during the registration (1 s samples)", `${fmt(rssAtStart)} → ${fmt(peakRss)} MiB`],
          ["registry RSS in the steady window above the empty registry, per instance (window median)", `${fmt(((rss.p50 - rssAtStart) * 2 ** 20) / total / 1024, 2)} KB`],
          [`… median of the window's last ${Math.min(tail, reg.length)} s (steady state once V8 has collected the storm's garbage, ~100 s after it)`, `${fmt(((tailRss.p50 - rssAtStart) * 2 ** 20) / total / 1024, 2)} KB (${fmt(tailRss.p50 - rssAtStart)} MiB above the empty registry's ${fmt(rssAtStart)})`],
          ["registry V8 heap used / total at the end of the window (/metrics)", `${fmt(heap.nodejs_heap_size_used_bytes / 2 ** 20)} / ${fmt(heap.nodejs_heap_size_total_bytes / 2 ** 20)} MiB`],
          ["registry CPU time used by the registration", `${fmt(regCpuSeconds * 1000, 0)} ms (${fmt((regCpuSeconds * 100_000) / registrationMs, 0)}% of a core over it; ${fmt((regCpuSeconds * 1e6) / total, 0)} µs per instance)`],
          ["nats-server CPU time used by the registration (JetStream KV writes)", `${fmt(natsCpuSeconds * 1000, 0)} ms (${fmt((natsCpuSeconds * 100_000) / registrationMs, 0)}% of a core over it)`],
          [`heartbeats on the wire in the window (${fmt(beats / windowS, 0)}/s)`, beats],
          ["registry CPU time per heartbeat (window CPU seconds ÷ heartbeats)", `${fmt((windowCpuSeconds * 1e6) / beats, 0)} µs`],
          ["KV writes in the steady window", Number.isNaN(kvWrites) ? "n/a" : kvWrites],
          ["catalog deltas in the steady window", after.deltas - before.deltas],
          ["resync requests in the steady window", resyncs],
          ["resync requests in the whole run (by reason)", `${after.sims.resyncs} ${JSON.stringify(after.sims.reasons)}`],
          ["heartbeats sent over half an interval late (simulator lag)", after.sims.lateTicks],
          ["instances served by HTTP for svc-000 after registration", `${served} (expected ${expectedPerService})`],
        ],
      },
    ],
    notes: [
      "CPU is utime+stime from /proc/<pid>/stat over each 1 s sample; 100% = one full core. The machine has 2 cores shared with other work (noisy).",
    ],
  });
  await closeHttp();
});
