#!/usr/bin/env node
// Traffic policy under failure and overload, through gw.request (stand-in catalog and policy
// responder on a real nats-server, as bench/policy-engine.mjs):
//  1. a failing canary: 3 stable upstream processes + 1 canary answering 503 to everything, a 95/5
//     split; the share of caller-visible failures with no retries, with the gateway's retries (a
//     retry leaves the canary subset, which has no other instance), with a fallback, and with the
//     split moved back to 100/0;
//  2. throttling: one upstream that can take `capacity` req/s (over it: 503 at once), offered
//     `rate` req/s open loop for `seconds`, with and without adaptive throttling: its goodput, the
//     requests it received, the callers' latency.
//
//   node bench/policy-overload.mjs [--requests=4000] [--capacity=300] [--rate=1000] [--seconds=5]
import { createServer } from "node:http";
import { NatsServer } from "roster-testkit";
import { createGateway } from "roster-gateway-client";
import { startCatalog, startUpstream } from "./gateway-throughput.mjs";
import { policyResponder } from "./policy-engine.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const REQUESTS = numberOption("requests", 4000);
const CAPACITY = numberOption("capacity", 300);
const RATE = numberOption("rate", 1000);
const SECONDS = numberOption("seconds", 5);

function listen(handler) {
  const srv = createServer(handler);
  srv.keepAliveTimeout = 60_000;
  return new Promise((r) => srv.listen(0, "127.0.0.1", () => r({ srv, port: srv.address().port })));
}

const canarySubsets = { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } };
const CANARY = [
  ["can-noretry", { subsets: canarySubsets, split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }], retries: { max: 0 } }, "95/5, no retries"],
  ["can-retry", { subsets: canarySubsets, split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }] }, "95/5, the gateway's retries (2)"],
  ["can-fallback", { subsets: canarySubsets, split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }], retries: { max: 0 }, fallback: { status: 200, body: "{}" } }, "95/5, no retries, static fallback"],
  ["can-back", { subsets: canarySubsets, split: [{ subset: "stable", weight: 100 }, { subset: "canary", weight: 0 }], retries: { max: 0 } }, "split moved back to 100/0, no retries"],
];
const THROTTLE = [
  ["thr-off", { retries: { max: 0 } }, "no throttling"],
  ["thr-on", { retries: { max: 0 }, throttle: { adaptive: true } }, "adaptive throttling (k = 2)"],
];

async function main() {
  const nats = await NatsServer.start({ jetstream: false });
  const stable = [await startUpstream("s0"), await startUpstream("s1"), await startUpstream("s2")];
  const canary = await listen((req, res) => {
    req.resume();
    res.statusCode = 503;
    res.end("canary broken");
  });
  // Capacity: a token bucket of CAPACITY/s (burst 1/10 s); over it the request is refused at once.
  let tokens = CAPACITY / 10;
  let last = performance.now();
  let received = 0;
  let served = 0;
  const small = await listen((req, res) => {
    req.resume();
    received++;
    const now = performance.now();
    tokens = Math.min(CAPACITY / 10, tokens + ((now - last) / 1000) * CAPACITY);
    last = now;
    if (tokens >= 1) {
      tokens--;
      served++;
      res.end("ok");
    } else {
      res.statusCode = 503;
      res.end("busy");
    }
  });
  const instances = [];
  for (const [service] of CANARY) {
    stable.forEach((u, i) => instances.push({ id: `${service}-s${i}`, service, address: "127.0.0.1", port: u.port, tags: ["v1"] }));
    instances.push({ id: `${service}-c`, service, address: "127.0.0.1", port: canary.port, tags: ["v2"] });
  }
  for (const [service] of THROTTLE) instances.push({ id: `${service}-u`, service, address: "127.0.0.1", port: small.port });
  const all = [...CANARY, ...THROTTLE];
  const responder = await policyResponder(nats.url, all.map(([s, p]) => [s, p]));
  const catalog = await startCatalog(nats.url, instances);
  const gw = await createGateway({ nats: nats.url, services: all.map(([s]) => s) });
  try {
    const t0 = Date.now();
    while (all.some(([s]) => gw.policy(s).revision !== 1) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
    const canaryRows = [];
    for (const [service, , label] of CANARY) {
      let failed = 0;
      let fallbacks = 0;
      let n = 0;
      const worker = async () => {
        while (n++ < REQUESTS) {
          try {
            const res = await gw.request(service, { path: "/" });
            await res.body.dump();
            if (res.headers["x-roster-fallback"]) fallbacks++;
            else if (res.statusCode !== 200) failed++;
          } catch {
            failed++;
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      canaryRows.push([label, String(REQUESTS), fmt((100 * failed) / REQUESTS, 2), fmt((100 * fallbacks) / REQUESTS, 2)]);
      process.stderr.write(`${label}: ${failed} failed, ${fallbacks} fallbacks\n`);
    }
    const throttleRows = [];
    for (const [service, , label] of THROTTLE) {
      received = served = 0;
      const latencies = [];
      let ok = 0;
      let refused = 0;
      let local = 0;
      const interval = 1000 / RATE;
      const start = performance.now();
      const pending = [];
      for (let i = 0; i < RATE * SECONDS; i++) {
        const due = start + i * interval;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        const t = performance.now();
        pending.push(
          gw.request(service, { path: "/" }).then(
            async (res) => {
              await res.body.dump();
              latencies.push(performance.now() - t);
              if (res.statusCode === 200) ok++;
              else refused++;
            },
            (err) => {
              latencies.push(performance.now() - t);
              if (err?.code === "ROSTER_THROTTLED") local++;
              else refused++;
            },
          ),
        );
      }
      await Promise.all(pending);
      const elapsed = (performance.now() - start) / 1000;
      throttleRows.push([label, fmt(RATE * SECONDS / elapsed, 0), fmt(served / elapsed, 0), fmt(received / elapsed, 0), fmt((100 * local) / (RATE * SECONDS), 1), fmt((100 * refused) / (RATE * SECONDS), 1), fmt(percentile(latencies, 50), 2), fmt(percentile(latencies, 99), 2)]);
      process.stderr.write(`${label}: ok ${ok} refused ${refused} local ${local} received ${received}\n`);
      await new Promise((r) => setTimeout(r, 2000));
    }
    printReport({
      title: "Traffic policy: a failing canary, and an upstream offered 3x its capacity",
      name: "policy-overload",
      command: commandLine("bench/policy-overload.mjs"),
      tables: [
        { caption: `Failing canary (every canary answer is 503), ${REQUESTS} requests each, 16 callers`, headers: ["policy", "requests", "caller-visible failures %", "fallback answers %"], rows: canaryRows },
        { caption: `One upstream taking ${CAPACITY} req/s (503 at once above), offered ${RATE} req/s for ${SECONDS} s`, headers: ["client", "offered req/s", "upstream goodput req/s", "upstream received req/s", "rejected locally %", "refused by upstream %", "caller p50 ms", "caller p99 ms"], rows: throttleRows },
      ],
      notes: ["gw.request in this process; the stable upstreams are processes, the canary and the small upstream are HTTP servers in this process (cheap answers)."],
    });
  } finally {
    await gw.close();
    await catalog.close();
    await responder.close();
    for (const u of stable) await u.child.stop(5000);
    canary.srv.close();
    small.srv.close();
    canary.srv.closeAllConnections();
    small.srv.closeAllConnections();
    await nats.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
