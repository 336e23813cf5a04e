#!/usr/bin/env node
// Time from a service's death (kill -9) to its status turning critical on the registry's
// HTTP API, measured with blocking queries, over real processes:
//   nats-server (test kit) → roster-registry (bin) ← roster-agent (bin, http checks) → demo services
//
//   node bench/death-to-status.mjs [--trials=50] [--services=10] [--profiles=default,demo,fast]
// (or BENCH_TRIALS=..., BENCH_SERVICES=..., BENCH_PROFILES=...)
//
// Profiles: "default" = an http check with the agent's defaults (interval 10s,
// failuresBeforeCritical 2); "demo" = interval 1s (examples/agent.yaml); "fast" = interval
// 200ms, failuresBeforeCritical 2.
// Trials run in parallel across `services` services of ONE agent, each its own demo
// process: per trial, start the service, wait until the API says passing, wait a random
// fraction of the check interval (a crash does not line up with the check schedule), then
// SIGKILL it and time until a blocking query returns the instance as critical.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { HealthMessage, agentSubject, decode } from "roster-schemas";
import { NatsServer, freePort } from "roster-testkit";
import { startAgent } from "./lib/agent.mjs";
import { closeHttp } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { ServiceWatch } from "./lib/service-watch.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const DEMO = fileURLToPath(new URL("./lib/demo-service.mjs", import.meta.url));
const trials = numberOption("trials", 50);
const serviceCount = Math.max(1, numberOption("services", 10));
const profileNames = stringOption("profiles", "default,demo,fast").split(",").map((s) => s.trim()).filter(Boolean);

const PROFILES = {
  default: {
    label: "agent defaults: http check every 10 s, failuresBeforeCritical 2",
    check: { type: "http", path: "/health" },
    intervalMs: 10_000,
    failures: 2,
  },
  demo: {
    label: "http check every 1 s, failuresBeforeCritical 2 (as in examples/agent.yaml)",
    check: { type: "http", path: "/health", interval: "1s", timeout: "500ms" },
    intervalMs: 1000,
    failures: 2,
  },
  fast: {
    label: "http check every 200 ms, failuresBeforeCritical 2",
    check: { type: "http", path: "/health", interval: "200ms", failuresBeforeCritical: 2 },
    intervalMs: 200,
    failures: 2,
  },
};
for (const p of profileNames) {
  if (!PROFILES[p]) {
    process.stderr.write(`unknown profile "${p}": expected ${Object.keys(PROFILES).join(", ")}\n`);
    process.exit(2);
  }
}

