#!/usr/bin/env node
// The gateway's own cost per request in CPU instructions, which — unlike seconds — do not
// depend on what else runs on the machine: each client runs under `valgrind --tool=callgrind`
// (instruction counts only; the upstream child and nats-server are not traced), warms up
// (--warmup requests, so the JIT has settled), then makes --rounds phases of --requests
// requests in a closed loop at --concurrency (same upstream as bench/gateway-throughput.mjs).
// The process reads its own instruction counter (all threads: JIT and GC included) with
// `callgrind_control -e` before and after each phase, so start-up, connects and shutdown are
// not counted; per request = the median phase's count / --requests, and the least (the
// phase no major GC landed in: a mark-compact costs as much as thousands of requests, and
// lands in one phase and not another). The gateway's cost is gw.request's figure minus the
// raw Pool's. (A forced full GC before each phase, to even this out, made V8 re-optimize the
// request path in every phase: 3–4× the counts.) The mean of the phases counts the mark-compacts
// too (what requests/s pays); it needs many phases to settle.
//
//   node bench/gateway-instructions.mjs [--requests=5000] [--rounds=5] [--warmup=10000] [--concurrency=32] [--modes=gateway] [--stub=1] [--old=<index.js of another build>]
//
// `--stub=1` replaces undici's Pool.prototype.request with bench/gateway-overhead.mjs's stub
// (answers on the next microtask with a closed body, no network): then gateway minus pool is
// the gateway's own code alone. `--stub=2` stubs Pool.prototype.dispatch instead (request-path.mjs
// stubPoolDispatch): undici's request(), its handler and body are real, the network is not.
// `--modes=gateway,pool-both,...` chooses what is measured beside the raw Pool: gateway
// (gw.request), and the raw Pool plus what every gateway try carries (as in
// bench/gateway-profile.mjs): pool-signal (an abort source undici listens to), pool-header (the
// deadline header; pool-header-short: an 11-character name, what a rename would save), pool-both. A single run without valgrind (what the driver starts under
// callgrind; without callgrind it prints no counts):
//   node bench/gateway-instructions.mjs --mode=<one of those, or old>
//
// Node runs with --single-threaded --hash-seed=1 --random-seed=1 (see V8_FLAGS): stubbed runs of
// one build then agree within ~1 %; real-path phases still differ by whether a mark-compact
// landed in them (compare the least phases). Each client takes 2–4 minutes under valgrind.
// Check a change on both paths: one that saved instructions with --stub=1 cost many more on
// the real path (docs/BENCHMARKS.md, "Request-path instruction counts").
// Needs `npm run build` first, and valgrind.
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { numberOption, stringOption, commandLine } from "./lib/options.mjs";

const MODE = stringOption("mode", "");
const REQUESTS = numberOption("requests", 5_000);
const ROUNDS = numberOption("rounds", 5);
const WARMUP = numberOption("warmup", 10_000);
const CONCURRENCY = numberOption("concurrency", 32);
const OLD = stringOption("old", "");
/**
 * 1: undici's Pool.prototype.request answers on the next microtask (bench/gateway-overhead.mjs's
 * stub): the gateway's own code only. 2: Pool.prototype.dispatch answers on the next macrotask
 * through the handler undici's request() made: the gateway's code plus how its tries use undici's
 * request() (abort signal or forwarding handler), without the network or undici's Client.
 */
const STUB = numberOption("stub", 0);

/** This process's instruction count so far, all threads (undefined when not under callgrind). */
async function instructions() {
  try {
    const { stdout } = await promisify(execFile)("callgrind_control", ["-e", String(process.pid)]);
    const counts = [...stdout.matchAll(/^\s*Th\s*\d+\s+([\d,]+)\s*$/gm)].map((m) => Number(m[1].replaceAll(",", "")));
    return counts.length > 0 ? counts.reduce((a, b) => a + b, 0) : undefined;
  } catch {
    return undefined;
  }
}

