#!/usr/bin/env node
// Micro-benchmark of the pure core's hot path: ServiceBalancer.pick() per balancer at 10,
// 100 and 1,000 endpoints, and the full per-try cycle pick + onStart + onResult.
// Runs over the compiled core (build first: `npx tsc -b` from the repo root):
//   node gateway-client/bench/pick.bench.mjs [--rounds 7] [--ops 200000]
// Prints a markdown table (median of the rounds, ns/op) and the machine it ran on.
// Not part of `npm test`: numbers are never asserted.
import os from "node:os";
import { ServiceBalancer } from "../dist/src/core/service-balancer.js";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg("rounds", 7);
const OPS = arg("ops", 200_000);
const SIZES = [10, 100, 1000];
const BALANCERS = ["p2c-peak-ewma", "least-request", "round-robin", "random", "ring-hash"];

function instances(n) {
  return Array.from({ length: n }, (_, i) => ({
    id: `i${i}`,
    service: "svc",
    host: `h${i % 50}`,
    address: `10.0.${i >> 8}.${i & 255}`,
    port: 8080,
    zone: i % 3 === 0 ? "z1" : "z2",
    tags: [],
    meta: {},
    weight: 100 + (i % 5) * 50,
    status: "passing",
    checks: [],
    epoch: 1,
    registeredAt: 0,
    updatedAt: 0,
  }));
}

const KEYS = Array.from({ length: 4096 }, (_, i) => `user-${i}`);

function setup(balancer, n) {
  const b = new ServiceBalancer({ balancer, slowStart: { windowMs: 0 } });
  b.setInstances(instances(n), 0);
  // Seed latency estimates so peak-EWMA compares real costs.
  for (let i = 0; i < n; i++) {
    b.onStart(`i${i}`, 0);
    b.onResult(`i${i}`, { kind: "success", latencyMs: 1 + (i % 7) }, 0);
  }
  return b;
}

function runPick(b, ops, t0) {
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const r = b.pick({ now: t0 + (i >> 10), hashKey: KEYS[i & 4095] });
    if (r.ok) sink += r.endpoint.port;
  }
  const ns = Number(process.hrtime.bigint() - start);
  if (sink === -1) console.log(sink);
  return ns / ops;
}

function runCycle(b, ops, t0) {
  const ok = { kind: "success", latencyMs: 2 };
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const now = t0 + (i >> 10);
    const r = b.pick({ now, hashKey: KEYS[i & 4095] });
    if (!r.ok) continue;
    b.onStart(r.endpoint.id, now);
    b.onResult(r.endpoint.id, ok, now);
  }
  return Number(process.hrtime.bigint() - start) / ops;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function measure(fn) {
  const results = {};
  for (const name of BALANCERS) {
    results[name] = {};
    for (const n of SIZES) {
      const b = setup(name, n);
      fn(b, Math.min(OPS, 50_000), 1); // warm-up (JIT)
      const rounds = [];
      for (let r = 0; r < ROUNDS; r++) rounds.push(fn(b, OPS, 1000 + r * 1000));
      results[name][n] = median(rounds);
    }
  }
  return results;
}

function table(title, results) {
  const lines = [`**${title}** (ns/op, median of ${ROUNDS} rounds × ${OPS.toLocaleString("en")} ops)`, ""];
  lines.push(`| balancer | ${SIZES.map((n) => `${n.toLocaleString("en")} endpoints`).join(" | ")} |`);
  lines.push(`| --- | ${SIZES.map(() => "---:").join(" | ")} |`);
  for (const name of BALANCERS) lines.push(`| ${name} | ${SIZES.map((n) => results[name][n].toFixed(0)).join(" | ")} |`);
  return lines.join("\n");
}

const pick = measure(runPick);
const cycle = measure(runCycle);
console.log(`Machine: ${os.cpus()[0]?.model ?? "unknown"} × ${os.cpus().length}, ${os.platform()} ${os.release()}, Node ${process.version}\n`);
console.log(table("pick()", pick));
console.log("");
console.log(table("pick() + onStart() + onResult()", cycle));
