#!/usr/bin/env node
// What a snapshot costs the registry after one instance of a large service changed: every page of
// the new revision served once (the cache miss a herd of resyncing clients triggers), and a page
// served again at the same revision (a hit). In process (CatalogMemory + SnapshotPages of a build),
// so builds can be compared in one run on a busy machine: rounds alternate between the roots.
//
//   node bench/snapshot-encode.mjs [--instances=2000] [--changes=200] [--rounds=5]
//        [--roots=<checkout>,<checkout>]   (built checkouts; default: this one)
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const INSTANCES = numberOption("instances", 2000);
const CHANGES = numberOption("changes", 200);
const ROUNDS = numberOption("rounds", 5);
const ROOTS = stringOption("roots", new URL("..", import.meta.url).pathname)
  .split(",")
  .map((r) => resolve(r));

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** The fanout bench's instance shape (bench/lib/fanout-agent.mjs). */
const epoch = Date.now();
const record = (i, status = "passing") => ({
  id: `svc-000-h${String(i).padStart(5, "0")}`,
  service: "svc-000",
  host: `h${i}`,
  address: "10.0.0.1",
  port: 8000 + (i % 1000),
  tags: ["bench"],
  meta: {},
  weight: 100,
  status,
  checks: [{ id: "http-0", type: "http", status, since: epoch }],
  epoch,
  registeredAt: epoch,
  updatedAt: epoch,
});

async function load(root) {
  const { SnapshotPages } = await import(pathToFileURL(resolve(root, "registry/dist/src/adapters/nats/snapshot-pages.js")).href);
  // Builds before per-instance fragments took a view function (and a revision reader).
  const fragments = Object.getOwnPropertyDescriptor(SnapshotPages.prototype, "instancesEncoded") !== undefined;
  return (memory) => (fragments ? new SnapshotPages(memory) : new SnapshotPages((s) => memory.service(s), undefined, (s) => memory.serviceRevision(s)));
}

function round(makePages, CatalogMemory) {
  const memory = new CatalogMemory();
  let rev = 0;
  for (let i = 0; i < INSTANCES; i++) memory.load("svc-000", record(i).id, ++rev, record(i));
  const sp = makePages(memory);
  const pagesOf = () => JSON.parse(new TextDecoder().decode(sp.page("svc-000", 0))).pages;
  const pages = pagesOf();
  for (let p = 1; p < pages; p++) sp.page("svc-000", p);
  let t = cpuUs();
  for (let k = 0; k < CHANGES; k++) {
    const i = (k * 37) % INSTANCES;
    memory.apply("svc-000", record(i).id, ++rev, record(i, k % 2 ? "passing" : "critical"));
    for (let p = 0; p < pages; p++) sp.page("svc-000", p);
  }
  const missMs = (cpuUs() - t) / CHANGES / 1000;
  const hits = 10_000;
  t = cpuUs();
  for (let k = 0; k < hits; k++) sp.page("svc-000", k % pages);
  const hitUs = (cpuUs() - t) / hits;
  return { missMs, hitUs, pages };
}

await runBench("snapshot-encode", 600, async () => {
  defer(() => undefined);
  const builds = [];
  for (const root of ROOTS) {
    const { CatalogMemory } = await import(pathToFileURL(resolve(root, "registry/dist/src/adapters/store/catalog-memory.js")).href);
    builds.push({ root, makePages: await load(root), CatalogMemory, miss: [], hit: [], pages: 0 });
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const b of builds) {
      const x = round(b.makePages, b.CatalogMemory);
      b.miss.push(x.missMs);
      b.hit.push(x.hitUs);
      b.pages = x.pages;
    }
  }
  const med = (xs) => percentile(xs, 50);
  printReport({
    title: `Snapshot pages of a ${INSTANCES}-instance service after one instance changed`,
    command: commandLine("bench/snapshot-encode.mjs"),
    params: { instances: INSTANCES, changes: CHANGES, rounds: ROUNDS },
    figures: Object.fromEntries(builds.map((b) => [b.root, { missMs: b.miss, hitUs: b.hit }])),
    tables: [
      {
        caption: `median of ${ROUNDS} rounds, builds alternating (process CPU time)`,
        headers: ["build", "pages", "one change, then every page served once (ms)", "a page served again at the same revision (µs)"],
        rows: builds.map((b) => [b.root, b.pages, fmt(med(b.miss), 2), fmt(med(b.hit), 2)]),
      },
    ],
    notes: ["In process: CatalogMemory + SnapshotPages of each build; the bench fleet's instance shape (bench/lib/fanout-agent.mjs)."],
  });
});
