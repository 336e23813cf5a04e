#!/usr/bin/env node
// DNS interface and Consul-compatible API (docs/dns-and-consul.md), measured beside the HTTP API:
//   1. DNS queries/s with p50/p99 from dnsperf (Debian's; its own process), A and SRV, UDP;
//   2. the HTTP API's GET /v1/services/:name/instances?status=passing and the Consul API's
//      GET /v1/health/service/:name?passing, from autocannon (its own process);
//   3. a health flip (the agent wire message) → the first `dig` answer without the instance, the
//      first plain HTTP answer without it, and the wake-up of a Consul and a Roster blocking query.
//
//   node bench/dns-consul.mjs [--quick] [--instances=10] [--seconds=8] [--rounds=2] [--flips=20]
//
// Real processes: nats-server, roster-registry (its bin, DNS and Consul API on), dnsperf, autocannon,
// dig. The flipped instance belongs to a host this script plays over NATS with the real wire contract.
import { execFile, spawn, spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import dnsPacket from "dns-packet";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { HealthMessage, HeartbeatMessage, RegisterMessage, agentSubject, encode, instanceDigest } from "roster-schemas";
import { NatsServer, freePort, waitFor } from "roster-testkit";
import { request, Agent } from "undici";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { cpuSeconds } from "./lib/procstat.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, percentile, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const AUTOCANNON = fileURLToPath(new URL("../node_modules/autocannon/autocannon.js", import.meta.url));
const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const INSTANCES = numberOption("instances", 10);
const SECONDS = numberOption("seconds", quick ? 3 : 8);
const ROUNDS = numberOption("rounds", quick ? 1 : 2);
const FLIPS = numberOption("flips", quick ? 5 : 20);
const CONNECTIONS = numberOption("connections", 32);
const SERVICE = "orders";
const run = promisify(execFile);
const dispatcher = new Agent({ connections: 8, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0 });
const median = (xs) => percentile(xs, 50);

function assertTools() {
  for (const [bin, pkg] of [["dnsperf", "dnsperf"], ["dig", "bind9-dnsutils"]]) {
    const r = spawnSync(bin, ["-h"], { encoding: "utf8" });
    if (r.error) throw new Error(`${bin} missing: apt-get install -y ${pkg}`);
  }
}

/** A child process to completion, its stdout. */
function runChild(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    defer(() => child.exitCode === null && child.kill("SIGKILL"));
    const out = [];
    let err = "";
    child.stdout.on("data", (d) => out.push(d));
    child.stderr.on("data", (d) => (err += d));
    child.once("exit", (code) => (code === 0 ? resolve(Buffer.concat(out).toString()) : reject(new Error(`${cmd} exited ${code}: ${err.slice(-800)}`))));
  });
}

/** dnsperf (-v: one line per query with its latency) for SECONDS; qps and latency percentiles in ms. */
async function dnsperf(port, name, type) {
  const dir = mkdtempSync(join(tmpdir(), "roster-dnsperf-"));
  const data = join(dir, "queries");
  writeFileSync(data, `${name} ${type}\n`);
  try {
    const out = await runChild("dnsperf", ["-s", "127.0.0.1", "-p", String(port), "-d", data, "-l", String(SECONDS), "-c", "4", "-q", "64", "-t", "2", "-e", "-v"]);
    const lat = [];
    const codes = {};
    for (const m of out.matchAll(/^> (\w+) \S+ \S+ ([\d.]+)$/gm)) {
      codes[m[1]] = (codes[m[1]] ?? 0) + 1;
      lat.push(Number(m[2]) * 1000);
    }
    const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]);
    const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0);
    return { qps, p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length, lost, codes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** autocannon in its own process (JSON). */
async function autocannon(url) {
  const out = await runChild(process.execPath, [AUTOCANNON, "-j", "-c", String(CONNECTIONS), "-d", String(SECONDS), url]);
  const r = JSON.parse(out.trim().split("\n").at(-1));
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors + r.timeouts };
}

/** One UDP A query from this process (dns-packet), the answer's addresses. */
async function udpA(port, name) {
  const sock = createSocket("udp4");
  try {
    sock.send(dnsPacket.encode({ type: "query", id: 1, questions: [{ type: "A", name }] }), port, "127.0.0.1");
    const [msg] = await once(sock, "message", { signal: AbortSignal.timeout(2000) });
    return dnsPacket.decode(msg).answers.map((a) => a.data).join(" ");
  } finally {
    sock.close();
  }
}

async function get(url) {
  const res = await request(url, { dispatcher });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body };
}

