#!/usr/bin/env node
// What the gateway's request path costs: requests/s and p50/p99 through `gw.request` vs a
// raw undici Pool to the same single upstream, same load (closed loop, fixed concurrency),
// alternated rounds, medians. The upstream is a node:http server in a separate child
// process, so the client side is what differs between the two columns. Both sides use the
// same Pool options (the gateway's defaults: connections 64, keepAliveTimeout 4 s, connect
// timeout 1 s, pipelining 1). Per round: the ratio of requests/s, the added p99 and the
// client process's CPU time per request; then the medians.
//
// Two legs: requests/s at `--concurrency` (32: the throughput target, ≥ 95 % of the raw Pool),
// alternated rounds of each client back to back; and latency at `--p99-concurrency` (1: the
// added-p99 target, ≤ 20 µs). At 32 in flight on 2 cores shared with the upstream, p99 is the
// scheduler's (±2 ms between rounds); one request at a time, p99 is the request path's own, and
// the clients take turns request by request within each round (interleavedLoop), because run
// back to back their p99s differed by ±100 µs between runs of the same code. `--old=<index.js of
// another build>` adds that build's gw.request as another client in the same rounds (before /
// after in one run).
//
// Steadiness, on a 2-core machine where the client, the upstream child and nats-server share
// the cores (and other people's work may too): clients run back to back within a round and
// are compared per round (the ratio and the added CPU are medians of per-round differences,
// not differences of medians), the order alternates every round, and there are 11 rounds by
// default (was 7: with 7, one or two disturbed rounds moved the median). `--pin=1` pins this
// process to core 0 and the upstream child and nats-server to core 1 with `taskset` (all
// threads) when taskset exists and there are 2+ cores, and the report says whether it did.
// Pinning is off by default: with other work on the machine it did not narrow the spread of
// the per-round ratio in our runs (see docs/BENCHMARKS.md).
// The load average at the start and at the end is in the report: quote it with any figure.
//
// A third client makes the same requests with a deadline set (`{ deadline: 10_000 }`), so they
// carry `x-roster-deadline-ms`; the targets are judged on the default request (no deadline set:
// no header, as gRPC sends no grpc-timeout without a deadline). `--with-deadline=0` leaves it out.
//
//   node bench/gateway-throughput.mjs [--concurrency=32] [--p99-concurrency=1] [--duration=2] [--rounds=11] [--pin=1] [--with-deadline=0] [--old=<path>]
//
// Needs `npm run build` first (imports the compiled gateway-client and test kit).
import { execFileSync } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { connect } from "@nats-io/transport-node";
import { Pool } from "undici";
import { ChildProc, NatsServer } from "roster-testkit";
import { PRESENCE_SUBJECT, REGISTRY_QUEUE, SNAPSHOT_WILDCARD, encode, PresenceMessage, Snapshot } from "roster-schemas";
import { createGateway, parsePolicy } from "roster-gateway-client";
import { numberOption, stringOption, commandLine } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";
import { gatewayPoolOptions } from "./lib/request-path.mjs";

const quick = Boolean(process.env.BENCH_QUICK);
const CONCURRENCY = numberOption("concurrency", 32);
const DURATION_S = numberOption("duration", quick ? 1.5 : 2);
const ROUNDS = numberOption("rounds", quick ? 3 : 11);
/** Concurrency of the latency leg (0: no such leg). */
const P99_CONCURRENCY = numberOption("p99-concurrency", 1);
const OLD = stringOption("old", "");
/** The issue's targets (issue 12). */
const TARGET_RATIO = 0.95;
const TARGET_ADDED_P99_US = 20;
const WARMUP_S = 1;
/** Also measure requests with a deadline set (`--with-deadline=0`: not), which send the deadline header. */
const WITH_DEADLINE = numberOption("with-deadline", 1) !== 0;
const GW = "gw.request (p2c-peak-ewma)";
const GW_DEADLINE = "gw.request, deadline set (header sent)";

