#!/usr/bin/env node
// A driver for profiling the client side of the gateway request path: one upstream in a
// child process, a closed loop of `gw.request` (or of a raw undici Pool, --mode=pool) for
// a fixed time, then the client's CPU time per request (user + system, this process only).
//
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/gateway-profile.mjs [--mode=gateway|pool|pool-signal|pool-header|pool-both] [--concurrency=32] [--duration=5]
//   node bench/gateway-profile.mjs --summary=/tmp/prof/<file>.cpuprofile   (top self-time functions)
//
// Needs `npm run build` first.
import { readFileSync } from "node:fs";
import { stringOption, numberOption } from "./lib/options.mjs";

function summarize(file, top = 40) {
  const prof = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = prof.timeDeltas;
  for (let i = 0; i < prof.samples.length; i++) {
    const n = byId.get(prof.samples[i]);
    const cf = n.callFrame;
    const key = `${cf.functionName || "(anonymous)"} ${cf.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/main\//, "")}:${cf.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, v] of rows) console.log(`${((v / total) * 100).toFixed(1).padStart(5)} %  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`);
}

async function main() {
  const { startUpstream, startCatalog, closedLoop } = await import("./gateway-throughput.mjs");
  const { NatsServer } = await import("@roster/testkit");
  const { createGateway } = await import("@roster/gateway-client");
  const { Pool } = await import("undici");
  const mode = stringOption("mode", "gateway");
  const concurrency = numberOption("concurrency", 32);
  const duration = numberOption("duration", 5);
  const nats = await NatsServer.start({ jetstream: false });
  const up = await startUpstream("single");
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: up.port }]);
  const gw = await createGateway({ nats: nats.url, services: ["bench"] });
  const pool = new Pool(`http://127.0.0.1:${up.port}`, { connections: 64 });
  try {
    // pool-signal / pool-header / pool-both: a raw Pool plus what the gateway must add to
    // every request (an abort source undici listens to, the deadline header), to tell that
    // cost apart from the gateway's own code.
    const { AbortHandle } = await import("../gateway-client/dist/src/adapters/timeouts.js");
    const rawOnce = (signal, header) => async () => {
      const res = await pool.request({ path: "/", method: "GET", headers: header ? { "x-roster-deadline-ms": "10000" } : undefined, signal: signal ? new AbortHandle() : undefined });
      await res.body.dump();
    };
    const modes = {
      pool: rawOnce(false, false),
      "pool-signal": rawOnce(true, false),
      "pool-header": rawOnce(false, true),
      "pool-both": rawOnce(true, true),
      gateway: async () => {
        const res = await gw.request("bench", { path: "/" });
        await res.body.dump();
      },
    };
    const once = modes[mode];
    if (!once) throw new Error(`--mode: one of ${Object.keys(modes).join(", ")}`);
    await closedLoop(once, concurrency, 1);
    const cpu0 = process.cpuUsage();
    const r = await closedLoop(once, concurrency, duration);
    const cpu = process.cpuUsage(cpu0);
    const us = (cpu.user + cpu.system) / r.n;
    console.log(`${mode}: ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms, client CPU ${us.toFixed(1)} µs/request (${r.n} requests)`);
  } finally {
    await gw.close();
    await pool.close();
    await catalog.close();
    await up.child.stop(5000);
    await nats.close();
  }
}

const summary = stringOption("summary", "");
if (summary) summarize(summary, numberOption("top", 40));
else
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
