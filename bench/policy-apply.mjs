#!/usr/bin/env node
// A serving gateway's CPU per change of one service, in process: what the gateway runs for a health
// change (the service-wide balancer, then the policy's subset balancers: PolicyTraffic.setInstances)
// and for a policy change (the policy mirror's `change` event: PolicyRuntimes → PolicyTraffic), with
// `instances` instances, a 2-subset policy in force. Builds given with --builds (repository roots,
// comma-separated; default this checkout) are loaded side by side and alternated per round, so a
// before/after comparison is made in one process on one machine state. Medians over rounds.
//
//   node bench/policy-apply.mjs [--instances=200] [--rounds=9] [--changes=2000] [--builds=/path/a,/path/b]
// Needs `npm run build` first (in each build).
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = Boolean(process.env.BENCH_QUICK) || process.argv.includes("--quick");
const N = numberOption("instances", 200);
const ROUNDS = numberOption("rounds", quick ? 3 : 9);
const CHANGES = numberOption("changes", quick ? 500 : 2000);
const here = resolve(fileURLToPath(new URL("..", import.meta.url)));
const BUILDS = stringOption("builds", here).split(",").map((b) => resolve(b));

const instance = (i, status = "passing") => ({ id: `h${i}-s0`, service: "svc", address: `127.0.${i >> 8}.${(i & 255) + 1}`, port: 20_000, zone: `zone-${i % 3}`, tags: ["bench"], meta: {}, weight: 100, status, checks: [{ id: "http-0", type: "http", status, since: 1 }] });
const policyDoc = (k, canary = { tags: ["bench"], meta: { version: "2" } }) => ({ subsets: { stable: { tags: ["bench"] }, canary }, split: [{ subset: "stable", weight: 100 - (k % 100) }, { subset: "canary", weight: k % 100 }] });

/** One gateway's balancing state for one service, from a build's modules. */
async function gatewayOf(root) {
  const load = (p) => import(`${root}/gateway-client/dist/src/${p}`);
  const [{ PolicyMirror }, { PolicyTraffic }, { ServiceBalancer }, { Policy }] = await Promise.all([load("adapters/policy-mirror.js"), load("adapters/policy-traffic.js"), load("core/service-balancer.js"), import(`${root}/schemas/dist/src/index.js`)]);
  const mirror = new PolicyMirror();
  const traffic = new PolicyTraffic(mirror, { balancer: "p2c-peak-ewma", tryTimeout: 2000, deadline: 10_000, maxRetries: 2 }, {}, Math.random, { redistributed() {} }, undefined);
  const service = new ServiceBalancer({}, Math.random);
  let instances = Array.from({ length: N }, (_, i) => instance(i));
  let revision = 0;
  const setPolicy = (doc) => mirror.emit("change", "svc", { service: "svc", revision: ++revision, policy: doc ? Policy.parse(doc) : null, fromLastKnownGood: false });
  const health = (k) => {
    // As the catalog mirror does: a new object for the changed instance, the others kept.
    const i = k % N;
    instances = instances.slice();
    instances[i] = instance(i, k % 2 ? "critical" : "passing");
    service.setInstances(instances, Date.now());
    traffic.setInstances("svc", instances);
  };
  health(0);
  traffic.inForce("svc");
  return {
    // Each leg sets its own starting policy, so legs can run in any order.
    legs: {
      "health change, no policy": { before: () => setPolicy(null), run: health },
      "health change, policy in force": { before: () => setPolicy(policyDoc(0)), run: health },
      "policy change: weights only": { before: () => setPolicy(policyDoc(0)), run: (k) => setPolicy(policyDoc(k)) },
      "policy change: a subset's selector": { before: () => setPolicy(policyDoc(0)), run: (k) => setPolicy(policyDoc(k, { tags: ["bench"], meta: { version: String(k % 2) } })) },
    },
  };
}

const gateways = [];
for (const root of BUILDS) gateways.push({ root, gw: await gatewayOf(root) });
const legNames = Object.keys(gateways[0].gw.legs);
const results = new Map(); // `${root} ${leg}` → µs per change, per round
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? gateways : [...gateways].reverse();
  for (const { root, gw } of order) {
    for (const leg of legNames) {
      const { before, run } = gw.legs[leg];
      before();
      for (let k = 1; k <= 100; k++) run(k); // warm
      const t0 = process.cpuUsage();
      for (let k = 1; k <= CHANGES; k++) run(k);
      const cpu = process.cpuUsage(t0);
      const key = `${root} ${leg}`;
      if (!results.has(key)) results.set(key, []);
      results.get(key).push((cpu.user + cpu.system) / CHANGES);
    }
  }
}

const rows = [];
for (const leg of legNames) for (const { root } of gateways) rows.push([leg, root === here ? "this checkout" : root, fmt(percentile(results.get(`${root} ${leg}`), 50), 1), fmt(Math.min(...results.get(`${root} ${leg}`)), 1)]);
printReport({
  title: "A serving gateway's CPU per change of one service (health or policy), in process",
  command: commandLine("bench/policy-apply.mjs"),
  name: "policy-apply",
  params: { instances: N, rounds: ROUNDS, changes: CHANGES, builds: BUILDS.join(",") },
  tables: [{ caption: `µs of CPU per change, ${N} instances, median (and best) over ${ROUNDS} rounds`, headers: ["change", "build", "µs per change (median)", "best round"], rows }],
  notes: [
    "A health change: the service-wide balancer's setInstances (what the gateway does for every service), then PolicyTraffic.setInstances (the policy's subset balancers; without a policy, one balancer for the whole service). A policy change: the policy mirror's change event, as a delta or snapshot emits it (after its decode).",
    "Builds are alternated per round in one process; the figure is the process's user + system CPU per change.",
  ],
});