/** A node:http upstream in a child process; prints {"port":N} once listening. */
export const UPSTREAM_CODE = `
const http = require("node:http");
const name = process.env.UPSTREAM_NAME || "u";
const delayMs = Number(process.env.UPSTREAM_DELAY_MS || 0);
const body = Buffer.from("ok");
const srv = http.createServer((req, res) => {
  req.resume();
  const send = () => { res.setHeader("x-upstream", name); res.setHeader("content-length", body.length); res.end(body); };
  if (delayMs > 0) setTimeout(send, delayMs); else send();
});
srv.keepAliveTimeout = 60000;
srv.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: srv.address().port })));
process.on("SIGTERM", () => srv.close(() => process.exit(0)));
`;

export async function startUpstream(name, delayMs = 0) {
  const child = new ChildProc(process.execPath, ["-e", UPSTREAM_CODE], { env: { ...process.env, UPSTREAM_NAME: name, UPSTREAM_DELAY_MS: String(delayMs) } });
  await child.waitForOutput(/"port":\d+/, 10_000);
  const port = Number(/"port":(\d+)/.exec(child.output)[1]);
  return { child, port, name };
}

/**
 * With `--pin=1`: pins this process to core 0 and the helper processes (upstream child,
 * nats-server) to core 1 with `taskset` (all threads), so the client never shares its core
 * with the upstream it measures against. Returns a line for the report: what was pinned, or
 * why not (not asked, no taskset, one core).
 */
export function pinProcesses(helperPids) {
  if (numberOption("pin", 0) === 0) return "no";
  if (availableParallelism() < 2) return "no (one core)";
  try {
    execFileSync("taskset", ["-a", "-p", "-c", "0", String(process.pid)], { stdio: "ignore" });
    for (const pid of helperPids) if (pid) execFileSync("taskset", ["-a", "-p", "-c", "1", String(pid)], { stdio: "ignore" });
    return "client on core 0; upstream and nats-server on core 1 (taskset)";
  } catch {
    return "no (taskset not available)";
  }
}

/** Answers snapshot requests for the given instances and publishes presence: a stand-in for the registry. */
export async function startCatalog(natsUrl, instances) {
  const nc = await connect({ servers: natsUrl });
  const now = Date.now();
  const full = instances.map((i) => ({ host: "bench", tags: [], meta: {}, weight: 100, status: "passing", checks: [], epoch: 1, registeredAt: now, updatedAt: now, ...i }));
  nc.subscribe(SNAPSHOT_WILDCARD, {
    queue: REGISTRY_QUEUE,
    callback: (_e, msg) => {
      const service = msg.subject.split(".").pop();
      const mine = full.filter((i) => i.service === service);
      msg.respond(encode(Snapshot, { v: 1, kind: "snapshot", service, revision: mine.length, known: mine.length > 0, instances: mine }));
    },
  });
  const beat = () => nc.publish(PRESENCE_SUBJECT, encode(PresenceMessage, { v: 1, kind: "presence", registryId: "bench", epoch: 1, sentAt: Date.now(), revision: full.length, intervalMs: 1000 }));
  beat();
  const timer = setInterval(beat, 1000);
  await nc.flush();
  return { close: async () => { clearInterval(timer); await nc.close(); } };
}

/**
 * Closed loop: `concurrency` workers call `once()` back to back for `seconds`. Also returns
 * this process's CPU time (user + system) per completed call, in µs.
 */
export async function closedLoop(once, concurrency, seconds) {
  const latencies = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await once();
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuUsPerReq = latencies.length > 0 ? (cpu.user + cpu.system) / latencies.length : NaN;
  return { rps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), p999: percentile(latencies, 99.9), n: latencies.length, errors, latencies, cpuUsPerReq };
}

export const median = (xs) => percentile(xs, 50);

/**
 * One request at a time for `seconds`, the clients taking turns request by request (the first
 * turn goes to client `first`): each client's latencies come from the same stretch of the
 * machine's time, so whatever else runs (the other core, a neighbour's build, a timer of
 * nats-server) falls on every client alike. Clients run back to back instead differ by when
 * they ran: at one request in flight that moved p99 by ±100 µs between runs of the same code.
 */
