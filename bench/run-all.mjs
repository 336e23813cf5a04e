#!/usr/bin/env node
// Runs the benchmark scenarios in sequence and prints their output (markdown on stdout,
// progress on stderr), then a summary. `npm run bench` calls it.
//
//   node bench/run-all.mjs [--quick] [--list] [scenario...]
//   npm run bench -- [--quick] [scenario...]
//
// A scenario is a script with its arguments (the table below): several scenarios may run the
// same script with other parameters (`storm` is registry-load with 1,000 agents x 100
// instances, `chaos` is gateway-faults with nginx and the draining fault). A name that is not
// a scenario keeps scripts whose path contains it (the old behaviour). --quick runs each with
// its short parameters (the whole quick run takes a few minutes). Each scenario writes
// bench/results/<name>.json (machine, versions, command, parameters, figures); each is bounded
// by its own deadline, and by a hard limit here as well. Ctrl-C stops the running one, which
// cleans up what it started.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { markdownTable } from "./lib/table.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const filters = args.filter((a) => !a.startsWith("--"));

/** name → script, full arguments, quick arguments, what it shows, hard limit (minutes). */
export const SCENARIOS = [
  { name: "propagation", script: "bench/propagation.mjs", args: [], quickArgs: ["--quick"], what: "health flip at an agent → every gateway client's mirror and every HTTP blocking query, 10,000 and 100,000 instances" },
  { name: "storm", script: "bench/registry-load.mjs", args: ["--hosts=1000", "--instances=100", "--services=100", "--sims=4", "--duration=180", "--settle=3", "--tail=45"], quickArgs: ["--hosts=200", "--instances=100", "--services=100", "--sims=2", "--duration=3", "--settle=1"], what: "registration storm: 1,000 agents x 100 instances at once" },
  { name: "ingest", script: "bench/heartbeat-ingest.mjs", args: [], quickArgs: ["--quick"], what: "highest heartbeat rate with registry processing lag p99 < 10 ms; CPU at 1,000 and 10,000 hosts" },
  { name: "proxy-hop", script: "bench/proxy-hop.mjs", args: [], quickArgs: ["--quick"], what: "gateway client vs nginx vs raw undici to 3 upstreams" },
  { name: "chaos", script: "bench/gateway-faults.mjs", args: ["--clients=gateway,nginx,naive", "--faults=kill,hang,503,slow,drain"], quickArgs: ["--clients=gateway,nginx,naive", "--faults=kill,hang,503,drain", "--warmup=1", "--fault=2", "--settle-after=0.5", "--quick"], what: "steady load under kill -9, SIGSTOP, 503, slow, draining: gateway vs nginx vs naive" },
  { name: "catalog-http", script: "bench/catalog-http.mjs", args: [], quickArgs: ["--quick"], what: "GET /v1/services/:name/instances with and without If-None-Match; RSS of 10,000 blocking queries" },
  { name: "catalog-memory", script: "bench/catalog-memory.mjs", args: [], quickArgs: ["--hosts=200"], what: "heap the catalog (state machine + memory) holds per instance, 1,000 hosts x 100" },
  { name: "kv-writer", script: "bench/kv-writer.mjs", args: [], quickArgs: ["--writes=20000", "--rounds=1"], what: "the registry's catalog writer alone: pipelined writes/s and CPU per write" },
  { name: "registry-load", script: "bench/registry-load.mjs", args: [], quickArgs: ["--hosts=200", "--duration=5", "--settle=2"], what: "registry CPU/RSS under 1,000 hosts heartbeating" },
  { name: "death-to-status", script: "bench/death-to-status.mjs", args: [], quickArgs: ["--quick"], what: "kill -9 of a service → critical in the registry and the mirror" },
  { name: "gateway-throughput", script: "bench/gateway-throughput.mjs", args: [], quickArgs: ["--quick"], what: "gw.request vs a raw undici Pool, in process" },
  { name: "policy-engine", script: "bench/policy-engine.mjs", args: [], quickArgs: [], what: "request path with a traffic policy in force vs none, request() and fetch" },
  { name: "policy-overload", script: "bench/policy-overload.mjs", args: [], quickArgs: ["--requests=1000", "--seconds=2"], what: "failing canary (failures with/without retries, fallback, split moved back); upstream of 300 req/s offered 1,000 req/s with/without adaptive throttling" },
  { name: "gateway-overhead", script: "bench/gateway-overhead.mjs", args: [], quickArgs: ["--quick"], what: "gateway CPU per request over a stubbed pool: tracing off / OTel API without provider / recording" },
  { name: "gateway-fetch", script: "bench/gateway-fetch.mjs", args: [], quickArgs: ["--quick"], what: "fetch via gw.dispatcher vs a plain undici Agent; tracing off / OTel API without provider / recording" },
  { name: "gateway-profile", script: "bench/gateway-profile.mjs", args: [], quickArgs: ["--quick"], what: "CPU profile of the request path" },
  { name: "gateway-slow-instance", script: "bench/gateway-slow-instance.mjs", args: [], quickArgs: ["--quick"], what: "one slow instance of five: p2c-peak-ewma vs round-robin" },
  { name: "gateway-fanout", script: "bench/gateway-fanout.mjs", args: [], quickArgs: ["--quick"], what: "1,000 gateway clients x 50 services: sync, steady state, propagation" },
  { name: "mirror-delta-cost", script: "bench/mirror-delta-cost.mjs", args: ["--floor"], quickArgs: ["--clients=20", "--deltas=40", "--rounds=1", "--floor"], what: "a catalog delta in 50 gateway clients of one process: client CPU per client per delta, first → last client; beside bare NATS subscribers" },
  { name: "mirror-delta-js", script: "bench/mirror-delta-js.mjs", args: [], quickArgs: ["--deltas=200", "--rounds=1"], what: "a catalog delta's JavaScript cost per gateway follower, no NATS" },
  { name: "balancer-change", script: "bench/balancer-change.mjs", args: [], quickArgs: ["--changes=30", "--rounds=1"], what: "one catalog change + the first pick after it, per balancer, 2,000 instances" },
  { name: "cluster-failover", script: "bench/registry-cluster-failover.mjs", args: [], quickArgs: ["--quick"], what: "kill -9 of the KV stream leader in a 3-node NATS cluster" },
  { name: "xds-fanout", script: "bench/xds-fanout.mjs", args: [], quickArgs: ["--quick"], what: "health flip → the last of 100 xDS (ADS) streams beside the catalog delta; registry CPU/RSS per stream; 100 clients receiving a 2,000-endpoint cluster" },
  { name: "catalog-core", script: "bench/catalog-core.mjs", args: [], quickArgs: ["--quick"], what: "the catalog reducer alone: CPU per register (per instance) and per matching heartbeat" },
  { name: "sse-flood", script: "bench/sse-flood.mjs", args: [], quickArgs: ["--quick"], what: "N clients open /v1/stream and never read: registry RSS against N (attack 5 of the security issue)" },
  { name: "dns-consul", script: "bench/dns-consul.mjs", args: [], quickArgs: ["--quick"], what: "DNS queries/s (dnsperf) and the Consul API's health/service req/s beside the HTTP API; flip → first dig answer without the instance, blocking-query wake-ups" },
  { name: "policy-put", script: "bench/policy-put.mjs", args: [], quickArgs: ["--quick"], what: "policy PUT → its delta on the wire and → the HTTP answer (the registry's side); --builds=a,b alternates PUTs between builds" },
  { name: "policy-apply", script: "bench/policy-apply.mjs", args: [], quickArgs: ["--quick"], what: "a serving gateway's CPU per health change and per policy change of one service (200 instances); --builds=a,b compares builds in one process" },
  { name: "policy", script: "bench/policy.mjs", args: [], quickArgs: ["--quick"], what: "traffic policy: split accuracy over 10,000 picks; PUT …/policy → the last of 100 gateway clients applying it (p50/p99), beside a health flip to the same clients" },
  { name: "pick", script: "gateway-client/bench/pick.bench.mjs", args: [], quickArgs: ["--quick"], what: "balancer pick() micro-benchmark" },
  { name: "agent-api-guards", script: "bench/agent-api-guards.mjs", args: [], quickArgs: ["--quick"], what: "the agent API's Host and token checks: ns per call, µs per request" },
];

