#!/usr/bin/env node
// Traffic policy, what can be measured without the request engine:
//  1. split accuracy: 10,000 subset picks of the gateway's SubsetSplitter (the code a request runs),
//     many seeds, several splits, one with a subset down; the worst and median deviation from the
//     configured (or redistributed) share, against independent Math.random draws for reference;
//  2. propagation: PUT /v1/services/<svc>/policy on the registry (a real process) until the LAST of
//     `clients` real gateway clients (createGateway, each with its own NATS connection, in 2 forked
//     processes) has applied that revision in its policy mirror; p50/p99 over `puts` changes.
//
//   node bench/policy.mjs [--quick] [--clients=100] [--puts=100] [--rate=5] [--seeds=200]
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { PolicyDelta, decode, policySubject } from "roster-schemas";
import { NatsServer } from "roster-testkit";
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
const PUTS = numberOption("puts", quick ? 20 : 100);
const RATE = numberOption("rate", 5);
const SEEDS = numberOption("seeds", quick ? 50 : 200);
const PICKS = 10_000;
const SERVICE = "svc-policy";
const CLIENTS_SCRIPT = fileURLToPath(new URL("./lib/policy-clients.mjs", import.meta.url));

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
  const put = async (i) => {
    const body = { subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } }, split: [{ subset: "stable", weight: 100 - (i % 100) }, { subset: "canary", weight: i % 100 }] };
    const t = performance.timeOrigin + performance.now();
    const res = await fetch(`${registry.httpUrl}/v1/services/${SERVICE}/policy`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    if (res.status !== 200) throw new Error(`PUT answered ${res.status}: ${await res.text()}`);
    const { revision } = await res.json();
    return { t, revision, answeredAt: performance.timeOrigin + performance.now() };
  };
  // An observer on the delta subject: splits "PUT → delta on the wire" from "delta → every client".
  const observer = await connect({ servers: nats.url });
  defer(() => observer.close());
  const deltaSeen = new Map();
  observer.subscribe(policySubject(SERVICE), { callback: (_e, m) => {
    const r = decode(PolicyDelta, m.data);
    if (r.ok) deltaSeen.set(r.value.revision, performance.timeOrigin + performance.now());
  } });
  await observer.flush();
  await put(0);
  const procs = [];
  const per = [Math.ceil(CLIENTS / 2), Math.floor(CLIENTS / 2)].filter((n) => n > 0);
  for (const [i, n] of per.entries()) {
    const h = forkHelper(CLIENTS_SCRIPT, [`--nats=${nats.url}`, `--clients=${n}`, `--service=${SERVICE}`], `policy-clients-${i}`);
    defer(() => h.stop({ cmd: "close" }));
    procs.push(h);
  }
  await Promise.all(procs.map((h) => h.next("ready", 30_000, { seen: true })));
  procs.forEach((h) => h.send({ cmd: "create" }));
  const synced = await Promise.all(procs.map((h) => h.next("synced", 120_000)));
  progress(`${synced.reduce((a, s) => a + s.ready, 0)} gateway clients hold the policy`);
  await sleep(500);
  const sent = [];
  for (let i = 1; i <= PUTS; i++) {
    sent.push(await put(i));
    await sleep(1000 / RATE);
  }
  await sleep(1000);
  procs.forEach((h) => h.send({ cmd: "report" }));
  const reports = await Promise.all(procs.map((h) => h.next("report", 30_000)));
  const last = [];
  const first = [];
  const http = [];
  const toDelta = [];
  const deltaToLast = [];
  let incomplete = 0;
  for (const s of sent) {
    const all = reports.flatMap((r) => r.times[s.revision] ?? []);
    if (all.length < CLIENTS) incomplete++;
    if (all.length === 0) continue;
    last.push(Math.max(...all) - s.t);
    first.push(Math.min(...all) - s.t);
    http.push(s.answeredAt - s.t);
    const seen = deltaSeen.get(s.revision);
    if (seen !== undefined) {
      toDelta.push(seen - s.t);
      deltaToLast.push(Math.max(...all) - seen);
    }
  }
  return {
    last: summarize(last),
    first: summarize(first),
    http: summarize(http),
    toDelta: summarize(toDelta),
    deltaToLast: summarize(deltaToLast),
    incomplete,
    gaps: reports.reduce((a, r) => a + r.gaps, 0),
  };
}

await runBench("policy", quick ? 300 : 900, async () => {
  progress(`split accuracy: ${SEEDS} seeds x ${PICKS} picks per split`);
  const acc = splitAccuracy();
  progress(`propagation: ${CLIENTS} gateway clients, ${PUTS} PUTs at ${RATE}/s`);
  const p = await propagation();
  printReport({
    title: "Traffic policy: split accuracy and PUT → every gateway client",
    command: commandLine("bench/policy.mjs"),
    params: { clients: CLIENTS, puts: PUTS, rate: RATE, seeds: SEEDS, picks: PICKS },
    tables: [
      {
        caption: `Split accuracy over ${PICKS.toLocaleString("en")} picks: worst subset's deviation from its share, in percentage points, over ${SEEDS} seeds`,
        headers: ["split", "SubsetSplitter p50", "SubsetSplitter max", "independent random p50", "independent random max", "random > 1 point"],
        rows: acc.rows,
      },
      {
        caption: `PUT /v1/services/:name/policy → applied in the policy mirror of gateway clients (ms, ${PUTS} changes)`,
        headers: ["leg", "p50", "p90", "p99", "max"],
        rows: [
          ["PUT sent → delta seen by an observer (HTTP, validation, KV write, publish)", fmt(p.toDelta.p50, 2), fmt(p.toDelta.p90, 2), fmt(p.toDelta.p99, 2), fmt(p.toDelta.max, 2)],
          ["PUT sent → HTTP answer", fmt(p.http.p50, 2), fmt(p.http.p90, 2), fmt(p.http.p99, 2), fmt(p.http.max, 2)],
          [`delta seen by the observer → last of ${CLIENTS} clients applied it`, fmt(p.deltaToLast.p50, 2), fmt(p.deltaToLast.p90, 2), fmt(p.deltaToLast.p99, 2), fmt(p.deltaToLast.max, 2)],
          ["PUT sent → first of the clients applied it", fmt(p.first.p50, 2), fmt(p.first.p90, 2), fmt(p.first.p99, 2), fmt(p.first.max, 2)],
          [`PUT sent → last of ${CLIENTS} clients applied it`, fmt(p.last.p50, 2), fmt(p.last.p90, 2), fmt(p.last.p99, 2), fmt(p.last.max, 2)],
        ],
      },
    ],
    notes: [
      `changes that did not reach every client: ${p.incomplete}; policy gaps seen by the clients: ${p.gaps}`,
      "Times are from just before the HTTP PUT is sent (so they include the registry's HTTP handling, the KV write and the delta) to the client's `change` event, on one machine's clock.",
    ],
    figures: { split: acc.figures, propagation: p },
  });
});
