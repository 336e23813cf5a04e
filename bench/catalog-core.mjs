#!/usr/bin/env node
// The catalog reducer alone (registry/src/core/catalog.ts, pure, in process): CPU per register and
// per heartbeat, the two paths the ownership check and the sanity bounds sit on. Free of NATS and
// of other processes, so a before/after comparison survives a busy machine better than `storm`.
//
//   node bench/catalog-core.mjs [--quick] [--hosts=1000] [--instances=100] [--rounds=7]
//        [--root=<another checkout, built>]   (its registry/dist is measured instead of this one's)
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { instanceDigest } from "roster-schemas";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const HOSTS = numberOption("hosts", quick ? 200 : 1000);
const PER_HOST = numberOption("instances", 100);
const ROUNDS = numberOption("rounds", quick ? 3 : 7);
const ROOT = resolve(stringOption("root", new URL("..", import.meta.url).pathname));
const { CatalogState } = await import(pathToFileURL(resolve(ROOT, "registry/dist/src/core/catalog.js")).href);
const OPTS = { heartbeatTimeoutMultiplier: 3, deregisterAfterMs: 60_000, selfPreservation: { threshold: 0.3, minHosts: 3 }, assumedHeartbeatIntervalMs: 1000 };

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

function fleet() {
  return Array.from({ length: HOSTS }, (_, h) => {
    const instances = Array.from({ length: PER_HOST }, (_, i) => ({
      id: `h${h}-i${i}`, service: `svc-${i % 100}`, address: "10.0.0.1", port: 8000 + i, tags: [], meta: {}, weight: 100, status: "passing", checks: [],
    }));
    return { hostId: `host-${h}`, instances, digest: instanceDigest(instances) };
  });
}

await runBench("catalog-core", 600, async () => {
  defer(() => undefined);
  const hosts = fleet();
  const now0 = Date.now();
  const reg = [];
  const hb = [];
  for (let r = 0; r < ROUNDS; r++) {
    const s = new CatalogState(OPTS);
    // CPU time of this process, not wall time: on a shared machine waiting for a core is not cost.
    let t = cpuUs();
    for (const h of hosts) s.handle({ v: 1, kind: "register", hostId: h.hostId, epoch: now0, seq: 1, sentAt: now0, heartbeatIntervalMs: 1000, instances: h.instances }, now0);
    reg.push((cpuUs() - t) / (HOSTS * PER_HOST));
    t = cpuUs();
    const beats = 10;
    for (let b = 0; b < beats; b++) {
      for (const h of hosts) {
        const e = s.handle({ v: 1, kind: "heartbeat", hostId: h.hostId, epoch: now0, seq: 2 + b, sentAt: now0, heartbeatIntervalMs: 1000, instanceCount: PER_HOST, digest: h.digest }, now0 + b);
        if (e.length) throw new Error(`a matching heartbeat produced ${JSON.stringify(e[0])}`);
      }
    }
    hb.push((cpuUs() - t) / (HOSTS * beats));
  }
  const med = (xs) => percentile(xs, 50);
  printReport({
    title: `Catalog reducer: register and heartbeat cost (${HOSTS} hosts x ${PER_HOST} instances)`,
    command: commandLine("bench/catalog-core.mjs"),
    params: { hosts: HOSTS, instancesPerHost: PER_HOST, rounds: ROUNDS, root: ROOT },
    figures: { registerUsPerInstance: reg, heartbeatUs: hb },
    tables: [
      {
        caption: `median of ${ROUNDS} rounds (each: a fresh reducer, every host registers, then 10 matching heartbeats per host)`,
        headers: ["path", "median", "min", "max"],
        rows: [
          ["register, µs per instance", fmt(med(reg), 2), fmt(Math.min(...reg), 2), fmt(Math.max(...reg), 2)],
          ["heartbeat (digest matches), µs per message", fmt(med(hb), 2), fmt(Math.min(...hb), 2), fmt(Math.max(...hb), 2)],
        ],
      },
    ],
    notes: ["In process; process CPU time (user + system, which includes GC on other threads) per operation, so time spent waiting for a core on the shared 2-core machine is not counted; medians of the rounds."],
  });
});