const HARD_LIMIT_MS = (quick ? 5 : 25) * 60_000;

// Modest settings for a smoke run of the older scripts that read the environment; an
// argument or a variable already set wins.
const QUICK_ENV = { BENCH_TRIALS: "20", BENCH_PROFILES: "fast", BENCH_QUICK: "1" };

function selected() {
  if (filters.length === 0) return SCENARIOS.filter((s) => existsSync(join(root, s.script)));
  const out = [];
  for (const f of filters) {
    const exact = SCENARIOS.filter((s) => s.name === f);
    const hits = exact.length ? exact : SCENARIOS.filter((s) => s.script.includes(f));
    if (hits.length === 0) {
      process.stderr.write(`run-all: no scenario "${f}"; scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}\n`);
      process.exit(2);
    }
    for (const h of hits) if (!out.includes(h)) out.push(h);
  }
  return out;
}

if (args.includes("--list")) {
  process.stdout.write(markdownTable(["scenario", "script", "what"], SCENARIOS.map((s) => [s.name, s.script, s.what])) + "\n");
  process.exit(0);
}

const scenarios = selected();
const summary = [];
let current = null;
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    // The scenario cleans up on its own signal; give it the time to do so.
    if (current && current.exitCode === null) {
      current.kill(sig);
      await Promise.race([new Promise((r) => current.once("exit", r)), new Promise((r) => setTimeout(r, 20_000))]);
    }
    process.exit(130);
  });
}

process.stderr.write(`run-all: ${scenarios.length} scenario(s): ${scenarios.map((s) => s.name).join(", ")}${quick ? " (quick)" : ""}\n`);
for (const s of scenarios) {
  const argv = [s.script, ...(quick ? s.quickArgs : s.args)];
  process.stderr.write(`\n=== ${s.name}: node ${argv.join(" ")} ===\n`);
  process.stdout.write(`\n<!-- scenario ${s.name}: node ${argv.join(" ")} -->\n`);
  const env = { ...process.env, BENCH_SCENARIO: s.name };
  if (quick) for (const [k, v] of Object.entries(QUICK_ENV)) env[k] ??= v;
  const t0 = Date.now();
  const child = spawn(process.execPath, argv, { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
  current = child;
  const timer = setTimeout(() => {
    process.stderr.write(`run-all: ${s.name} ran past ${HARD_LIMIT_MS / 60_000} min, stopping it\n`);
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 20_000).unref();
  }, HARD_LIMIT_MS);
  const { code, signal } = await new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  clearTimeout(timer);
  summary.push([s.name, `node ${argv.join(" ")}`, code === 0 ? "ok" : `failed (${signal ?? `exit ${code}`})`, `${((Date.now() - t0) / 1000).toFixed(0)} s`]);
}

process.stdout.write(`\n### Benchmark runs\n\n${markdownTable(["scenario", "command", "result", "time"], summary)}\n`);
process.exit(summary.every((r) => r[2] === "ok") ? 0 : 1);
