#!/usr/bin/env node
// One slow instance among five: how much of the tail it costs with p2c-peak-ewma vs
// round-robin. Five node:http upstreams, each its own child process; one adds a fixed
// delay to every response. Closed loop at fixed concurrency through gw.request, rounds
// alternated between the two balancers, medians reported.
//
//   node bench/gateway-slow-instance.mjs [--concurrency=32] [--duration=4] [--rounds=3] [--slow-ms=25]
//
// Needs `npm run build` first.
import { NatsServer } from "roster-testkit";
import { createGateway } from "roster-gateway-client";
import { numberOption, commandLine } from "./lib/options.mjs";
import { fmt } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";
import { closedLoop, median, startCatalog, startUpstream } from "./gateway-throughput.mjs";

const quick = Boolean(process.env.BENCH_QUICK);
const CONCURRENCY = numberOption("concurrency", 32);
const DURATION_S = numberOption("duration", quick ? 2 : 4);
const ROUNDS = numberOption("rounds", 3);
const SLOW_MS = numberOption("slow-ms", 25);
const BALANCERS = ["p2c-peak-ewma", "round-robin"];

async function main() {
  const nats = await NatsServer.start({ jetstream: false });
  const ups = [];
  for (let i = 0; i < 5; i++) ups.push(await startUpstream(`u${i}`, i === 0 ? SLOW_MS : 0));
  const catalog = await startCatalog(
    nats.url,
    ups.map((u) => ({ id: u.name, service: "bench", address: "127.0.0.1", port: u.port })),
  );
  const gateways = {};
  for (const b of BALANCERS) gateways[b] = await createGateway({ nats: nats.url, services: ["bench"], balancer: b });
  try {
    const results = Object.fromEntries(BALANCERS.map((b) => [b, []]));
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? BALANCERS : [...BALANCERS].reverse();
      for (const b of order) {
        const gw = gateways[b];
        let toSlow = 0;
        let total = 0;
        const once = async () => {
          const res = await gw.request("bench", { path: "/" });
          await res.body.dump();
          total++;
          if (res.headers["x-upstream"] === "u0") toSlow++;
        };
        await closedLoop(once, CONCURRENCY, 0.5); // warm-up: the balancer learns latencies
        toSlow = 0;
        total = 0;
        const res = await closedLoop(once, CONCURRENCY, DURATION_S);
        res.slowShare = total ? toSlow / total : NaN;
        delete res.latencies;
        results[b].push(res);
        process.stderr.write(`round ${r + 1} ${b}: ${res.rps.toFixed(0)} req/s p50 ${res.p50.toFixed(2)} p99 ${res.p99.toFixed(2)} p99.9 ${res.p999.toFixed(2)} ms, slow share ${(res.slowShare * 100).toFixed(1)} %\n`);
      }
    }
    const rows = BALANCERS.map((b) => {
      const rs = results[b];
      return [
        b,
        fmt(median(rs.map((x) => x.rps)), 0),
        fmt(median(rs.map((x) => x.p50)), 2),
        fmt(median(rs.map((x) => x.p99)), 2),
        fmt(median(rs.map((x) => x.p999)), 2),
        `${fmt(median(rs.map((x) => x.slowShare * 100)), 1)} %`,
        String(rs.reduce((s, x) => s + x.errors, 0)),
      ];
    });
    printReport({
      title: `One instance of five slowed by ${SLOW_MS} ms: p2c-peak-ewma vs round-robin`,
      command: commandLine("bench/gateway-slow-instance.mjs"),
      params: { concurrency: CONCURRENCY, duration: `${DURATION_S}s`, rounds: ROUNDS, "slow-ms": SLOW_MS, upstreams: "5 child processes" },
      tables: [{ caption: "Medians over rounds", headers: ["balancer", "requests/s", "p50 ms", "p99 ms", "p99.9 ms", "share to slow instance", "errors"], rows }],
      notes: [
        "No failures are injected: the slow instance is never ejected; only latency-aware balancing keeps traffic off it.",
        "Closed loop at the same concurrency for both: with round-robin every fifth request waits for the slow instance, which also caps its throughput.",
      ],
    });
  } finally {
    for (const gw of Object.values(gateways)) await gw.close();
    await catalog.close();
    for (const u of ups) await u.child.stop(5000);
    await nats.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
