#!/usr/bin/env node
// The request path's cost with a traffic policy in force, through both front-ends (gw.request()
// and fetch() with gw.dispatcher): the same two upstream processes (tags v1 and v2) listed under
// three services: "plain" (no policy), "pol" (subsets by tag, a 50/50 split, a header route,
// affinity by header: each request carries one of 1,000 user ids) and "full" (the same, plus
// adaptive throttling, a rate limit far above the load and a static fallback: the admission
// checks). Every leg spreads its requests evenly over the two processes, so the legs differ only
// by the policy's work. A stand-in catalog and policy responder on a real nats-server
// (gateway-throughput's). Closed loop, the legs alternated in each round (order reversed every
// other round); medians over rounds. Client CPU per request is the figure that isolates the cost.
//
//   node bench/policy-engine.mjs [--concurrency=32] [--duration=2] [--rounds=5]
// Needs `npm run build` first.
import { connect } from "@nats-io/transport-node";
import { NatsServer } from "roster-testkit";
import { PolicySnapshot, encode, policySnapshotSubject } from "roster-schemas";
import { createGateway } from "roster-gateway-client";
import { alternatedRounds, median, startCatalog, startUpstream } from "./gateway-throughput.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { fmt } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = Boolean(process.env.BENCH_QUICK);
const CONCURRENCY = numberOption("concurrency", 32);
const DURATION_S = numberOption("duration", quick ? 1.5 : 2);
const ROUNDS = numberOption("rounds", quick ? 2 : 5);

/** Split + route + affinity. */
const POLICY = {
  subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } },
  split: [{ subset: "stable", weight: 50 }, { subset: "canary", weight: 50 }],
  routes: [{ match: { headers: { "x-canary": "always" } }, subset: "canary" }],
  affinity: { header: "x-user-id" },
};
/** The same, with the admission checks and a fallback. */
const FULL = {
  ...POLICY,
  throttle: { adaptive: true },
  rateLimit: { perSecond: 1_000_000, burst: 1_000_000 },
  fallback: { status: 503, body: "later" },
};
const SERVICES = [["plain", null], ["pol", POLICY], ["full", FULL]];

/** Answers policy snapshot requests for `policies` ([service, policy | null]): a stand-in for the registry. */
export async function policyResponder(natsUrl, policies = SERVICES) {
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
  for (const [service] of SERVICES) ups.forEach((u, i) => instances.push({ id: `${service}-${u.name}`, service, address: "127.0.0.1", port: u.port, tags: [i === 0 ? "v1" : "v2"] }));
  const responder = await policyResponder(nats.url);
  const catalog = await startCatalog(nats.url, instances);
  const gw = await createGateway({ nats: nats.url, services: SERVICES.map(([s]) => s) });
  try {
    const t0 = Date.now();
    const applied = () => SERVICES.every(([s, p]) => gw.policy(s).revision === (p ? 1 : 0) && gw.policy(s).known);
    while (!applied() && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
    if (!applied()) throw new Error("policies not applied");
    // Every leg sends the same headers: a user id of 1,000 (the affinity key where a policy has one).
    let n = 0;
    const headers = () => ({ "x-user-id": `u${n++ % 1000}` });
    const viaRequest = (service) => async () => {
      const res = await gw.request(service, { path: "/", headers: headers() });
      await res.body.dump();
      if (res.statusCode !== 200 || res.headers["x-roster-fallback"]) throw new Error(`status ${res.statusCode}`);
    };
    const viaFetch = (service) => async () => {
      const res = await fetch(`http://${service}/`, { dispatcher: gw.dispatcher, headers: headers() });
      await res.arrayBuffer();
      if (res.status !== 200 || res.headers.get("x-roster-fallback")) throw new Error(`status ${res.status}`);
    };
    const label = { plain: "no policy", pol: "split + route + affinity", full: "split + route + affinity + throttle, rate limit, fallback" };
    const legs = {};
    for (const [front, via] of [["request()", viaRequest], ["fetch", viaFetch]]) for (const [s] of SERVICES) legs[`${front} ${label[s]}`] = via(s);
    for (const [s] of SERVICES) await legs[`request() ${label[s]}`]();
    const names = Object.keys(legs);
    const results = await alternatedRounds(legs, { rounds: ROUNDS, concurrency: CONCURRENCY, seconds: DURATION_S });
    for (const s of ["pol", "full"]) process.stderr.write(`${s} counters: ${JSON.stringify(gw.policy(s).counters)} ${JSON.stringify(gw.policy(s).liveSplit)}\n`);
    const row = (n) => [n, fmt(median(results[n].map((x) => x.rps)), 0), fmt(median(results[n].map((x) => x.p50)), 2), fmt(median(results[n].map((x) => x.p99)), 2), fmt(median(results[n].map((x) => x.cpuUsPerReq)), 1), String(results[n].reduce((a, x) => a + x.errors, 0))];
    printReport({
      title: "Request path with a traffic policy in force (both front-ends)",
      command: commandLine("bench/policy-engine.mjs"),
      name: "policy-engine",
      tables: [{ caption: "Medians over rounds", headers: ["leg", "requests/s", "p50 ms", "p99 ms", "client CPU µs/req", "errors"], rows: names.map(row) }],
      notes: [
        `split + route + affinity: ${JSON.stringify(POLICY)}; the full one adds ${JSON.stringify({ throttle: FULL.throttle, rateLimit: FULL.rateLimit, fallback: FULL.fallback })}. Every request carries x-user-id (one of 1,000); each leg spreads over both upstream processes.`,
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
