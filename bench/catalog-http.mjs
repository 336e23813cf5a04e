#!/usr/bin/env node
// Catalog HTTP API: what `GET /v1/services/:name/instances` (100 instances) sustains, with and
// without `If-None-Match` (a 304 with no body when the client's ETag is current), and what
// 10,000 open blocking queries cost the registry in memory.
//
//   node bench/catalog-http.mjs [--quick] [--instances=100] [--connections=32] [--seconds=8]
//     [--rounds=2] [--blocking=10000]
//
// Real processes: nats-server, roster-registry (its bin), simulated agents (bench/lib/sim-agents:
// `instances` hosts with one instance each of svc-000), autocannon (its CLI, a separate process)
// for the request rate, and bench/lib/blocking-holder.mjs (undici, a separate process) for the
// blocking queries. The registry's RSS and open file descriptors are read from /proc.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { NatsServer, waitFor } from "roster-testkit";
import { forkHelper } from "./lib/fork-helper.mjs";
import { closeHttp, getJson, instancesOf } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { cpuSeconds, rssMiB } from "./lib/procstat.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const SIM = fileURLToPath(new URL("./lib/sim-agents.mjs", import.meta.url));
const HOLDER = fileURLToPath(new URL("./lib/blocking-holder.mjs", import.meta.url));
const AUTOCANNON = fileURLToPath(new URL("../node_modules/autocannon/autocannon.js", import.meta.url));
const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const INSTANCES = numberOption("instances", 100);
const CONNECTIONS = numberOption("connections", 32);
const SECONDS = numberOption("seconds", quick ? 3 : 8);
const ROUNDS = numberOption("rounds", quick ? 1 : 2);
const BLOCKING_WANTED = numberOption("blocking", quick ? 2000 : 10_000);
const SERVICE = "svc-000";
const median = (xs) => percentile(xs, 50);

/** Soft and hard "Max open files" of this process (children inherit them). */
function openFileLimit() {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
  const [soft, hard] = line.trim().split(/\s+/).slice(3, 5);
  return { soft: Number(soft) || Infinity, hard: Number(hard) || Infinity };
}

const fdCount = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
};

/** autocannon in its own process, JSON result. */
function autocannon(url, headers, seconds) {
  const args = [AUTOCANNON, "-j", "-c", String(CONNECTIONS), "-d", String(seconds)];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}=${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    defer(() => child.exitCode === null && child.kill("SIGKILL"));
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.once("exit", (code) => {
      try {
        resolve(JSON.parse(out.trim().split("\n").at(-1)));
      } catch {
        reject(new Error(`autocannon exited ${code}: ${err.slice(-500)} ${out.slice(-500)}`));
      }
    });
  });
}