await runBench("dns-consul", 240 + ROUNDS * 4 * (SECONDS + 5) + FLIPS * 10, async () => {
  assertTools();
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const dnsPort = await freePort();
  const consulPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "roster-bench-dns-"));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  // No per-source DNS rate limit: the load generator is one source (docs/dns-and-consul.md).
  writeFileSync(join(dir, "registry.json"), JSON.stringify({ dns: { rateLimit: null }, tickInterval: "50ms" }));
  const registry = await startRegistry({
    natsUrl: nats.url,
    args: ["--config", join(dir, "registry.json")],
    env: { ROSTER_DNS: `127.0.0.1:${dnsPort}`, ROSTER_CONSUL_API: `127.0.0.1:${consulPort}` },
  });
  defer(() => registry.stop());
  const consulUrl = `http://127.0.0.1:${consulPort}`;

  // One host plays INSTANCES instances of orders over the real wire contract; it heartbeats.
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const hostId = "bench-host";
  const epoch = Date.now();
  let seq = 0;
  const env = () => ({ v: 1, hostId, epoch, seq: ++seq, sentAt: Date.now() });
  const instances = Array.from({ length: INSTANCES }, (_, n) => ({
    id: `o${n}`, service: SERVICE, address: `10.0.${n >> 8}.${n & 255}`, port: 8000 + n, tags: ["v1"], meta: {}, weight: 100, status: "passing",
    checks: [{ id: "http-0", type: "http", status: "passing", since: Date.now() }],
  }));
  const digest = () => instanceDigest(instances.map((i) => ({ service: i.service, id: i.id, status: i.status, address: i.address, port: i.port })));
  nc.publish(agentSubject(hostId, "register"), encode(RegisterMessage, { ...env(), kind: "register", heartbeatIntervalMs: 1000, instances }));
  const beat = setInterval(() => nc.publish(agentSubject(hostId, "heartbeat"), encode(HeartbeatMessage, { ...env(), kind: "heartbeat", heartbeatIntervalMs: 1000, instanceCount: instances.length, digest: digest() })), 1000);
  defer(() => clearInterval(beat));
  const flip = (status) => {
    instances[0].status = status;
    instances[0].checks[0] = { id: "http-0", type: "http", status, since: Date.now() };
    nc.publish(agentSubject(hostId, "health"), encode(HealthMessage, { ...env(), kind: "health", service: SERVICE, instanceId: "o0", check: instances[0].checks[0], instanceStatus: status }));
  };
  const passingUrl = `${registry.httpUrl}/v1/services/${SERVICE}/instances?status=passing`;
  await waitFor(async () => JSON.parse((await get(passingUrl)).body).length === INSTANCES, { timeoutMs: 30_000, what: `${INSTANCES} passing instances` });
  const dig = async (...a) => (await run("dig", ["@127.0.0.1", "-p", String(dnsPort), "+short", "+time=1", "+tries=1", ...a])).stdout;
  progress(`registry ${registry.httpUrl}, DNS 127.0.0.1:${dnsPort}, Consul API ${consulUrl}; ${INSTANCES} instances: dig says ${(await dig(`${SERVICE}.service.roster`)).split("\n").filter(Boolean).length} A records`);

  // 1 + 2. Throughput, alternating the three front doors each round.
  const loads = {
    "DNS A (dnsperf, UDP)": () => dnsperf(dnsPort, `${SERVICE}.service.roster`, "A"),
    "DNS SRV (dnsperf, UDP)": () => dnsperf(dnsPort, `${SERVICE}.service.roster`, "SRV"),
    "HTTP API GET /v1/services/orders/instances?status=passing (autocannon)": () => autocannon(passingUrl).then((r) => ({ qps: r.rps, p50: r.p50, p99: r.p99, errors: r.errors + r.non2xx })),
    "Consul API GET /v1/health/service/orders?passing (autocannon)": () => autocannon(`${consulUrl}/v1/health/service/${SERVICE}?passing`).then((r) => ({ qps: r.rps, p50: r.p50, p99: r.p99, errors: r.errors + r.non2xx })),
  };
  const results = Object.fromEntries(Object.keys(loads).map((k) => [k, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = Object.keys(loads);
    if (r % 2) order.reverse();
    for (const k of order) {
      const cpu0 = cpuSeconds(registry.pid);
      const t0 = performance.now();
      const res = await loads[k]();
      const cpu = cpuSeconds(registry.pid) - cpu0;
      res.cpuPct = (cpu / ((performance.now() - t0) / 1000)) * 100;
      // Per answer: steadier than rates when other work takes the cores.
      res.cpuUsPerAnswer = (cpu * 1e6) / (res.qps * ((performance.now() - t0) / 1000));
      results[k].push(res);
      progress(`round ${r + 1} ${k}: ${fmt(res.qps, 0)}/s p50 ${fmt(res.p50, 2)} ms p99 ${fmt(res.p99, 2)} ms registry CPU ${fmt(res.cpuPct, 0)}%${res.lost ? ` lost ${res.lost}` : ""}`);
    }
  }

  // 3. Flip → visible, all watchers at once.
  const gone = { dig: [], udp: [], http: [], consulBlocking: [], rosterBlocking: [] };
  const hasO0 = (text) => text.includes("10.0.0.0");
  for (let f = 0; f < FLIPS; f++) {
    const sIndex = Number((await get(`${consulUrl}/v1/health/service/${SERVICE}`)).headers["x-consul-index"]);
    const t0 = performance.now();
    const consulWait = get(`${consulUrl}/v1/health/service/${SERVICE}?passing&index=${sIndex}&wait=30s`).then(() => performance.now() - t0);
    const rosterWait = get(`${passingUrl}&index=${sIndex}&wait=30s`).then(() => performance.now() - t0);
    await sleep(50); // both blocking queries are parked before the flip
    const start = performance.now();
    flip("critical");
    const digLoop = (async () => {
      for (;;) if (!hasO0(await dig(`${SERVICE}.service.roster`))) return performance.now() - start;
    })();
    const udpLoop = (async () => {
      for (;;) if (!hasO0(await udpA(dnsPort, `${SERVICE}.service.roster`))) return performance.now() - start;
    })();
    const httpLoop = (async () => {
      for (;;) if (!hasO0((await get(passingUrl)).body)) return performance.now() - start;
    })();
    const [d, u, h, c, b] = await Promise.all([digLoop, udpLoop, httpLoop, consulWait, rosterWait]);
    gone.dig.push(d);
    gone.udp.push(u);
    gone.http.push(h);
    gone.consulBlocking.push(c - (start - t0));
    gone.rosterBlocking.push(b - (start - t0));
    flip("passing");
    await waitFor(async () => hasO0(await dig(`${SERVICE}.service.roster`, "+tcp")), { timeoutMs: 10_000, intervalMs: 20, what: "o0 back" });
    await sleep(100);
  }
  // dig's own cost without any change: the floor of the dig column.
  const digFloor = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    await dig(`${SERVICE}.service.roster`);
    digFloor.push(performance.now() - t0);
  }

  const med = (k) => {
    const rs = results[k];
    return { qps: median(rs.map((x) => x.qps)), p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), cpuPct: median(rs.map((x) => x.cpuPct)), cpuUsPerAnswer: median(rs.map((x) => x.cpuUsPerAnswer)), errors: rs.reduce((a, x) => a + (x.errors ?? x.lost ?? 0), 0) };
  };
  const throughput = Object.fromEntries(Object.keys(loads).map((k) => [k, med(k)]));
  const s = Object.fromEntries(Object.entries(gone).map(([k, v]) => [k, summarize(v)]));
  const floor = summarize(digFloor);
  printReport({
    title: `DNS and Consul API beside the HTTP API: ${INSTANCES} instances of one service`,
    command: commandLine("bench/dns-consul.mjs"),
    params: { instances: INSTANCES, seconds: SECONDS, rounds: ROUNDS, flips: FLIPS, autocannonConnections: CONNECTIONS, dnsperf: "-c 4 -q 64 -e (UDP, EDNS0)" },
    figures: { throughput, flip: s, digFloor: floor, runs: results },
    tables: [
      {
        caption: `Throughput, ${SECONDS} s per run, median of ${ROUNDS} run(s), order alternated; the load generator is its own process on the same 2 cores`,
        headers: ["front door", "answers/s", "p50 ms", "p99 ms", "registry CPU (% of a core)", "registry CPU µs/answer", "errors / lost"],
        rows: Object.entries(throughput).map(([k, r]) => [k, fmt(r.qps, 0), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.cpuPct, 0), fmt(r.cpuUsPerAnswer, 0), r.errors]),
      },
      {
        caption: `A health flip (agent health message published) → the instance is gone, ${FLIPS} flips, ms`,
        headers: ["reader", "p50", "p90", "max"],
        rows: [
          ["first `dig` answer without it (dig in a loop, a process per query)", fmt(s.dig.p50), fmt(s.dig.p90), fmt(s.dig.max)],
          ["first DNS answer without it (UDP query in a loop from the bench process)", fmt(s.udp.p50), fmt(s.udp.p90), fmt(s.udp.max)],
          ["first HTTP API answer without it (GET in a loop, keep-alive)", fmt(s.http.p50), fmt(s.http.p90), fmt(s.http.max)],
          ["Consul API blocking query (?index&wait=30s) returns", fmt(s.consulBlocking.p50), fmt(s.consulBlocking.p90), fmt(s.consulBlocking.max)],
          ["HTTP API blocking query (?index&wait=30s) returns", fmt(s.rosterBlocking.p50), fmt(s.rosterBlocking.p90), fmt(s.rosterBlocking.max)],
          ["(one `dig` with no change: its own process cost)", fmt(floor.p50), fmt(floor.p90), fmt(floor.max)],
        ],
      },
    ],
    notes: [
      "dnsperf's latencies are its own per-query (-v) figures; autocannon's are integer milliseconds. Registry CPU is utime+stime from /proc over the run.",
      "The DNS rate limit per source is off for this run (dns.rateLimit: null): the load comes from one address.",
      "A flip is visible to every reader once the registry has written it to KV and updated its memory; DNS and the HTTP API read the same memory, so the dig column differs from the HTTP one by dig's own start-up cost (last row).",
    ],
  });
  await dispatcher.destroy();
});
