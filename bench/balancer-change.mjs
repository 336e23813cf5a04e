#!/usr/bin/env node
// What one catalog change costs a gateway that routes, per balancer: the change applied to the
// service's ServiceBalancer (this tree: `updateInstance`, as the gateway does for a delta; a build
// without it: `setInstances` with the whole list) plus the first pick after it, which rebuilds the
// candidate sets (and, for ring hash, the ring). In-process, `--instances` endpoints, each change
// flips one instance passing ↔ critical. `--old=<gateway-client dist/src of another build>` runs
// that build too, alternated.
//
//   node bench/balancer-change.mjs [--instances=2000] [--changes=300] [--rounds=3] [--old=<dir>]
import { fileURLToPath } from "node:url";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const INSTANCES = numberOption("instances", 2000);
const CHANGES = numberOption("changes", 300);
const ROUNDS = numberOption("rounds", 3);
const OLD = stringOption("old", "");
const BALANCERS = ["p2c-peak-ewma", "least-request", "round-robin", "random", "ring-hash"];
const here = fileURLToPath(new URL("../gateway-client/dist/src", import.meta.url));

const now0 = Date.now();
const instance = (i, status) => ({
  id: `i-${i}`, service: "s", host: `h-${i}`, address: `10.0.${i >> 8}.${i & 255}`, port: 80, zone: `z${i % 3}`,
  tags: ["a"], meta: {}, weight: 100, status, checks: [], epoch: 1, registeredAt: now0, updatedAt: now0,
});

async function setup(dir) {
  const { ServiceBalancer } = await import(`${dir}/core/service-balancer.js`);
  return (balancer) => {
    const b = new ServiceBalancer({ balancer });
    const list = Array.from({ length: INSTANCES }, (_, i) => instance(i, "passing"));
    b.setInstances(list, 1);
    b.pick({ now: 2, hashKey: "k" });
    const incremental = typeof b.updateInstance === "function";
    let t = 3;
    let k = 0;
    /** µs per change + first pick. */
    return () => {
      const t0 = performance.now();
      for (let r = 0; r < CHANGES; r++, t++, k++) {
        const i = k % INSTANCES;
        list[i] = instance(i, Math.floor(k / INSTANCES) % 2 === 0 ? "critical" : "passing");
        if (incremental) b.updateInstance(list[i].id, list[i], t);
        else b.setInstances(list, t);
        b.pick({ now: t, hashKey: `key-${r}` });
      }
      return ((performance.now() - t0) * 1000) / CHANGES;
    };
  };
}

const builds = [{ name: "this tree", make: await setup(here) }];
if (OLD) builds.push({ name: `old (${OLD})`, make: await setup(OLD) });
const rows = [];
for (const balancer of BALANCERS) {
  const runs = builds.map((b) => ({ b, run: b.make(balancer), results: [] }));
  for (const r of runs) r.run(); // warm-up
  for (let round = 0; round < ROUNDS; round++) for (const r of round % 2 === 0 ? runs : [...runs].reverse()) r.results.push(r.run());
  rows.push([balancer, ...runs.map((r) => fmt(percentile(r.results, 50), 0))]);
}
printReport({
  title: `One catalog change + the first pick after it, ${INSTANCES} instances (µs, median of ${ROUNDS} alternated rounds of ${CHANGES})`,
  command: commandLine("bench/balancer-change.mjs"),
  params: { instances: INSTANCES, changes: CHANGES, rounds: ROUNDS },
  tables: [{ headers: ["balancer", ...builds.map((b) => b.name)], rows }],
});