const children = new Set();
function startDemo(port) {
  const child = spawn(process.execPath, [DEMO, String(port)], { stdio: ["ignore", "ignore", "inherit"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Runs one profile: a fresh agent with `serviceCount` services, trials spread over them. */
async function runProfile(name, natsUrl, httpUrl) {
  const profile = PROFILES[name];
  const perService = Math.ceil(trials / serviceCount);
  const services = [];
  for (let i = 0; i < serviceCount; i++) {
    services.push({ name: `death-${name}-${String(i).padStart(2, "0")}`, port: await freePort() });
  }
  const procs = new Map(services.map((s) => [s.name, startDemo(s.port)]));
  // The agent's health messages, timestamped on arrival: splits each trial into detection
  // (kill → the agent publishes "critical") and propagation (→ the HTTP API says so).
  const hostId = `bench-death-${name}`;
  const nc = await connect({ servers: natsUrl, name: "bench-death-observer" });
  const healthSeen = new Map(services.map((s) => [s.name, []]));
  nc.subscribe(agentSubject(hostId, "health"), {
    callback: (_err, m) => {
      const at = performance.now();
      const r = decode(HealthMessage, m.data);
      if (r.ok) healthSeen.get(r.value.service)?.push({ at, status: r.value.instanceStatus });
    },
  });
  const agent = await startAgent({
    natsUrl,
    config: {
      host: { id: hostId },
      drain: { period: "0s" },
      services: services.map((s) => ({ name: s.name, id: `${s.name}-1`, port: s.port, address: "127.0.0.1", checks: [profile.check] })),
    },
  });
  const watches = services.map((s) => new ServiceWatch(httpUrl, s.name));
  const stopAll = async () => {
    watches.forEach((w) => w.close());
    await agent.stop();
    await nc.close().catch(() => {});
  };
  defer(stopAll);
  progress(`[${name}] agent pid ${agent.pid}, ${serviceCount} services, ${perService} trials each (${profile.label})`);

  const samples = [];
  const detection = [];
  const propagation = [];
  const startTimeout = profile.intervalMs * 3 + 30_000;
  const deathTimeout = profile.intervalMs * (profile.failures + 2) + 30_000;
  await Promise.all(
    services.map(async (svc, i) => {
      const w = watches[i];
      for (let t = 0; t < perService && samples.length < trials; t++) {
        if (!procs.get(svc.name) || procs.get(svc.name).exitCode !== null || procs.get(svc.name).signalCode !== null) {
          procs.set(svc.name, startDemo(svc.port));
        }
        await w.until((x) => x.status === "passing", { timeoutMs: startTimeout, what: `${svc.name} passing` });
        await sleep(Math.random() * profile.intervalMs);
        const child = procs.get(svc.name);
        const t0 = performance.now();
        child.kill("SIGKILL");
        const t1 = await w.until((x) => x.status === "critical", { after: t0, timeoutMs: deathTimeout, what: `${svc.name} critical` });
        if (Number.isNaN(t1)) return;
        samples.push(t1 - t0);
        const h = healthSeen.get(svc.name).find((e) => e.at >= t0 && e.status === "critical");
        if (h && h.at <= t1) {
          detection.push(h.at - t0);
          propagation.push(t1 - h.at);
        }
        progress(`[${name}] ${svc.name} trial ${t + 1}/${perService}: ${fmt(t1 - t0, 0)} ms${h ? ` (agent published after ${fmt(h.at - t0, 0)} ms)` : ""} (${samples.length}/${trials})`);
        await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once("exit", r)));
      }
    }),
  );
  const blocking = watches.every((w) => w.blocking);
  await stopAll();
  for (const c of procs.values()) c.kill("SIGKILL");
  return { name, profile, samples, detection, propagation, blocking, perService };
}

const maxSeconds = 120 + profileNames.reduce((s, p) => s + Math.ceil(trials / serviceCount) * (PROFILES[p].intervalMs * (PROFILES[p].failures + 4) + 2000) / 1000, 0);

await runBench("death-to-status", maxSeconds, async () => {
  progress(`death-to-status: ${trials} trials per profile over ${serviceCount} services, profiles ${profileNames.join(", ")} (deadline ${Math.round(maxSeconds)}s)`);
  defer(() => {
    for (const c of children) c.kill("SIGKILL");
  });
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const registry = await startRegistry({ natsUrl: nats.url });
  defer(() => registry.stop());
  progress(`nats ${nats.url}, registry ${registry.httpUrl}`);

  const results = [];
  for (const p of profileNames) results.push(await runProfile(p, nats.url, registry.httpUrl));

  const rows = results.map((r) => {
    const s = summarize(r.samples);
    const bound = r.profile.intervalMs * r.profile.failures + r.profile.intervalMs;
    const expected = r.profile.intervalMs * (r.profile.failures - 0.5);
    return [r.profile.label, s.n, fmt(s.p50, 0), fmt(s.p99, 0), fmt(s.min, 0), fmt(s.max, 0), fmt(s.mean, 0), fmt(expected, 0), fmt(bound, 0)];
  });
  printReport({
    title: "Death to status: kill -9 of a service → critical on the HTTP API",
    command: commandLine("bench/death-to-status.mjs"),
    params: { trials, services: serviceCount, profiles: profileNames.join("+") },
    tables: [
      {
        caption: "Milliseconds from SIGKILL to a blocking query returning the instance as critical",
        headers: ["check", "trials", "p50", "p99", "min", "max", "mean", "expected mean (interval × (failures − ½))", "bound (interval × failures + interval)"],
        rows,
      },
      {
        caption: "Where the time goes (ms): detection = SIGKILL → the agent's health message on NATS; propagation = that message → the HTTP API answering critical",
        headers: ["check", "detection p50", "detection p99", "propagation p50", "propagation p99", "propagation max"],
        rows: results.map((r) => {
          const d = summarize(r.detection);
          const p = summarize(r.propagation);
          return [r.profile.label, fmt(d.p50, 0), fmt(d.p99, 0), fmt(p.p50, 1), fmt(p.p99, 1), fmt(p.max, 1)];
        }),
      },
    ],
    notes: [
      `Trials run ${serviceCount} at a time: one agent checks ${serviceCount} services, each a separate demo process on its own port; each service runs its trials one after another.`,
      "Before each kill the benchmark waits a random fraction of the check interval, so the kill falls anywhere in the check cycle, as a real crash does; detection then takes U(0, interval) + (failures − 1) × interval, plus propagation (agent → NATS → registry → KV → HTTP).",
      results.every((r) => r.blocking) ? "The watcher used blocking queries (index from X-Roster-Index) throughout." : "The registry gave no X-Roster-Index: the watcher fell back to polling every 20 ms.",
      "Percentiles are nearest-rank: with fewer than 100 samples p99 is the largest sample. The machine has 2 cores shared with other work (noisy).",
    ],
  });
  await closeHttp();
});