export async function interleavedLoop(clients, seconds, first = 0) {
  const names = Object.keys(clients);
  const fns = names.map((n) => clients[n]);
  const lat = names.map(() => []);
  const errors = names.map(() => 0);
  const end = performance.now() + seconds * 1000;
  for (let i = first; performance.now() < end; i++) {
    const k = i % fns.length;
    const t0 = performance.now();
    try {
      await fns[k]();
      lat[k].push(performance.now() - t0);
    } catch {
      errors[k]++;
    }
  }
  return Object.fromEntries(names.map((n, k) => [n, { p50: percentile(lat[k], 50), p99: percentile(lat[k], 99), n: lat[k].length, errors: errors[k] }]));
}

/**
 * Alternated rounds: each client warmed up, then `rounds` rounds of every client back to back
 * (order reversed every other round, so neither side always runs on a warmer machine).
 * Returns each client's per-round closedLoop results; prints one progress line per run.
 */
export async function alternatedRounds(clients, { rounds, concurrency, seconds, warmupSeconds = 0.5, tag = "" }) {
  const names = Object.keys(clients);
  for (const n of names) await closedLoop(clients[n], concurrency, warmupSeconds);
  const results = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (const n of r % 2 === 0 ? names : [...names].reverse()) {
      const res = await closedLoop(clients[n], concurrency, seconds);
      results[n].push(res);
      process.stderr.write(`${tag}round ${r + 1} ${n}: ${res.rps.toFixed(0)} req/s p50 ${res.p50.toFixed(3)} ms p99 ${res.p99.toFixed(3)} ms client CPU ${res.cpuUsPerReq.toFixed(1)} µs/req errors ${res.errors}\n`);
    }
  }
  return results;
}

/**
 * One leg: `ROUNDS` rounds at `concurrency`, each round every client back to back (order
 * rotated per round), then per-round comparisons of each gateway client with the raw Pool.
 */
async function leg(clients, concurrency) {
  const names = Object.keys(clients);
  const results = await alternatedRounds(clients, { rounds: ROUNDS, concurrency, seconds: DURATION_S, warmupSeconds: WARMUP_S, tag: `c=${concurrency} ` });
  const raw = results[names[0]];
  const versus = Object.fromEntries(
    names.slice(1).map((n) => {
      const rounds = raw.map((x, i) => {
        const g = results[n][i];
        return { raw: x, g, ratio: g.rps / x.rps, addedP99Us: (g.p99 - x.p99) * 1000, addedCpuUs: g.cpuUsPerReq - x.cpuUsPerReq };
      });
      const med = (f) => median(rounds.map(f));
      const medianRow = {
        raw: { rps: med((x) => x.raw.rps), p99: med((x) => x.raw.p99), cpuUsPerReq: med((x) => x.raw.cpuUsPerReq) },
        g: { rps: med((x) => x.g.rps), p99: med((x) => x.g.p99), cpuUsPerReq: med((x) => x.g.cpuUsPerReq) },
        ratio: med((x) => x.ratio),
        addedP99Us: med((x) => x.addedP99Us),
        addedCpuUs: med((x) => x.addedCpuUs),
      };
      return [n, { rounds, medianRow }];
    }),
  );
  return { results, versus };
}

/**
 * The latency leg at one request in flight: `ROUNDS` interleaved rounds (interleavedLoop; the
 * first turn alternates between rounds), then per round each gateway client's p99 minus the raw
 * Pool's, and the median of those.
 */
