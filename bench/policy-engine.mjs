#!/usr/bin/env node
// The request path's cost with a traffic policy in force, through both front-ends: the same two
// upstream processes (tags v1 and v2) listed under two services, "plain" (no policy) and "pol"
// (subsets by tag, a 95/5 split, header routes, affinity by header, a rate limit far above the
// load, adaptive throttling, a static fallback), served by a stand-in catalog and policy responder
// on a real nats-server (gateway-throughput's). Closed loop, alternating legs per round; medians.
//
//   node bench/policy-engine.mjs [--concurrency=32] [--duration=2] [--rounds=3]
// Needs `npm run build` first.
import { connect } from "@nats-io/transport-node";
import { NatsServer } from "roster-testkit";
import { PolicySnapshot, encode, policySnapshotSubject } from "roster-schemas";
import { createGateway } from "roster-gateway-client";
import { closedLoop, median, startCatalog, startUpstream } from "./gateway-throughput.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { fmt } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = Boolean(process.env.BENCH_QUICK);
const CONCURRENCY = numberOption("concurrency", 32);
const DURATION_S = numberOption("duration", quick ? 1.5 : 2);
const ROUNDS = numberOption("rounds", quick ? 2 : 3);

const POLICY = {
  subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } },
  split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }],
  routes: [{ match: { headers: { "x-canary": "always" } }, subset: "canary" }],
  throttle: { adaptive: true },
  rateLimit: { perSecond: 1_000_000, burst: 1_000_000 },
  fallback: { status: 503, body: "later" },
};

/** Answers policy snapshot requests for `policies` ([service, policy | null]): a stand-in for the registry. */
export async function policyResponder(natsUrl, policies = [["plain", null], ["pol", POLICY]]) {
  const nc = await connect({ servers: natsUrl });
  for (const [service, policy] of policies) {
    nc.subscribe(policySnapshotSubject(service), { callback: (_e, msg) => msg.respond(encode(PolicySnapshot, { v: 1, kind: "policy-snapshot", service, revision: policy ? 1 : 0, policy })) });
  }
  await nc.flush();
  return nc;
}

async function main() {
  const nats = await NatsServer.start({ jetstream: false });
  const ups = [await startUpstream("u-v1"), await startUpstream("u-v2")];
  const instances = [];
  for (const service of ["plain", "pol"]) ups.forEach((u, i) => instances.push({ id: `${service}-${u.name}`, service, address: "127.0.0.1", port: u.port, tags: [i === 0 ? "v1" : "v2"] }));
  const responder = await policyResponder(nats.url);
  const catalog = await startCatalog(nats.url, instances);
  const gw = await createGateway({ nats: nats.url, services: ["plain", "pol"] });
  try {
    const t0 = Date.now();
    while (gw.policy("pol").revision !== 1 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
    if (gw.policy("pol").revision !== 1) throw new Error("policy not applied");
    for (const service of ["plain", "pol"]) {
      const res = await gw.request(service, { path: "/" });
      await res.body.dump();
      if (res.statusCode !== 200 || res.headers["x-roster-fallback"]) throw new Error(`${service}: status ${res.statusCode}, ${JSON.stringify(gw.policy(service).counters)}`);
    }
    const legs = {
      "request() plain": async () => {
        const res = await gw.request("plain", { path: "/" });
        await res.body.dump();
      },
      "request() policy": async () => {
        const res = await gw.request("pol", { path: "/" });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      },
      "fetch plain": async () => {
        const res = await fetch("http://plain/", { dispatcher: gw.dispatcher });
        await res.arrayBuffer();
      },
      "fetch policy": async () => {
        const res = await fetch("http://pol/", { dispatcher: gw.dispatcher });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`status ${res.status}`);
      },
    };
    const names = Object.keys(legs);
    for (const n of names) await closedLoop(legs[n], CONCURRENCY, 0.5);
    const results = Object.fromEntries(names.map((n) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? names : [...names].reverse();
      for (const n of order) {
        const res = await closedLoop(legs[n], CONCURRENCY, DURATION_S);
        results[n].push(res);
        process.stderr.write(`round ${r + 1} ${n}: ${res.rps.toFixed(0)} req/s p99 ${res.p99.toFixed(2)} ms CPU ${res.cpuUsPerReq.toFixed(1)} µs/req errors ${res.errors}\n`);
      }
    }
    process.stderr.write(`policy counters: ${JSON.stringify(gw.policy("pol").counters)} ${JSON.stringify(gw.policy("pol").liveSplit)}\n`);
    const row = (n) => [n, fmt(median(results[n].map((x) => x.rps)), 0), fmt(median(results[n].map((x) => x.p50)), 2), fmt(median(results[n].map((x) => x.p99)), 2), fmt(median(results[n].map((x) => x.cpuUsPerReq)), 1), String(results[n].reduce((a, x) => a + x.errors, 0))];
    printReport({
      title: "Request path with a traffic policy in force (both front-ends)",
      command: commandLine(),
      name: "policy-engine",
      tables: [{ caption: "Medians over rounds", headers: ["leg", "requests/s", "p50 ms", "p99 ms", "client CPU µs/req", "errors"], rows: names.map(row) }],
      notes: [
        `Policy: ${JSON.stringify(POLICY)}; "plain" has none. The canary share (5 %) of "pol" goes to the v2 process.`,
        "Client CPU is this process's user + system time per completed request; upstreams and nats-server are other processes on the same 2 cores.",
      ],
    });
  } finally {
    await gw.close();
    await catalog.close();
    await responder.close();
    for (const u of ups) await u.child.stop(5000);
    await nats.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
