#!/usr/bin/env node
// Propagation: one instance's health flipped at its (simulated) agent, until EVERY one of 100
// real gateway clients' mirrors reflects it, and until every one of N HTTP blocking queries
// (`?index=&wait=`) has answered with it — at 10,000 and at 100,000 instances in the catalog.
//
//   node bench/propagation.mjs [--quick] [--sizes=10000,100000] [--clients=100] [--flips=250]
//
// Each size is one run of bench/gateway-fanout.mjs (real processes: nats-server, the registry,
// a simulated fleet speaking the real agent wire, client processes each holding real
// roster-gateway-client instances, and a process of HTTP watchers), with 50 services whose
// instances are spread over `size / 50` simulated hosts; flips touch svc-000 only; each client
// mirrors svc-000 and svc-001 (svc-000 alone above 20,000 instances, created 5 at a time per process:
// see argsFor). Writes bench/results/propagation.json (both sizes) besides each
// run's own propagation-<size>.json.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { fmt } from "./lib/stats.mjs";
import { machineInfo, markdownTable } from "./lib/table.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const SIZES = stringOption("sizes", quick ? "10000" : "10000,100000").split(",").map(Number);
const CLIENTS = numberOption("clients", quick ? 20 : 100);
const FLIPS = numberOption("flips", quick ? 50 : 250);
const SERVICES = 50;
const RATE = 10;
// xDS (ADS) streams on the flipped service, held during the flips: one more column (0 = none).
const XDS_STREAMS = numberOption("xds-streams", 100);

function argsFor(size) {
  const big = size > 20_000;
  const watchers = quick ? 5 : big ? 10 : 20;
  const httpRate = big ? 4 : 5;
  return [
    `--clients=${CLIENTS}`,
    "--procs=2",
    `--services=${SERVICES}`,
    `--replicas=${Math.round(size / SERVICES)}`,
    "--flip-services=1",
    `--client-services=${big ? 1 : 2}`,
    `--rate=${RATE}`,
    `--flip-seconds=${Math.ceil(FLIPS / RATE)}`,
    `--steady-seconds=${quick ? 1 : 3}`,
    `--watchers=${watchers}`,
    ...(XDS_STREAMS > 0 ? [`--xds-streams=${XDS_STREAMS}`] : []),
    `--http-rate=${httpRate}`,
    `--http-seconds=${Math.ceil(FLIPS / httpRate)}`,
    // 100 clients asking at once for 2 snapshots of 2,000 instances each (3 pages) did not converge
    // here, created 50 or 5 at a time per process: requests time out and are retried faster than the
    // registry and the 2 client processes get through them (docs/BENCHMARKS.md, Findings). With one
    // service each (svc-000, the flipped one), 5 at a time, they sync in ~2 s.
    ...(big ? ["--concurrency=5"] : []),
  ];
}

let child = null;
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    // The run cleans up on its own signal.
    if (child?.exitCode === null) child.kill(sig);
    else process.exit(130);
  });
}

const runs = [];
for (const size of SIZES) {
  const args = argsFor(size);
  const name = `propagation-${size}`;
  progress(`propagation: ${size} instances: node bench/gateway-fanout.mjs ${args.join(" ")}`);
  child = spawn(process.execPath, ["bench/gateway-fanout.mjs", ...args], { cwd: root, env: { ...process.env, BENCH_SCENARIO: name, BENCH_QUICK: "" }, stdio: ["ignore", "inherit", "inherit"] });
  const { code, signal } = await new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  if (signal === "SIGINT" || signal === "SIGTERM" || code === 130) process.exit(130);
  let result = null;
  try {
    result = JSON.parse(readFileSync(new URL(`./results/${name}.json`, import.meta.url), "utf8"));
  } catch {
    // no result: the run failed
  }
  runs.push({ size, args, code, result: code === 0 ? result : null });
}

const row = (r) => {
  const f = r.result?.figures;
  if (!f) return [r.size, `failed (exit ${r.code})`, "", "", "", "", "", "", "", "", "", ""];
  const p = f.propagation.everyClient;
  const h = f.http?.everyWatcher;
  const x = f.xds?.everyStream;
  return [r.size, f.clients, `${p.n}`, fmt(p.p50, 1), fmt(p.p99, 1), fmt(p.max, 1), h ? `${h.n} (${f.http.watchers} watchers)` : "n/a", h ? fmt(h.p50, 1) : "", h ? fmt(h.p99, 1) : "", h ? fmt(h.max, 1) : "", x ? `${x.n} (${f.xds.streams} streams, ${f.xds.loadProcs ?? 1} load procs)` : "n/a", x ? `${fmt(x.p50, 1)} / ${fmt(x.p99, 1)}` : ""];
};
const m = machineInfo();
const out = [
  "### Propagation: health flip at the agent → every client",
  "",
  `Command: \`${commandLine("bench/propagation.mjs")}\``,
  "",
  markdownTable(["machine", "cores", "memory", "node", "nats-server", "date (UTC)", "load avg"], [[m.cpu, m.cores, `${m.memoryGiB} GiB`, m.node, m.natsServer, m.date, m.loadavg]]),
  "",
  "**Time from the agent's health message to the LAST gateway client's mirror / the LAST HTTP blocking query / the LAST xDS stream reflecting it (ms), per transition**",
  "",
  markdownTable(["instances", "gateway clients", "flips seen by all", "clients p50", "clients p99", "clients max", "HTTP flips seen by all", "HTTP p50", "HTTP p99", "HTTP max", "xDS flips seen by all", "xDS p50 / p99"], runs.map(row)),
  "",
  ...runs.map((r) => `- ${r.size} instances: \`node bench/gateway-fanout.mjs ${r.args.join(" ")}\`${r.result ? `; fleet registered in ${fmt(r.result.figures.registerMs / 1000, 1)} s, ${r.result.figures.clients} clients synced in ${fmt(r.result.figures.syncMs / 1000, 1)} s` : ""}`),
  "",
];
process.stdout.write(out.join("\n") + "\n");
writeFileSync(new URL("./results/propagation.json", import.meta.url), JSON.stringify({ scenario: "propagation", machine: m, command: commandLine("bench/propagation.mjs"), params: { sizes: SIZES, clients: CLIENTS, flips: FLIPS, services: SERVICES, rate: RATE }, runs }, null, 2) + "\n");
process.exit(runs.every((r) => r.code === 0) ? 0 : 1);