await runBench("catalog-http", 120 + ROUNDS * 2 * (SECONDS + 5) + BLOCKING_WANTED / 100, async () => {
  const limit = openFileLimit();
  // The holder and the registry each need one descriptor per query, plus their own.
  const BLOCKING = Math.min(BLOCKING_WANTED, Math.max(0, limit.soft - 512));
  if (BLOCKING < BLOCKING_WANTED) progress(`ulimit -n is ${limit.soft} (hard ${limit.hard}): holding ${BLOCKING} blocking queries, not ${BLOCKING_WANTED} (raise it with ulimit -n ${BLOCKING_WANTED + 1024})`);

  const nats = await NatsServer.start();
  defer(() => nats.close());
  const registry = await startRegistry({ natsUrl: nats.url });
  defer(() => registry.stop());
  const sim = forkHelper(SIM, [`--nats=${nats.url}`, `--hosts=${INSTANCES}`, "--instances=1", "--services=1", "--prefix=http"], "sim-agents");
  defer(() => sim.stop({ cmd: "stop" }));
  await sim.next("ready", 15_000, { seen: true });
  sim.send({ cmd: "register" });
  const url = `${registry.httpUrl}/v1/services/${SERVICE}/instances`;
  await waitFor(async () => instancesOf((await getJson(url)).body).length >= INSTANCES, { timeoutMs: 60_000, intervalMs: 100, what: `${INSTANCES} instances of ${SERVICE}` });
  const first = await getJson(url);
  const index = first.index;
  const bodyBytes = Buffer.byteLength(JSON.stringify(first.body));
  const etag = `"${index}"`;
  progress(`registry ${registry.httpUrl} (pid ${registry.pid}); ${SERVICE}: ${INSTANCES} instances, index ${index}, body ${bodyBytes} bytes`);

  // 1. Request rate, alternating plain / If-None-Match.
  progress("warm-up");
  await autocannon(url, {}, 1);
  const runs = { plain: [], inm: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of r % 2 === 0 ? ["plain", "inm"] : ["inm", "plain"]) {
      const cpu0 = cpuSeconds(registry.pid);
      const res = await autocannon(url, kind === "inm" ? { "If-None-Match": etag } : {}, SECONDS);
      const cpu = cpuSeconds(registry.pid) - cpu0;
      const total = res.requests.total;
      const row = { rps: res.requests.average, p50: res.latency.p50, p99: res.latency.p99, max: res.latency.max, total, non2xx: res.non2xx, errors: res.errors + res.timeouts, cpuPct: (cpu / res.duration) * 100, cpuUsPerReq: total ? (cpu * 1e6) / total : NaN, statusCodes: res.statusCodeStats };
      runs[kind].push(row);
      progress(`round ${r + 1} ${kind}: ${fmt(row.rps, 0)} req/s p50 ${row.p50} ms p99 ${row.p99} ms registry cpu ${fmt(row.cpuPct, 0)}% codes ${JSON.stringify(row.statusCodes)}`);
    }
  }
  const med = (kind) => {
    const rs = runs[kind];
    return { rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), cpuPct: median(rs.map((x) => x.cpuPct)), cpuUsPerReq: median(rs.map((x) => x.cpuUsPerReq)), errors: rs.reduce((a, x) => a + x.errors, 0), codes: rs.at(-1).statusCodes };
  };
  const plain = med("plain");
  const inm = med("inm");

  // 2. Blocking queries held open.
  await sleep(1000);
  const rss0 = rssMiB(registry.pid);
  const fd0 = fdCount(registry.pid);
  const holder = forkHelper(HOLDER, [`--url=${url}`, `--index=${index}`, "--wait=300s", `--count=${BLOCKING}`], "blocking-holder");
  defer(() => holder.stop({ cmd: "close" }));
  await holder.next("ready", 15_000, { seen: true });
  const t0 = performance.now();
  holder.send({ cmd: "open" });
  await holder.next("opened", 120_000);
  let lastLog = 0;
  await waitFor(
    () => {
      const n = fdCount(registry.pid) - fd0;
      if (performance.now() - lastLog > 2000) {
        lastLog = performance.now();
        progress(`blocking queries: registry holds ${n} more descriptors`);
      }
      return n >= BLOCKING * 0.99;
    },
    { timeoutMs: 60_000 + BLOCKING * 5, intervalMs: 200, what: `${BLOCKING} connections at the registry` },
  ).catch((e) => progress(e.message));
  const openMs = performance.now() - t0;
  await sleep(3000);
  const cpuHold0 = cpuSeconds(registry.pid);
  await sleep(5000);
  const holdCpuPct = ((cpuSeconds(registry.pid) - cpuHold0) / 5) * 100;
  const rss1 = rssMiB(registry.pid);
  const fd1 = fdCount(registry.pid);
  const p = holder.next("status", 10_000);
  holder.send({ cmd: "status" });
  const st = await p;
  await holder.stop({ cmd: "close" });
  await sleep(2000);
  const rss2 = rssMiB(registry.pid);
  const held = fd1 - fd0;
  const figures = { plain, ifNoneMatch: inm, runs, blocking: { wanted: BLOCKING_WANTED, opened: BLOCKING, heldByRegistry: held, rssBeforeMiB: rss0, rssHoldingMiB: rss1, rssAfterCloseMiB: rss2, perQueryKiB: ((rss1 - rss0) * 1024) / Math.max(1, held), openMs, holdCpuPct, answeredEarly: st.answered, failed: st.failed }, ulimit: limit, bodyBytes };

  printReport({
    title: `Catalog HTTP API: GET /v1/services/:name/instances (${INSTANCES} instances), and ${BLOCKING} blocking queries`,
    command: commandLine("bench/catalog-http.mjs"),
    params: { instances: INSTANCES, connections: CONNECTIONS, seconds: SECONDS, rounds: ROUNDS, blockingQueries: BLOCKING, "ulimit -n": limit.soft },
    figures,
    tables: [
      {
        caption: `autocannon (separate process), ${CONNECTIONS} connections, ${SECONDS} s per run, median of ${ROUNDS} run(s) each, alternated`,
        headers: ["request", "req/s", "p50 ms", "p99 ms", "registry CPU (% of a core)", "registry CPU µs/req", "status codes (last run)", "errors"],
        rows: [
          [`plain GET (200, ${bodyBytes} bytes of JSON)`, fmt(plain.rps, 0), fmt(plain.p50, 0), fmt(plain.p99, 0), fmt(plain.cpuPct, 0), fmt(plain.cpuUsPerReq, 0), JSON.stringify(plain.codes), plain.errors],
          [`If-None-Match: ${etag} (304, no body)`, fmt(inm.rps, 0), fmt(inm.p50, 0), fmt(inm.p99, 0), fmt(inm.cpuPct, 0), fmt(inm.cpuUsPerReq, 0), JSON.stringify(inm.codes), inm.errors],
          ["ratio If-None-Match ÷ plain", `${fmt(inm.rps / plain.rps, 2)}×`, "", "", "", `${fmt(inm.cpuUsPerReq / plain.cpuUsPerReq, 2)}×`, "", ""],
        ],
      },
      {
        caption: `${BLOCKING} blocking queries (?index=${index}&wait=300s) held open from a separate process (undici, one connection each)`,
        headers: ["measure", "value"],
        rows: [
          ["connections the registry holds (open descriptors, delta)", held],
          ["time to open them all", `${fmt(openMs / 1000, 1)} s`],
          ["registry RSS before → holding → after they closed", `${fmt(rss0)} → ${fmt(rss1)} → ${fmt(rss2)} MiB`],
          ["RSS per held query", `${fmt(figures.blocking.perQueryKiB, 1)} KiB`],
          ["registry CPU while holding them (5 s)", `${fmt(holdCpuPct, 1)} % of a core`],
          ["answered before the change / failed", `${st.answered} / ${st.failed}`],
        ],
      },
    ],
    notes: [
      "latency is autocannon's (ms, integer resolution), from its own process; registry CPU is utime+stime from /proc over the run. autocannon and the registry share the same 2 cores (other work ran too), so the request rate is what the machine sustains with the load generator on it.",
      "A held query costs the registry one socket, one fastify request and one waiter on the service; the RSS delta includes the kernel-independent part only (socket buffers are not in RSS).",
    ],
  });
  await closeHttp();
});