async function interleavedLeg(clients) {
  const names = Object.keys(clients);
  await interleavedLoop(clients, WARMUP_S);
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const res = await interleavedLoop(clients, DURATION_S * names.length, r % names.length);
    rounds.push(res);
    process.stderr.write(`c=1 interleaved round ${r + 1}: ${names.map((n) => `${n} p50 ${(res[n].p50 * 1000).toFixed(0)} µs p99 ${(res[n].p99 * 1000).toFixed(0)} µs (${res[n].n})`).join("; ")}\n`);
  }
  const raw = names[0];
  const versus = Object.fromEntries(
    names.slice(1).map((n) => {
      const per = rounds.map((x) => ({ raw: x[raw], g: x[n], addedP99Us: (x[n].p99 - x[raw].p99) * 1000 }));
      const medianRow = {
        raw: { p50: median(per.map((x) => x.raw.p50)), p99: median(per.map((x) => x.raw.p99)) },
        g: { p50: median(per.map((x) => x.g.p50)), p99: median(per.map((x) => x.g.p99)) },
        addedP99Us: median(per.map((x) => x.addedP99Us)),
      };
      return [n, { rounds: per, medianRow }];
    }),
  );
  return { versus, errors: Object.fromEntries(names.map((n) => [n, rounds.reduce((s, x) => s + x[n].errors, 0)])) };
}

