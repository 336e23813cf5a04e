#!/usr/bin/env node
// The registry's side of a policy change: PUT /v1/services/:name/policy sent → its delta seen on
// the wire by an observer, and → the HTTP answer. One registry (a real process, on its own
// nats-server) per build given with --builds (repository roots, comma-separated; default this
// checkout); PUTs alternate between the builds, so a before/after comparison shares the machine's
// moments. Each PUT goes through a keep-alive undici Pool and through fetch() (which adds its own
// client-side cost). No gateway clients: bench/policy.mjs measures the whole path.
//
//   node bench/policy-put.mjs [--puts=200] [--gap-ms=20] [--builds=/path/a,/path/b]
// Needs `npm run build` first (in each build).
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { policySubject } from "roster-schemas";
import { NatsServer } from "roster-testkit";
import { Pool } from "undici";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = Boolean(process.env.BENCH_QUICK) || process.argv.includes("--quick");
const PUTS = numberOption("puts", quick ? 40 : 200);
const GAP_MS = numberOption("gap-ms", 20);
const here = resolve(fileURLToPath(new URL("..", import.meta.url)));
const BUILDS = stringOption("builds", here).split(",").map((b) => resolve(b));
const SERVICE = "svc-put";
const now = () => performance.timeOrigin + performance.now();

await runBench("policy-put", 300 + PUTS, async () => {
  const sides = [];
  for (const root of BUILDS) {
    const nats = await NatsServer.start();
    defer(() => nats.close());
    const registry = await startRegistry({ natsUrl: nats.url, bin: `${root}/registry/bin/roster-registry.js` });
    defer(() => registry.stop());
    const observer = await connect({ servers: nats.url });
    defer(() => observer.close());
    const deltas = [];
    observer.subscribe(policySubject(SERVICE), { callback: () => deltas.push(now()) });
    await observer.flush();
    const pool = new Pool(registry.httpUrl, { connections: 1 });
    defer(() => pool.close());
    sides.push({ root, registry, pool, deltas, legs: { pool: { delta: [], answer: [] }, fetch: { delta: [], answer: [] } } });
  }
  const body = (i) => JSON.stringify({ subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } }, split: [{ subset: "stable", weight: 100 - (i % 100) }, { subset: "canary", weight: i % 100 }] });
  const put = async (side, i, client) => {
    const seen = side.deltas.length;
    const t = now();
    if (client === "pool") {
      const res = await side.pool.request({ path: `/v1/services/${SERVICE}/policy`, method: "PUT", headers: { "content-type": "application/json" }, body: body(i) });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`PUT answered ${res.statusCode}`);
    } else {
      const res = await fetch(`${side.registry.httpUrl}/v1/services/${SERVICE}/policy`, { method: "PUT", headers: { "content-type": "application/json" }, body: body(i) });
      await res.text();
      if (res.status !== 200) throw new Error(`PUT answered ${res.status}`);
    }
    const answeredAt = now();
    for (let k = 0; k < 200 && side.deltas.length === seen; k++) await sleep(1);
    return { delta: side.deltas[seen] - t, answer: answeredAt - t };
  };
  for (let i = 0; i < 10; i++) for (const s of sides) for (const c of ["pool", "fetch"]) await put(s, i, c); // warm
  for (let i = 0; i < PUTS; i++) {
    for (const s of i % 2 ? sides : [...sides].reverse()) {
      for (const c of ["pool", "fetch"]) {
        const r = await put(s, i, c);
        s.legs[c].delta.push(r.delta);
        s.legs[c].answer.push(r.answer);
        await sleep(GAP_MS);
      }
    }
  }
  const rows = [];
  const figures = {};
  for (const s of sides) {
    for (const c of ["pool", "fetch"]) {
      const d = summarize(s.legs[c].delta);
      const a = summarize(s.legs[c].answer);
      const build = s.root === here ? "this checkout" : s.root;
      rows.push([build, c === "pool" ? "undici Pool (keep-alive)" : "fetch()", fmt(d.p50, 2), fmt(d.p90, 2), fmt(d.p99, 2), fmt(a.p50, 2)]);
      figures[`${build} ${c}`] = { toDelta: d, toAnswer: a };
    }
  }
  printReport({
    title: "Policy PUT → its delta on the wire (the registry's side), builds alternated",
    command: commandLine("bench/policy-put.mjs"),
    params: { puts: PUTS, gapMs: GAP_MS, builds: BUILDS.join(",") },
    tables: [{ caption: `ms over ${PUTS} PUTs per build and client`, headers: ["build", "client", "PUT → delta p50", "p90", "p99", "PUT → answer p50"], rows }],
    notes: ["Times from just before the request is handed to the client to the observer's callback (the delta) or the end of the answer's body; one machine's clock."],
    figures,
  });
});
