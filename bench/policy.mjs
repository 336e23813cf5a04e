#!/usr/bin/env node
// Traffic policy, what can be measured without the request engine:
//  1. split accuracy: 10,000 subset picks of the gateway's SubsetSplitter (the code a request runs),
//     many seeds, several splits, one with a subset down; the worst and median deviation from the
//     configured (or redistributed) share, against independent Math.random draws for reference;
//  2. propagation, beside a health change, to the same clients in the same run: PUT
//     /v1/services/<svc>/policy on the registry (a real process), and half a period later a health
//     flip sent by an agent (fake agents of `hosts` instances of the service, one NATS connection:
//     bench/lib/fanout-agent.mjs), each until the LAST of `clients` real gateway clients
//     (createGateway, each with its own NATS connection, in 2 forked processes) has applied it
//     (policy mirror, catalog mirror). An observer splits the legs: trigger → the registry's KV
//     write → the delta → the last client. p50/p99 over `puts` changes of each kind.
//
//   node bench/policy.mjs [--quick] [--clients=100] [--puts=100] [--rate=5] [--hosts=200] [--serving] [--seeds=200]
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { CATALOG_BUCKET, POLICY_BUCKET, catalogSubject, policySubject } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import { Pool } from "undici";
import { SubsetSplitter } from "../gateway-client/dist/src/core/policy/index.js";
import { forkHelper } from "./lib/fork-helper.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const CLIENTS = numberOption("clients", quick ? 20 : 100);
/** Policy changes, and as many health flips. */
const CHANGES = numberOption("puts", quick ? 20 : 100);
/** Changes of each kind per second. */
const RATE = numberOption("rate", 5);
/** Instances of the service (one per fake host). */
const HOSTS = numberOption("hosts", quick ? 50 : 200);
/**
 * --serving: each gateway has served the service (its balancers and policy traffic exist), so a
 * change is applied in the request engine too before the client's `change` event, as in a process
 * that sends requests; without it only the mirrors apply it (like bench/gateway-fanout.mjs).
 */
const SERVING = process.argv.includes("--serving");
const SEEDS = numberOption("seeds", quick ? 50 : 200);
const PICKS = 10_000;
// The fake agents' first service (bench/lib/fanout-agent.mjs names them svc-000 ...).
const SERVICE = "svc-000";
const CLIENTS_SCRIPT = fileURLToPath(new URL("./lib/policy-clients.mjs", import.meta.url));
const AGENT_SCRIPT = fileURLToPath(new URL("./lib/fanout-agent.mjs", import.meta.url));
const hiresNow = () => performance.timeOrigin + performance.now();

