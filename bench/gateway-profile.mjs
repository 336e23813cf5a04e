#!/usr/bin/env node
// Where the client's CPU goes on the gateway request path: one upstream in a child process,
// a closed loop for a fixed time, then this process's CPU time (user + system) per request.
//
// Without --mode, every client in turn, alternated over rounds, medians as a markdown table:
//   pool          raw undici Pool (the gateway's Pool options)
//   pool-signal   + an abort source undici listens to (the gateway's AbortHandle)
//   pool-header   + the x-roster-deadline-ms header
//   pool-header-short  + the same header under an 11-character name (what a rename would save)
//   pool-both     + both: what any client with per-try timeouts and deadline propagation pays
//   gateway       gw.request (no deadline set: no header, as most calls; a deadline set adds what pool-header shows)
// With --mode=<one of them>, that client only (for a profile):
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/gateway-profile.mjs --mode=gateway [--seconds=5]
//   node bench/gateway-profile.mjs --summary=/tmp/prof/<file>.cpuprofile   (top self-time functions)
//
//   node bench/gateway-profile.mjs [--concurrency=32] [--seconds=3] [--rounds=3]
//
// (--seconds, not --duration: run-all's quick mode sets BENCH_DURATION for longer benchmarks.)
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
  const { startUpstream, startCatalog, closedLoop, alternatedRounds } = await import("./gateway-throughput.mjs");
  const { NatsServer } = await import("roster-testkit");
  const { createGateway, parsePolicy } = await import("roster-gateway-client");
  const { Pool } = await import("undici");
  const { printReport } = await import("./lib/table.mjs");
  const { commandLine } = await import("./lib/options.mjs");
  const { fmt, percentile } = await import("./lib/stats.mjs");
  const mode = stringOption("mode", "");
  const concurrency = numberOption("concurrency", 32);
  const quick = Boolean(process.env.BENCH_QUICK);
  const seconds = numberOption("seconds", mode ? 5 : quick ? 1 : 3);
  const rounds = numberOption("rounds", quick ? 2 : 3);
  const nats = await NatsServer.start({ jetstream: false });
  const up = await startUpstream("single");
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: up.port }]);
  const gw = await createGateway({ nats: nats.url, services: ["bench"] });
  const { gatewayPoolOptions, rawPoolModes } = await import("./lib/request-path.mjs");
  const pool = new Pool(`http://127.0.0.1:${up.port}`, gatewayPoolOptions(parsePolicy));
  try {
    // pool-signal / pool-header / pool-both: a raw Pool plus what the gateway must add to
    // every request, to tell that cost apart from the gateway's own code.
    const modes = {
      ...rawPoolModes(pool),
      gateway: async () => {
        const res = await gw.request("bench", { path: "/" });
        await res.body.dump();
      },
    };
    if (mode) {
      const once = modes[mode];
      if (!once) throw new Error(`--mode: one of ${Object.keys(modes).join(", ")}`);
      await closedLoop(once, concurrency, 1);
      const r = await closedLoop(once, concurrency, seconds);
      console.log(`${mode}: ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms, client CPU ${r.cpuUsPerReq.toFixed(1)} µs/request (${r.n} requests)`);
      return;
    }
    const names = Object.keys(modes);
    const runs = await alternatedRounds(modes, { rounds, concurrency, seconds });
    const med = (xs) => percentile(xs, 50);
    const base = med(runs.pool.map((x) => x.cpuUsPerReq));
    printReport({
      title: "Client CPU per request: raw undici Pool, plus what every gateway try carries, and gw.request",
      command: commandLine("bench/gateway-profile.mjs"),
      params: { concurrency, seconds: `${seconds}s`, rounds, alternated: "yes" },
      tables: [
        {
          caption: "Medians over rounds",
          headers: ["client", "requests/s", "client CPU µs/req", "vs raw µs/req"],
          rows: names.map((n) => {
            const cpu = med(runs[n].map((x) => x.cpuUsPerReq));
            return [n, fmt(med(runs[n].map((x) => x.rps)), 0), fmt(cpu, 2), fmt(cpu - base, 2)];
          }),
        },
      ],
      notes: [
        "pool-both is a raw Pool with an abort source and the deadline header: what a client with per-try timeouts and deadline propagation pays when it does both through undici's public options. The gateway's tries take undici's own abort (no signal) and carry the header only when the request's deadline was set (not here): gateway minus pool is the gateway's own code (pick, bookkeeping, slot, timeout queue), and a deadline set adds about what pool-header does.",
        "CPU time of this process only (the upstream and nats-server are other processes); differences under ~0.5 µs are within the noise of a shared 2-core machine.",
      ],
    });
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
