#!/usr/bin/env node
// The JavaScript part of a catalog delta's cost in the gateway clients, without NATS: `--clients`
// catalog followers (gateway-client adapters/mirror.ts) in this process, each holding a service of
// `--instances` instances, are handed the same delta bytes (each its own copy, as each connection
// delivers its own) through the follower's delta handler, until `change` is emitted. The other
// half of the real cost, the NATS connection and its socket, is bench/mirror-delta-cost.mjs's
// `--floor`. `--old=<gateway-client dist/src of another build>` runs that build too, alternated.
// Drives a private method (the subscription callback's target): a benchmark, not an API.
//
//   node bench/mirror-delta-js.mjs [--clients=50] [--instances=2000] [--deltas=1000] [--rounds=3] [--old=<dir>]
import { fileURLToPath } from "node:url";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const CLIENTS = numberOption("clients", 50);
const INSTANCES = numberOption("instances", 2000);
const DELTAS = numberOption("deltas", 1000);
const ROUNDS = numberOption("rounds", 3);
const OLD = stringOption("old", "");
const here = fileURLToPath(new URL("../gateway-client/dist/src", import.meta.url));

/** A build's follower and schemas (the schemas its own node_modules resolve to). */
async function load(dir) {
  const { CatalogFollower } = await import(`${dir}/adapters/mirror.js`);
  const schemas = await import(`${dir}/../../../node_modules/roster-schemas/dist/src/index.js`);
  return { CatalogFollower, schemas };
}

const now = Date.now();
const instance = (i, status, t) => ({
  id: `svc-000-${String(i).padStart(6, "0")}`, service: "svc-000", host: `host-${i}`, address: "10.0.0.1", port: 8080, zone: "zone-1",
  tags: ["http", "v1"], meta: { version: "1.4.2", team: "core" }, weight: 100, status,
  checks: [{ id: "http-0", type: "http", status, output: "HTTP 200", since: t }], epoch: 1, registeredAt: now, updatedAt: t,
});

async function setup(dir) {
  const { CatalogFollower, schemas } = await load(dir);
  const snap = schemas.Snapshot.parse({ v: 1, kind: "snapshot", service: "svc-000", revision: INSTANCES, known: true, instances: Array.from({ length: INSTANCES }, (_, i) => instance(i, "passing", now)) });
  const clients = [];
  let changes = 0;
  for (let c = 0; c < CLIENTS; c++) {
    const f = new CatalogFollower({});
    f.ensure("svc-000");
    const st = f.states.get("svc-000");
    st.m.beginSync();
    st.m.onSnapshot(structuredClone(snap));
    f.on("change", () => changes++);
    clients.push({ f, st });
  }
  let revision = INSTANCES;
  let k = 0;
  // Deltas encoded beforehand (the registry's work, not the clients').
  const deltas = () =>
    Array.from({ length: DELTAS }, () => {
      const i = k % INSTANCES;
      const status = k++ % 2 ? "critical" : "passing";
      const d = { v: 1, kind: "delta", op: "put", service: "svc-000", instanceId: instance(i).id, revision: revision + 1, prevRevision: revision, instance: instance(i, status, now + k) };
      revision++;
      return schemas.encode(schemas.CatalogDelta, d);
    });
  /** µs per client per delta over DELTAS deltas. */
  const run = () => {
    const batch = deltas();
    const before = changes;
    const t0 = performance.now();
    for (const bytes of batch) for (const { f, st } of clients) f.onDelta(st, { data: Uint8Array.from(bytes) });
    const us = ((performance.now() - t0) * 1000) / (DELTAS * CLIENTS);
    if (changes - before !== DELTAS * CLIENTS) throw new Error(`${dir}: ${changes - before} changes, expected ${DELTAS * CLIENTS}`);
    return us;
  };
  run(); // warm-up
  return run;
}

const builds = [{ name: "this tree", run: await setup(here) }];
if (OLD) builds.push({ name: `old (${OLD})`, run: await setup(OLD) });
const results = new Map(builds.map((b) => [b, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const b of r % 2 === 0 ? builds : [...builds].reverse()) results.get(b).push(b.run());
}
printReport({
  title: `A catalog delta's JavaScript cost in ${CLIENTS} gateway followers of one process (${INSTANCES} instances, no NATS)`,
  command: commandLine("bench/mirror-delta-js.mjs"),
  params: { clients: CLIENTS, instances: INSTANCES, deltas: DELTAS, rounds: ROUNDS },
  tables: [
    {
      caption: `µs per client per delta, from the bytes (a copy per client) to the \`change\` listener; ${ROUNDS} alternated rounds`,
      headers: ["build", "median", "rounds"],
      rows: builds.map((b) => [b.name, fmt(percentile(results.get(b), 50), 2), results.get(b).map((x) => fmt(x, 2)).join(", ")]),
    },
  ],
});
process.exit(0);