/** mulberry32, as in the unit tests: reproducible starts. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function splitAccuracy() {
  const cases = [
    { name: "95/5", split: [{ subset: "a", weight: 95 }, { subset: "b", weight: 5 }], down: [] },
    { name: "50/50", split: [{ subset: "a", weight: 50 }, { subset: "b", weight: 50 }], down: [] },
    { name: "60/30/10", split: [{ subset: "a", weight: 60 }, { subset: "b", weight: 30 }, { subset: "c", weight: 10 }], down: [] },
    { name: "60/30/10, b down", split: [{ subset: "a", weight: 60 }, { subset: "b", weight: 30 }, { subset: "c", weight: 10 }], down: ["b"] },
  ];
  const rows = [];
  const figures = {};
  for (const c of cases) {
    const usable = (s) => !c.down.includes(s);
    const total = c.split.filter((e) => usable(e.subset)).reduce((a, e) => a + e.weight, 0);
    const want = Object.fromEntries(c.split.map((e) => [e.subset, usable(e.subset) ? (100 * e.weight) / total : 0]));
    const devSplitter = [];
    const devRandom = [];
    for (let seed = 1; seed <= SEEDS; seed++) {
      const s = new SubsetSplitter(c.split, seeded(seed));
      const counts = {};
      for (let i = 0; i < PICKS; i++) {
        const p = s.pick(usable).subset;
        counts[p] = (counts[p] ?? 0) + 1;
      }
      devSplitter.push(Math.max(...c.split.map((e) => Math.abs((100 * (counts[e.subset] ?? 0)) / PICKS - want[e.subset]))));
      // Reference: independent draws (what Math.random-per-request would give).
      const rnd = seeded(seed + 1_000_000);
      const rc = {};
      for (let i = 0; i < PICKS; i++) {
        let r = rnd() * total;
        for (const e of c.split) {
          if (!usable(e.subset)) continue;
          r -= e.weight;
          if (r < 0) {
            rc[e.subset] = (rc[e.subset] ?? 0) + 1;
            break;
          }
        }
      }
      devRandom.push(Math.max(...c.split.map((e) => Math.abs((100 * (rc[e.subset] ?? 0)) / PICKS - want[e.subset]))));
    }
    const a = summarize(devSplitter);
    const b = summarize(devRandom);
    const over = devRandom.filter((d) => d > 1).length;
    rows.push([c.name, fmt(a.p50, 3), fmt(a.max, 3), fmt(b.p50, 3), fmt(b.max, 3), `${over}/${SEEDS}`]);
    figures[c.name] = { splitterMedianPoints: a.p50, splitterWorstPoints: a.max, randomMedianPoints: b.p50, randomWorstPoints: b.max, randomOverOnePoint: over };
  }
  return { rows, figures };
}

async function propagation() {
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const registry = await startRegistry({ natsUrl: nats.url });
  defer(() => registry.stop());
  // A keep-alive connection, like an operator's client that already has one: "PUT sent" is when
  // the request is handed to it (fetch() would add about a millisecond of its own per call).
  const http = new Pool(registry.httpUrl, { connections: 1 });
  defer(() => http.close());
  const put = async (i) => {
    // A canary moving its weights (the subsets stay); no instance is in the canary subset.
    const body = { subsets: { stable: { tags: ["bench"] }, canary: { tags: ["bench"], meta: { version: "2" } } }, split: [{ subset: "stable", weight: 100 - (i % 100) }, { subset: "canary", weight: i % 100 }] };
    const t = hiresNow();
    const res = await http.request({ path: `/v1/services/${SERVICE}/policy`, method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`PUT answered ${res.statusCode}: ${text}`);
    return { i, t, revision: JSON.parse(text).revision, answeredAt: hiresNow() };
  };
  // An observer on every leg before the clients: the trigger as sent (agent health message), the
  // registry's KV write as it left the registry, and the delta it published.
  const observer = await connect({ servers: nats.url });
  defer(() => observer.close());
  const json = (m) => {
    try {
      return JSON.parse(new TextDecoder().decode(m.data));
    } catch {
      return undefined; // a KV delete marker has no body
    }
  };
  const tap = (subject, onMessage) => observer.subscribe(subject, { callback: (_e, m) => onMessage(json(m), hiresNow()) });
  const policyKvSeen = []; // when each of the registry's KV writes passed (PUTs are sequential: the first after a PUT is its own)
  const policyDeltaSeen = new Map(); // revision → when the delta passed
  const healthKvSeen = new Map(); // "sentAt=..." → when the registry's KV write passed
  const catalogDeltas = new Map(); // revision → { sentAt, seenAt } of a flip's delta
  const instancesSeen = new Set();
  tap(`$KV.${POLICY_BUCKET}.${SERVICE}`, (_r, at) => policyKvSeen.push(at));
  tap(policySubject(SERVICE), (d, at) => {
    if (d?.kind === "policy-delta" && !policyDeltaSeen.has(d.revision)) policyDeltaSeen.set(d.revision, at);
  });
  tap(`$KV.${CATALOG_BUCKET}.>`, (r, at) => {
    const out = r?.checks?.[0]?.output;
    if (typeof out === "string" && out.startsWith("sentAt=") && !healthKvSeen.has(out)) healthKvSeen.set(out, at);
  });
  tap(catalogSubject(SERVICE), (d, at) => {
    if (d?.instanceId) instancesSeen.add(d.instanceId);
    const hit = /^sentAt=([\d.]+)$/.exec(d?.instance?.checks?.[0]?.output ?? "");
    if (hit && !catalogDeltas.has(d.revision)) catalogDeltas.set(d.revision, { sentAt: Number(hit[1]), seenAt: at });
  });
  await observer.flush();

  // The service's instances: `hosts` fake agents (one NATS connection), health flipped on demand.
  const agent = forkHelper(AGENT_SCRIPT, [`--nats=${nats.url}`, `--hosts=${HOSTS}`, "--services=1"], "policy-agent");
  defer(() => agent.stop({ cmd: "stop" }));
  await agent.next("ready", 15_000, { seen: true });
  agent.send({ cmd: "register" });
  await waitFor(() => instancesSeen.size >= HOSTS, { timeoutMs: 60_000, intervalMs: 50, what: `${HOSTS} instances registered` });
  await put(0);

  const procs = [];
  const per = [Math.ceil(CLIENTS / 2), Math.floor(CLIENTS / 2)].filter((n) => n > 0);
  for (const [i, n] of per.entries()) {
    const h = forkHelper(CLIENTS_SCRIPT, [`--nats=${nats.url}`, `--clients=${n}`, `--service=${SERVICE}`, `--serving=${SERVING}`], `policy-clients-${i}`);
    defer(() => h.stop({ cmd: "close" }));
    procs.push(h);
  }
  await Promise.all(procs.map((h) => h.next("ready", 30_000, { seen: true })));
  procs.forEach((h) => h.send({ cmd: "create" }));
  const synced = await Promise.all(procs.map((h) => h.next("synced", 120_000)));
  progress(`${synced.reduce((a, s) => a + s.ready, 0)} gateway clients hold the policy and ${HOSTS} instances`);
  await sleep(500);

  // The same clients, the same moments: a policy change, then half a period later a health flip.
  const flipsBefore = new Set(catalogDeltas.keys());
  const sent = [];
  const half = 1000 / RATE / 2;
  for (let i = 1; i <= CHANGES; i++) {
    const due = performance.now() + 2 * half;
    sent.push(await put(i));
    await sleep(Math.max(0, due - half - performance.now()));
    agent.send({ cmd: "flip", rate: 1, seconds: 1 }); // exactly one flip, sent at once
    await agent.next("flipped", 10_000);
    await sleep(Math.max(0, due - performance.now()));
  }
  await sleep(1000);
  procs.forEach((h) => h.send({ cmd: "report" }));
  const reports = await Promise.all(procs.map((h) => h.next("report", 30_000)));

  /** The legs of one change: trigger → KV write → delta → first/last client. */
  const legs = () => ({ toKv: [], toDelta: [], deltaToLast: [], first: [], last: [], incomplete: 0 });
  const add = (into, { t, kvAt, deltaAt, all }) => {
    if (all.length < CLIENTS) into.incomplete++;
    if (kvAt !== undefined) into.toKv.push(kvAt - t);
    if (deltaAt !== undefined) into.toDelta.push(deltaAt - t);
    if (all.length === 0) return;
    const last = Math.max(...all);
    into.first.push(Math.min(...all) - t);
    into.last.push(last - t);
    if (deltaAt !== undefined) into.deltaToLast.push(last - deltaAt);
  };
  const policy = legs();
  const answers = [];
  for (const s of sent) {
    answers.push(s.answeredAt - s.t);
    add(policy, { t: s.t, kvAt: policyKvSeen.find((at) => at >= s.t), deltaAt: policyDeltaSeen.get(s.revision), all: reports.flatMap((r) => r.times[s.revision] ?? []) });
  }
  const health = legs();
  for (const [revision, f] of catalogDeltas) {
    if (flipsBefore.has(revision)) continue;
    add(health, { t: f.sentAt, kvAt: healthKvSeen.get(`sentAt=${f.sentAt.toFixed(3)}`), deltaAt: f.seenAt, all: reports.flatMap((r) => r.catalogTimes[revision] ?? []) });
  }
  const summarized = (l) => Object.fromEntries(Object.entries(l).map(([k, v]) => [k, Array.isArray(v) ? summarize(v) : v]));
  return {
    policy: { ...summarized(policy), http: summarize(answers) },
    health: summarized(health),
    gaps: reports.reduce((a, r) => a + r.gaps, 0),
    catalogResyncs: reports.reduce((a, r) => a + r.catalogResyncs, 0),
  };
}