async function main() {
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(" ");
  const nats = await NatsServer.start({ jetstream: false });
  const up = await startUpstream("single");
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: up.port }]);
  const gw = await createGateway({ nats: nats.url, services: ["bench"] });
  const oldGw = OLD ? await (await import(new URL(OLD, `file://${process.cwd()}/`).href)).createGateway({ nats: nats.url, services: ["bench"] }) : undefined;
  // The raw Pool gets exactly the options the gateway gives its per-endpoint pools.
  const poolOpts = gatewayPoolOptions(parsePolicy);
  const pool = new Pool(`http://127.0.0.1:${up.port}`, poolOpts);
  const pinned = pinProcesses([up.child.pid, nats.pid]);
  process.stderr.write(`pinned: ${pinned}\n`);
  try {
    const via = (g, extra = {}) => async () => {
      const res = await g.request("bench", { path: "/", ...extra });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    };
    const viaPool = async () => {
      const res = await pool.request({ path: "/", method: "GET" });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    };
    const clients = { "raw undici Pool": viaPool, [GW]: via(gw) };
    // A deadline the caller set travels in x-roster-deadline-ms, which undici validates and writes: its cost, shown apart.
    if (WITH_DEADLINE) clients[GW_DEADLINE] = via(gw, { deadline: 10_000 });
    if (oldGw) clients["gw.request, --old build"] = via(oldGw);
    process.stderr.write("warm-up\n");
    const main = await leg(clients, CONCURRENCY);
    // One request in flight: the clients interleaved request by request (see interleavedLoop); more in flight: back to back, as above.
    const interleaved = P99_CONCURRENCY === 1;
    const lat = P99_CONCURRENCY > 1 ? await leg(clients, P99_CONCURRENCY) : interleaved ? await interleavedLeg(clients) : undefined;
    const roundRow = (label, x) => [
      label,
      fmt(x.raw.rps, 0),
      fmt(x.g.rps, 0),
      `${fmt(x.ratio * 100, 1)} %`,
      fmt(x.raw.p99 * 1000, 0),
      fmt(x.g.p99 * 1000, 0),
      fmt(x.addedP99Us, 0),
      fmt(x.raw.cpuUsPerReq, 1),
      fmt(x.g.cpuUsPerReq, 1),
      fmt(x.addedCpuUs, 1),
    ];
    const headers = ["round", "raw rps", "gw rps", "ratio", "raw p99 µs", "gw p99 µs", "added p99 µs", "raw CPU µs/req", "gw CPU µs/req", "added CPU µs/req"];
    const perRound = (l, c) =>
      Object.entries(l.versus).map(([n, v]) => ({
        caption: `${n} vs raw Pool, concurrency ${c}: per round (clients back to back) and median of the rounds`,
        headers,
        rows: [...v.rounds.map((x, i) => roundRow(String(i + 1), x)), roundRow("median", v.medianRow)],
      }));
    const row = (label, rs) => [label, fmt(median(rs.map((x) => x.rps)), 0), fmt(median(rs.map((x) => x.p50)), 3), fmt(median(rs.map((x) => x.p99)), 3), fmt(median(rs.map((x) => x.cpuUsPerReq)), 1), String(rs.reduce((s, x) => s + x.errors, 0))];
    const latRow = (label, x) => [label, fmt(x.raw.p50 * 1000, 0), fmt(x.g.p50 * 1000, 0), fmt(x.raw.p99 * 1000, 0), fmt(x.g.p99 * 1000, 0), fmt(x.addedP99Us, 1)];
    const interleavedTables = (l) =>
      Object.entries(l.versus).map(([n, v]) => ({
        caption: `${n} vs raw Pool, one request in flight, interleaved request by request: per round and median of the rounds`,
        headers: ["round", "raw p50 µs", "gw p50 µs", "raw p99 µs", "gw p99 µs", "added p99 µs"],
        rows: [...v.rounds.map((x, i) => latRow(String(i + 1), x)), latRow("median", v.medianRow)],
      }));
    const medians = (l, c) => ({
      caption: `Medians over rounds, concurrency ${c}`,
      headers: ["client", "requests/s", "p50 ms", "p99 ms", "client CPU µs/req", "errors"],
      rows: Object.entries(l.results).map(([n, rs]) => row(n, rs)),
    });
    const verdict = (n) => {
      const t = main.versus[n].medianRow;
      const p = lat ? lat.versus[n].medianRow : t;
      const pc = lat ? P99_CONCURRENCY : CONCURRENCY;
      // The targets are for a request as most callers make it (default options); the others are shown against them.
      const judged = n === GW;
      const ratioTarget = judged ? ` (target ≥ ${TARGET_RATIO * 100} %: ${t.ratio >= TARGET_RATIO ? "met" : "NOT met"})` : "";
      const p99Target = judged ? ` (target ≤ ${TARGET_ADDED_P99_US} µs: ${p.addedP99Us <= TARGET_ADDED_P99_US ? "met" : "NOT met"}; ${fmt(t.addedP99Us, 0)} µs at concurrency ${CONCURRENCY})` : "";
      return `${n}: ${fmt(t.ratio * 100, 1)} % of the raw Pool's requests/s at concurrency ${CONCURRENCY}${ratioTarget}, added p99 ${fmt(p.addedP99Us, 1)} µs at concurrency ${pc}${p99Target}, added client CPU ${fmt(t.addedCpuUs, 1)} µs per request (medians of per-round differences).`;
    };
    printReport({
      title: "Gateway request path vs raw undici Pool (one upstream in a child process)",
      command: commandLine("bench/gateway-throughput.mjs"),
      params: { concurrency: CONCURRENCY, "p99 concurrency": P99_CONCURRENCY || "no latency leg", duration: `${DURATION_S}s`, rounds: ROUNDS, alternated: "yes", pinned, "load avg at start": loadAtStart, old: OLD || "—", pool: `connections ${poolOpts.connections}, keepAliveTimeout ${poolOpts.keepAliveTimeout} ms, connect timeout ${poolOpts.connect.timeout} ms, pipelining 1 (both sides)` },
      tables: [...perRound(main, CONCURRENCY), medians(main, CONCURRENCY), ...(lat ? (interleaved ? interleavedTables(lat) : [...perRound(lat, P99_CONCURRENCY), medians(lat, P99_CONCURRENCY)]) : [])],
      notes: [
        ...Object.keys(main.versus).map(verdict),
        ...(interleaved ? [`The latency leg (one request in flight) interleaves the clients request by request, ${DURATION_S * Object.keys(clients).length} s a round; errors there: ${JSON.stringify(lat.errors)}.`] : []),
        "Client CPU is this process's user + system time over the round divided by the requests completed (the upstream and nats-server run in other processes).",
        "Client, upstream and nats-server share the machine's 2 cores; figures compare the clients under identical load, not absolute capacity. Requests/s at concurrency 32 is CPU-bound: the ratio is roughly raw CPU / gw CPU per request.",
      ],
    });
  } finally {
    await gw.close();
    await oldGw?.close();
    await pool.close();
    await catalog.close();
    await up.child.stop(5000);
    await nats.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