async function once() {
  const { startUpstream, startCatalog } = await import("./gateway-throughput.mjs");
  const { NatsServer } = await import("roster-testkit");
  const { Pool } = await import("undici");
  const mod = MODE === "old" ? await import(new URL(OLD, `file://${process.cwd()}/`).href) : await import("roster-gateway-client");
  const { gatewayPoolOptions, rawPoolModes, stubPoolRequest, stubPoolDispatch } = await import("./lib/request-path.mjs");
  if (STUB === 1) stubPoolRequest();
  if (STUB === 2) stubPoolDispatch();
  const nats = await NatsServer.start({ jetstream: false });
  const up = await startUpstream("single");
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: up.port }]);
  const gw = await mod.createGateway({ nats: nats.url, services: ["bench"] });
  const pool = new Pool(`http://127.0.0.1:${up.port}`, gatewayPoolOptions(mod.parsePolicy));
  const viaGw = async () => {
    const res = await gw.request("bench", { path: "/" });
    if (STUB !== 1) await res.body.dump();
  };
  const modes = { ...rawPoolModes(pool, { dump: STUB !== 1 }), gateway: viaGw, old: viaGw };
  const call = modes[MODE];
  if (!call) throw new Error(`--mode: one of ${Object.keys(modes).join(", ")}`);
  const run = async (n) => {
    let left = n;
    const worker = async () => {
      while (left-- > 0) await call();
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  };
  try {
    await run(WARMUP);
    const phases = [];
    for (let r = 0; r < ROUNDS; r++) {
      const before = await instructions();
      await run(REQUESTS);
      const after = await instructions();
      if (before !== undefined && after !== undefined) phases.push((after - before) / REQUESTS);
    }
    const st = MODE === "gateway" || MODE === "old" ? gw.stats("bench") : undefined;
    console.log(JSON.stringify({ phases, counters: st && { requests: st.requests, responses: st.responses, tries: st.tries, retries: st.retries } }));
  } finally {
    await pool.close();
    await gw.close();
    await catalog.close();
    await up.child.stop(5000);
    await nats.close();
  }
}

/**
 * Repeatable JIT and hashing: no background compiles or GC threads (their timing decided what
 * got optimized when, so two runs of one build differed by ~300 instructions per request),
 * fixed hash and Math.random seeds. The same work is counted, on the main thread.
 */
const V8_FLAGS = ["--single-threaded", "--hash-seed=1", "--random-seed=1"];

function callgrind(mode) {
  const self = fileURLToPath(import.meta.url);
  const args = ["--tool=callgrind", "--callgrind-out-file=/dev/null", process.execPath, ...V8_FLAGS, self, `--mode=${mode}`, `--requests=${REQUESTS}`, `--rounds=${ROUNDS}`, `--warmup=${WARMUP}`, `--concurrency=${CONCURRENCY}`, `--stub=${STUB}`];
  if (OLD) args.push(`--old=${OLD}`);
  const r = spawnSync("valgrind", args, { encoding: "utf8", maxBuffer: 64 << 20 });
  const line = r.stdout.split("\n").find((l) => l.startsWith('{"phases"'));
  if (r.status !== 0 || !line) throw new Error(`valgrind ${mode}: exit ${r.status}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(line);
  const phases = out.phases.sort((a, b) => a - b);
  if (phases.length === 0) throw new Error("no counts: callgrind_control -e gave nothing");
  const mean = phases.reduce((a, b) => a + b, 0) / phases.length;
  return { median: phases[Math.floor(phases.length / 2)], min: phases[0], max: phases[phases.length - 1], mean, phases, counters: out.counters };
}

async function main() {
  if (MODE) return once();
  execFileSync("valgrind", ["--version"]);
  const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
  const loadAtStart = load();
  const modes = ["pool", ...stringOption("modes", "gateway").split(","), ...(OLD ? ["old"] : [])];
  const per = {};
  for (const mode of modes) {
    per[mode] = callgrind(mode);
    const c = per[mode].counters ? ` ${JSON.stringify(per[mode].counters)}` : "";
    process.stderr.write(`${mode}: ${per[mode].median.toFixed(0)} instructions/request (phases ${per[mode].min.toFixed(0)}–${per[mode].max.toFixed(0)})${c}\n`);
  }
  console.log(`command: ${commandLine("bench/gateway-instructions.mjs")}`);
  console.log(`node ${process.version}; ${STUB === 1 ? "stubbed Pool.request (no network); " : STUB === 2 ? "stubbed Pool.dispatch (no network); " : ""}${ROUNDS} phases of ${REQUESTS} requests after ${WARMUP} warm-up, concurrency ${CONCURRENCY}; load avg at start ${loadAtStart}, at end ${load()}`);
  for (const mode of modes) {
    const x = per[mode];
    const added = mode === "pool" ? "" : `; added over the raw Pool: ${(x.median - per.pool.median).toFixed(0)} (medians), ${(x.min - per.pool.min).toFixed(0)} (least)`;
    console.log(`${mode.padEnd(12)} median ${x.median.toFixed(0)} instructions/request, least ${x.min.toFixed(0)}, most ${x.max.toFixed(0)}, mean ${x.mean.toFixed(0)}${added}`);
    console.log(`${"".padEnd(12)} phases: ${x.phases.map((p) => p.toFixed(0)).join(" ")}`);
  }
}

await main();