await runBench("policy", quick ? 300 : 900, async () => {
  progress(`split accuracy: ${SEEDS} seeds x ${PICKS} picks per split`);
  const acc = splitAccuracy();
  progress(`propagation: ${CLIENTS} gateway clients, ${HOSTS} instances; ${CHANGES} policy PUTs and ${CHANGES} health flips, ${RATE}/s each, interleaved`);
  const p = await propagation();
  const pair = (a, b) => [fmt(a?.p50, 2), fmt(a?.p99, 2), fmt(b?.p50, 2), fmt(b?.p99, 2)];
  printReport({
    title: "Traffic policy: split accuracy, and PUT → every gateway client beside a health flip",
    command: commandLine("bench/policy.mjs"),
    params: { clients: CLIENTS, puts: CHANGES, rate: RATE, hosts: HOSTS, serving: SERVING, seeds: SEEDS, picks: PICKS },
    tables: [
      {
        caption: `Split accuracy over ${PICKS.toLocaleString("en")} picks: worst subset's deviation from its share, in percentage points, over ${SEEDS} seeds`,
        headers: ["split", "SubsetSplitter p50", "SubsetSplitter max", "independent random p50", "independent random max", "random > 1 point"],
        rows: acc.rows,
      },
      {
        caption: `A policy change (PUT /v1/services/:name/policy) and a health flip (agent → registry), to the same ${CLIENTS} gateway clients (${SERVING ? "serving: applied in the request engine" : "mirrors only"}) in the same run (ms; ${CHANGES} of each, interleaved; ${HOSTS} instances)`,
        headers: ["leg", "policy p50", "policy p99", "health p50", "health p99"],
        rows: [
          ["sent (PUT / agent's health message) → the registry's KV write seen by an observer", ...pair(p.policy.toKv, p.health.toKv)],
          ["sent → delta seen by the observer", ...pair(p.policy.toDelta, p.health.toDelta)],
          [`delta seen by the observer → last of ${CLIENTS} clients applied it`, ...pair(p.policy.deltaToLast, p.health.deltaToLast)],
          ["sent → first client applied it", ...pair(p.policy.first, p.health.first)],
          [`sent → last of ${CLIENTS} clients applied it`, ...pair(p.policy.last, p.health.last)],
          ["PUT sent → its HTTP answer", fmt(p.policy.http.p50, 2), fmt(p.policy.http.p99, 2), "", ""],
        ],
      },
    ],
    notes: [
      `changes that did not reach every client: policy ${p.policy.incomplete}, health ${p.health.incomplete} (of ${p.health.toDelta.n} flips seen); policy gaps seen by the clients: ${p.gaps}; catalog resyncs after the first sync: ${p.catalogResyncs}`,
      "Times are wall-clock (performance.timeOrigin + performance.now()) on one machine, from just before the PUT is handed to a keep-alive undici Pool (so they include the registry's HTTP handling, validation, the KV write and the delta) or from the agent's publish (the send time travels in the check's output), to the client's `change` event, which fires after the gateway's own listeners (policy runtime, balancers) ran. The observer is one more subscriber: the server may serve clients before it, so a delta → last leg can be small or negative.",
    ],
    figures: { split: acc.figures, propagation: p },
  });
});
